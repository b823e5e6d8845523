"""Fetch by revision: tag -> commit sha, only the files needed, verified, resumable, offline-capable, locked.

Everything lands in the hub's own cache layout (`HF_HUB_CACHE`/`HF_HOME`, `blobs/`, `snapshots/<sha>/`,
`refs/<tag>`), so transformers, datasets and lm-eval reuse what the kit fetched. Every download is made by
commit sha, never by tag. Blobs are downloaded by the kit into `blobs/<etag>.incomplete` (the name older
huggingface_hub releases resumed from) so that an interrupted download resumes with a `Range` request in the
next process too; huggingface_hub's own `snapshot_download(revision=sha)` then links them into the snapshot.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt4allj_kit import paths
from gpt4allj_kit.errors import ConfigError, HubError
from gpt4allj_kit.files import atomic_write_json, atomic_write_text, disk_errors
from gpt4allj_kit.recipe import ASSET_REPOS, EVAL_TASKS

LOCK_NAME = paths.LOCK_NAME
LOCK_VERSION = 1

# Model repos carry the same weights in several formats; the kit takes one and the files around it.
_MODEL_SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "chat_template.jinja",
)
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_TASK_LINE = re.compile(r"^task:\s*(\S+)\s*$", re.M)
_CHUNK = 1 << 20
_DOWNLOAD_ATTEMPTS = 5


@dataclass(frozen=True)
class FileEntry:
    """One file of a snapshot as the lock records it."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Snapshot:
    """A local folder holding exactly the needed files of one commit of a hub repo."""

    repo_id: str
    repo_type: str
    revision: str
    sha: str
    path: Path
    files: tuple[FileEntry, ...] = ()
    repaired: tuple[str, ...] = ()  # cached files that failed verification and were fetched again


@dataclass(frozen=True)
class LockedAsset:
    repo_id: str
    repo_type: str
    revision: str
    sha: str
    files: tuple[FileEntry, ...]

    @classmethod
    def of(cls, snap: Snapshot) -> LockedAsset:
        return cls(snap.repo_id, snap.repo_type, snap.revision, snap.sha, snap.files)


@dataclass
class AssetLock:
    """The lock file: every fetched (repo, revision) with its commit sha and file hashes."""

    assets: list[LockedAsset] = field(default_factory=list)

    def find(self, repo_id: str, repo_type: str, revision: str) -> LockedAsset | None:
        for asset in self.assets:
            if (asset.repo_id, asset.repo_type, asset.revision) == (repo_id, repo_type, revision):
                return asset
        return None

    def with_asset(self, new: LockedAsset) -> AssetLock:
        kept = [
            a
            for a in self.assets
            if (a.repo_id, a.repo_type, a.revision) != (new.repo_id, new.repo_type, new.revision)
        ]
        return AssetLock(sorted([*kept, new], key=lambda a: (a.repo_type, a.repo_id, a.revision)))


@dataclass(frozen=True)
class FileProgress:
    """A progress report for one file; `done` counts bytes on disk (resumed bytes included)."""

    repo_id: str
    path: str
    done: int
    total: int
    resumed_from: int = 0


ProgressCallback = Callable[[FileProgress], None]


@dataclass(frozen=True)
class _Remote:
    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None


# --- lock file --------------------------------------------------------------------------------------


def read_lock(path: Path) -> AssetLock:
    """The lock at `path`; a missing file is an empty lock, a damaged one a one-line ConfigError."""
    import json

    if not path.exists():
        return AssetLock()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        assets = [
            LockedAsset(
                repo_id=a["repo_id"],
                repo_type=a["repo_type"],
                revision=a["revision"],
                sha=a["sha"],
                files=tuple(FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in a["files"]),
            )
            for a in data["assets"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"lock file {path} is not a valid kit lock ({type(exc).__name__}: {exc})") from None
    return AssetLock(assets)


def write_lock(path: Path, lock: AssetLock) -> None:
    """Writes the lock atomically: readers see the old lock or the new one, never half of one."""
    payload = {
        "version": LOCK_VERSION,
        "assets": [
            {
                "repo_id": a.repo_id,
                "repo_type": a.repo_type,
                "revision": a.revision,
                "sha": a.sha,
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in a.files],
            }
            for a in lock.assets
        ],
    }
    atomic_write_json(path, payload)


# --- which files ------------------------------------------------------------------------------------


def needed_files(paths: Iterable[str], repo_type: str, allow_patterns: list[str] | None = None) -> list[str]:
    """The files of a commit the kit needs: one weight format plus config/tokenizer files for models.

    Safetensors when present (sharded through its index, else the single file), else the PyTorch bins;
    Flax, TF, ONNX and other duplicates are never taken. Datasets: every file but git metadata.
    """
    paths = sorted(paths)
    if allow_patterns is not None:
        return [p for p in paths if any(fnmatch.fnmatch(p, pat) for pat in allow_patterns)]
    if repo_type != "model":
        return [p for p in paths if not p.startswith(".git")]
    top = [p for p in paths if "/" not in p]
    side = [p for p in top if p in _MODEL_SIDE_FILES]
    return sorted(side + _weights(top))


def _weights(top: list[str]) -> list[str]:
    for single, index, shard in (
        ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"),
    ):
        if index in top:
            return [index, *fnmatch.filter(top, shard)]
        if single in top:
            return [single]
    return []


# --- errors -----------------------------------------------------------------------------------------


def _token_set() -> bool:
    return bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@contextlib.contextmanager
def hub_errors(repo_id: str, repo_type: str, revision: str, cache_dir: Path) -> Iterator[None]:
    """Turns the hub client's exceptions into one-line HubErrors that say what to do."""
    import httpx2
    from huggingface_hub import errors

    where = f"{repo_type} {repo_id}"
    try:
        with disk_errors(cache_dir):
            yield
    except errors.RevisionNotFoundError:
        raise HubError(
            f"{where} has no revision '{revision}' (the hub has: {_revisions(repo_id, repo_type)})"
        ) from None
    except errors.GatedRepoError:
        raise HubError(
            f"{where} is gated: accept its terms on the hub, then set HF_TOKEN to a token with access"
        ) from None
    except errors.RepositoryNotFoundError as exc:
        raise _not_found(where, exc.response.status_code if exc.response is not None else 404) from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise _not_found(where, status) from None
        raise HubError(
            f"the hub at {_endpoint()} answered HTTP {status} for {where}: try again later"
        ) from None
    except (
        httpx2.ConnectError,
        httpx2.TimeoutException,
        httpx2.RemoteProtocolError,
        httpx2.ReadError,
    ) as exc:
        raise HubError(
            f"cannot reach the hub at {_endpoint()} ({type(exc).__name__}) for {where}@{revision}: "
            "check the network or HF_ENDPOINT, or use the cache with --offline / HF_HUB_OFFLINE=1"
        ) from None


def _not_found(where: str, status: int) -> HubError:
    if status in (401, 403) and not _token_set():
        return HubError(
            f"{where} is private, gated or absent at {_endpoint()}: set HF_TOKEN to a token with access"
        )
    if status in (401, 403):
        return HubError(
            f"{where} is not readable with the HF_TOKEN set (HTTP {status}): use a token with access"
        )
    return HubError(
        f"{where} does not exist at {_endpoint()}: check the repo id (and HF_ENDPOINT for a mirror)"
    )


def _revisions(repo_id: str, repo_type: str) -> str:
    from huggingface_hub import HfApi

    try:
        refs = HfApi().list_repo_refs(repo_id, repo_type=repo_type)
    except Exception:  # the listing only decorates the error being raised; never hide that error
        return "unknown, the revision list could not be read"
    names = [r.name for r in refs.branches] + [r.name for r in refs.tags]
    return ", ".join(names) or "none"


# --- cache layout -----------------------------------------------------------------------------------


def hub_cache_dir(cache_dir: Path | str | None = None) -> Path:
    """The hub cache in use: `cache_dir`, else HF_HUB_CACHE, else HF_HOME/hub (read now, not at import)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser().resolve()
    if env := os.environ.get("HF_HUB_CACHE"):
        return Path(env).expanduser().resolve()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "huggingface"
    )
    return (Path(home).expanduser() / "hub").resolve()


def _storage(cache: Path, repo_id: str, repo_type: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache / repo_folder_name(repo_id=repo_id, repo_type=repo_type)


def offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


# --- hashing ----------------------------------------------------------------------------------------


def _hashes(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file in one read: the hub's names of LFS and of git files."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha256.update(chunk)
            git.update(chunk)
    return sha256.hexdigest(), git.hexdigest()


def _hub_mismatch(local: Path, remote: _Remote) -> str | None:
    """Why `local` is not the hub's file, or None when it is (size, then the hub's own hash)."""
    if not local.exists():
        return "missing"
    size = local.stat().st_size
    if size != remote.size:
        return f"truncated or grown: size {size} != {remote.size}"
    sha256, git_sha1 = _hashes(local)
    if remote.lfs_sha256 is not None and sha256 != remote.lfs_sha256:
        return "corrupted: sha256 differs from the hub's"
    if remote.lfs_sha256 is None and git_sha1 != remote.blob_id:
        return "corrupted: git blob hash differs from the hub's"
    return None


def _lock_mismatch(local: Path, entry: FileEntry, *, full: bool) -> str | None:
    if not local.exists():
        return "missing"
    size = local.stat().st_size
    if size != entry.size:
        return f"truncated or grown: size {size} != {entry.size}"
    if full and _hashes(local)[0] != entry.sha256:
        return "corrupted: sha256 differs from the lock"
    return None


# --- download ---------------------------------------------------------------------------------------


def _download_blob(
    url: str, blob: Path, remote: _Remote, repo_id: str, progress: ProgressCallback | None
) -> None:
    """Streams `url` into `blob` through `<blob>.incomplete`, resuming what an earlier attempt left there."""
    import httpx2
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    partial = blob.with_name(blob.name + ".incomplete")
    if partial.exists() and partial.stat().st_size > remote.size:
        partial.unlink()
    first = partial.stat().st_size if partial.exists() else 0
    for attempt in range(_DOWNLOAD_ATTEMPTS):
        start = partial.stat().st_size if partial.exists() else 0
        headers = build_hf_headers()
        headers["Accept-Encoding"] = "identity"
        if start > 0:
            headers["Range"] = f"bytes={start}-"
        received = 0
        try:
            if start < remote.size or remote.size == 0:
                with get_session().stream(
                    "GET", url, headers=headers, follow_redirects=True, timeout=30
                ) as resp:
                    hf_raise_for_status(resp)
                    mode = "ab" if resp.status_code == 206 else "wb"  # 200: the server ignored Range
                    done = start if mode == "ab" else 0
                    with partial.open(mode) as fh:
                        for chunk in resp.iter_bytes():  # as received: a drop keeps what came
                            fh.write(chunk)
                            received += len(chunk)
                            done += len(chunk)
                            if progress:
                                progress(FileProgress(repo_id, remote.path, done, remote.size, first))
            break
        except (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.TimeoutException):
            # A connection dropped mid-body: resume at once while it still makes progress, else give up and
            # leave the partial file for the next fetch to resume.
            if received == 0 or attempt == _DOWNLOAD_ATTEMPTS - 1:
                raise
    os.replace(partial, blob)


def _fetch_file(
    repo_id: str, repo_type: str, sha: str, remote: _Remote, storage: Path, progress: ProgressCallback | None
) -> None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import WeakFileLock

    meta = get_hf_file_metadata(hf_hub_url(repo_id, remote.path, repo_type=repo_type, revision=sha))
    if meta.commit_hash not in (None, sha):
        raise HubError(f"the hub served {remote.path} of commit {meta.commit_hash} when asked for {sha}")
    blob = storage / "blobs" / str(meta.etag)
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock = storage.parent / ".locks" / storage.name / f"{meta.etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock):
        if not blob.exists():
            _download_blob(meta.location, blob, remote, repo_id, progress)
        problem = _hub_mismatch(blob, remote)
        if problem:
            blob.unlink()
            raise HubError(
                f"{repo_id}/{remote.path} at {sha[:12]} failed verification after download ({problem})"
            )
    if progress:
        progress(FileProgress(repo_id, remote.path, remote.size, remote.size))


def _remove_cached(storage: Path, sha: str, path: str) -> None:
    """Drops a bad file from the snapshot and its blob so the next download starts from clean bytes."""
    pointer = storage / "snapshots" / sha / path
    if pointer.is_symlink():
        blob = pointer.resolve()
        pointer.unlink()
        with contextlib.suppress(FileNotFoundError):
            blob.unlink()
    elif pointer.exists():
        pointer.unlink()


class _SilentTqdm:
    """huggingface_hub's progress bars off: the kit reports progress through its callback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.n = 0
        self.total = kwargs.get("total")

    def __enter__(self) -> _SilentTqdm:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None

    def __iter__(self) -> Iterator[Any]:
        return iter(())


# --- snapshot ---------------------------------------------------------------------------------------


def resolve_sha(repo_id: str, *, repo_type: str, revision: str, cache_dir: Path | None = None) -> str:
    """The commit sha `revision` names on the hub now (a sha is returned as it is)."""
    from huggingface_hub import HfApi

    if _SHA_RE.fullmatch(revision):
        return revision
    with hub_errors(repo_id, repo_type, revision, hub_cache_dir(cache_dir)):
        sha = HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision).sha
    if not sha or not _SHA_RE.fullmatch(sha):
        raise HubError(f"the hub gave no commit sha for {repo_type} {repo_id}@{revision}")
    return sha


def snapshot(
    repo_id: str,
    *,
    repo_type: str,
    revision: str,
    cache_dir: Path | str | None = None,
    allow_patterns: list[str] | None = None,
    offline: bool | None = None,
    locked: LockedAsset | None = None,
    verify: bool = False,
    progress: ProgressCallback | None = None,
) -> Snapshot:
    """Resolves `revision` to its commit sha, downloads the needed files by sha, verifies, returns the folder.

    `locked`: the lock's entry for this asset; the tag must still name its sha and every file must match its
    hashes. `verify`: re-hash cached files (otherwise cached files are checked by size, new ones by hash).
    Offline (`offline=True` or HF_HUB_OFFLINE=1): from the cache only, the file list from the lock or the
    cached tree listing; anything missing is one HubError naming it.
    """
    if repo_type not in ("model", "dataset"):
        raise ConfigError(f"repo type must be model or dataset, not {repo_type!r}")
    cache = hub_cache_dir(cache_dir)
    offline = offline_mode() if offline is None else offline
    if offline:
        return _offline_snapshot(repo_id, repo_type, revision, cache, allow_patterns, locked)
    sha = resolve_sha(repo_id, repo_type=repo_type, revision=revision, cache_dir=cache)
    if locked is not None and locked.sha != sha:
        raise HubError(
            f"{repo_type} {repo_id}: revision '{revision}' moved: lock has {locked.sha}, hub now has {sha}; "
            "re-run fetch without --locked to accept the new commit"
        )
    storage = _storage(cache, repo_id, repo_type)
    with hub_errors(repo_id, repo_type, revision, cache):
        remotes = _remote_files(repo_id, repo_type, sha, allow_patterns)
        folder = storage / "snapshots" / sha
        repaired = []
        for remote in remotes:
            problem = _cached_problem(folder / remote.path, remote, locked, full=verify)
            if problem and problem != "missing":
                repaired.append(f"{remote.path} ({problem})")
                _remove_cached(storage, sha, remote.path)
            if not (folder / remote.path).exists():
                _fetch_file(repo_id, repo_type, sha, remote, storage, progress)
        _link(repo_id, repo_type, sha, [r.path for r in remotes], cache)
        unlinked = [r.path for r in remotes if not (folder / r.path).exists()]
        if unlinked:
            raise HubError(f"{repo_type} {repo_id}@{revision}: the cache did not take {', '.join(unlinked)}")
        entries = _entries(folder, remotes)
    if revision != sha:
        # The ref is what offline tools (and the kit offline) resolve a tag with: written after verification.
        with disk_errors(cache):
            atomic_write_text(storage / "refs" / revision, sha)
    snap = Snapshot(repo_id, repo_type, revision, sha, folder, tuple(entries), tuple(repaired))
    if locked is not None:
        _check_against_lock(snap, locked)
    return snap


def _cached_problem(local: Path, remote: _Remote, locked: LockedAsset | None, *, full: bool) -> str | None:
    if not local.exists():
        return "missing"
    entry = next((f for f in locked.files if f.path == remote.path), None) if locked else None
    if entry is not None:
        return _lock_mismatch(local, entry, full=full)
    if full:
        return _hub_mismatch(local, remote)
    size = local.stat().st_size
    return None if size == remote.size else f"truncated or grown: size {size} != {remote.size}"


def _remote_files(repo_id: str, repo_type: str, sha: str, allow_patterns: list[str] | None) -> list[_Remote]:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    tree = {
        f.path: _Remote(f.path, f.size, f.blob_id, f.lfs.sha256 if f.lfs else None)
        for f in HfApi().list_repo_tree(repo_id, repo_type=repo_type, revision=sha, recursive=True)
        if isinstance(f, RepoFile)
    }
    chosen = needed_files(tree, repo_type, allow_patterns)
    if not chosen:
        raise HubError(f"{repo_type} {repo_id} at {sha[:12]} has none of the files the kit needs")
    return [tree[p] for p in chosen]


def _link(repo_id: str, repo_type: str, sha: str, paths: list[str], cache: Path) -> None:
    """huggingface_hub links the (already downloaded) blobs into `snapshots/<sha>/` and caches the tree."""
    from huggingface_hub import snapshot_download

    snapshot_download(
        repo_id,
        repo_type=repo_type,
        revision=sha,
        cache_dir=cache,
        allow_patterns=[_literal(p) for p in paths],
        tqdm_class=_SilentTqdm,  # type: ignore[arg-type]
        max_workers=1,
    )


def _literal(path: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", path)


def _entries(folder: Path, remotes: list[_Remote]) -> list[FileEntry]:
    entries = []
    for remote in remotes:
        local = folder / remote.path
        sha256 = remote.lfs_sha256 or _hashes(local)[0]
        entries.append(FileEntry(remote.path, remote.size, sha256))
    return entries


def _check_against_lock(snap: Snapshot, locked: LockedAsset) -> None:
    have = {f.path: f for f in snap.files}
    want = {f.path: f for f in locked.files}
    if set(have) != set(want):
        diff = sorted(set(have) ^ set(want))
        raise HubError(f"{snap.repo_id}@{snap.revision}: files differ from the lock ({', '.join(diff[:5])})")
    for path, entry in want.items():
        if have[path] != entry:
            raise HubError(
                f"{snap.repo_id}@{snap.revision}: {path} differs from the lock "
                f"(sha256 {have[path].sha256[:12]} != {entry.sha256[:12]})"
            )


def _offline_snapshot(
    repo_id: str,
    repo_type: str,
    revision: str,
    cache: Path,
    allow_patterns: list[str] | None,
    locked: LockedAsset | None,
) -> Snapshot:
    storage = _storage(cache, repo_id, repo_type)
    where = f"{repo_type} {repo_id}@{revision}"
    sha = _offline_sha(storage, revision, locked)
    if sha is None:
        raise HubError(
            f"offline and the cache has no {where} (nothing fetched for it yet): fetch it online first"
        )
    folder = storage / "snapshots" / sha
    if locked is not None:
        paths = [f.path for f in locked.files]
        check = {f.path: (lambda local, f=f: _lock_mismatch(local, f, full=True)) for f in locked.files}
    else:
        remotes = _cached_listing(repo_id, repo_type, sha, cache, allow_patterns)
        if remotes is None:
            raise HubError(
                f"offline and the cache has no file listing for {where} ({sha[:12]}): fetch it online first"
            )
        paths = [r.path for r in remotes]
        check = {r.path: (lambda local, r=r: _hub_mismatch(local, r)) for r in remotes}
    missing = [p for p in paths if not (folder / p).exists()]
    if missing:
        raise HubError(
            f"offline and the cache lacks {len(missing)} file(s) of {where} ({sha[:12]}): "
            + ", ".join(missing)
        )
    bad = [f"{p} ({problem})" for p in paths if (problem := check[p](folder / p))]
    if bad:
        raise HubError(f"offline and cached files of {where} fail verification: {', '.join(bad)}")
    files = locked.files if locked is not None else tuple(_entries(folder, remotes))
    return Snapshot(repo_id, repo_type, revision, sha, folder, tuple(files))


def _offline_sha(storage: Path, revision: str, locked: LockedAsset | None) -> str | None:
    if _SHA_RE.fullmatch(revision):
        return revision
    if locked is not None:
        return locked.sha
    ref = storage / "refs" / revision
    return ref.read_text().strip() if ref.is_file() else None


def _cached_listing(
    repo_id: str, repo_type: str, sha: str, cache: Path, allow_patterns: list[str] | None
) -> list[_Remote] | None:
    """The needed files of `sha` from the tree listing huggingface_hub cached when the kit fetched it."""
    # The public `get_cached_repo_tree` drops the LFS sha256; the cache file itself keeps it.
    from huggingface_hub._tree_cache import read_tree_cache

    tree = read_tree_cache(str(_storage(cache, repo_id, repo_type)), sha)
    if tree is None:
        return None
    return [
        _Remote(path, tree[path].size, tree[path].blob_id, tree[path].lfs_sha256)
        for path in needed_files(tree, repo_type, allow_patterns)
    ]


# --- evaluation task datasets -----------------------------------------------------------------------


@dataclass(frozen=True)
class TaskDataset:
    task: str
    dataset_path: str
    dataset_name: str | None


def task_datasets(tasks: Iterable[str] = EVAL_TASKS) -> list[TaskDataset]:
    """Where each lm-eval task reads its data, from the installed lm-eval task YAMLs (includes followed)."""
    import lm_eval

    root = Path(lm_eval.__file__).parent / "tasks"
    tasks = list(tasks)
    wanted = set(tasks)
    by_task: dict[str, Path] = {}
    # Thousands of task YAMLs: find the few by their `task:` line, parse only those.
    for yaml_path in sorted(root.rglob("*.yaml")):
        match = _TASK_LINE.search(yaml_path.read_text(encoding="utf-8", errors="replace"))
        if match and (name := match.group(1).strip("'\"")) in wanted:
            by_task.setdefault(name, yaml_path)
    found = []
    for task in tasks:
        if task not in by_task:
            raise ConfigError(f"lm-eval has no task '{task}' installed (looked under {root})")
        config = _resolved_task_yaml(by_task[task])
        if not config.get("dataset_path"):
            raise ConfigError(f"lm-eval task '{task}' names no dataset_path ({by_task[task]})")
        found.append(TaskDataset(task, str(config["dataset_path"]), config.get("dataset_name")))
    return found


def _resolved_task_yaml(path: Path) -> dict[str, Any]:
    config = _yaml(path)
    if include := config.get("include"):
        base = _resolved_task_yaml(path.parent / str(include))
        config = {**base, **{k: v for k, v in config.items() if k != "include"}}
    return config


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    # lm-eval YAMLs carry `!function module.fn` tags: only the dataset keys matter here.
    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def task_allow_patterns(
    repo_id: str, sha: str, dataset_name: str | None, cache_dir: Path | None = None
) -> list[str] | None:
    """The files of one config (`dataset_name`) of a dataset repo, from its README `configs:`; None = all.

    Task repos hold many configs (ai2_arc: ARC-Easy and ARC-Challenge; super_glue: eight); fetching one task
    should not download the others.
    """
    if not dataset_name:
        return None
    from huggingface_hub import HfApi, hf_hub_download

    with hub_errors(repo_id, "dataset", sha, hub_cache_dir(cache_dir)):
        files = [f for f in HfApi().list_repo_files(repo_id, repo_type="dataset", revision=sha)]
        if "README.md" in files:
            readme = Path(
                hf_hub_download(
                    repo_id,
                    "README.md",
                    repo_type="dataset",
                    revision=sha,
                    cache_dir=hub_cache_dir(cache_dir),
                )
            )
            patterns = _readme_config_files(readme.read_text(encoding="utf-8"), dataset_name)
            if patterns:
                return ["README.md", *patterns]
    folder = [f for f in files if f.startswith(f"{dataset_name}/")]
    return ["README.md", f"{dataset_name}/*"] if folder else None


def _readme_config_files(readme: str, config_name: str) -> list[str]:
    import yaml

    match = re.match(r"^---\n(.*?)\n---", readme, re.S)
    if not match:
        return []
    try:
        header = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return []
    for config in header.get("configs") or []:
        if isinstance(config, dict) and config.get("config_name") == config_name:
            data_files = config.get("data_files") or []
            if isinstance(data_files, str):
                return [data_files]
            paths = [d.get("path") if isinstance(d, dict) else d for d in data_files]
            return [str(p) for item in paths for p in (item if isinstance(item, list) else [item]) if p]
    return []


# --- fetch: what the `fetch` command asks for -------------------------------------------------------


@dataclass(frozen=True)
class AssetRequest:
    what: str  # data | model | base | task
    repo_id: str
    repo_type: str
    revision: str
    configs: tuple[str, ...] = ()  # dataset configs (lm-eval dataset_name) to take; () = every file


@dataclass(frozen=True)
class Fetched:
    what: str
    snapshot: Snapshot
    previous_sha: str | None  # the lock's sha before this fetch, when the lock had the asset


def asset_requests(
    what: Iterable[str], *, revision: str, base_revision: str = "main", tasks_revision: str = "main"
) -> list[AssetRequest]:
    """The (repo, revision) pairs `fetch --what` names; evaluation tasks sharing a repo share one asset."""
    requests: list[AssetRequest] = []
    for item in what:
        if item in ("data", "model"):
            requests.append(AssetRequest(item, *ASSET_REPOS[item], revision))
        elif item == "base":
            requests.append(AssetRequest(item, *ASSET_REPOS[item], base_revision))
        elif item == "tasks":
            configs: dict[str, list[str]] = {}
            for task in task_datasets():
                names = configs.setdefault(task.dataset_path, [])
                if task.dataset_name and task.dataset_name not in names:
                    names.append(task.dataset_name)
            requests += [
                AssetRequest("task", repo, "dataset", tasks_revision, tuple(n)) for repo, n in configs.items()
            ]
        else:
            raise ConfigError(f"--what takes data, model, base, tasks (comma-separated), not {item!r}")
    return requests


def fetch(
    requests: list[AssetRequest],
    *,
    lock_path: Path,
    locked: bool = False,
    verify: bool = False,
    offline: bool | None = None,
    cache_dir: Path | str | None = None,
    progress: ProgressCallback | None = None,
) -> list[Fetched]:
    """Fetches every request, then records them in the lock (written once, atomically, after all verified).

    `locked`: every asset must be in the lock, at the same sha and hashes; the lock is left as it is.
    """
    lock = read_lock(lock_path)
    offline = offline_mode() if offline is None else offline
    fetched = []
    for req in requests:
        entry = lock.find(req.repo_id, req.repo_type, req.revision)
        if locked and entry is None:
            raise ConfigError(
                f"--locked, but {lock_path} has no entry for {req.repo_type} {req.repo_id}@{req.revision}"
            )
        strict = entry if (locked or offline) else None
        snap = snapshot(
            req.repo_id,
            repo_type=req.repo_type,
            revision=req.revision,
            cache_dir=cache_dir,
            allow_patterns=None if offline else _config_patterns(req, cache_dir),
            offline=offline,
            locked=strict,
            verify=verify,
            progress=progress,
        )
        fetched.append(Fetched(req.what, snap, entry.sha if entry else None))
    if not locked:
        new = lock
        for item in fetched:
            new = new.with_asset(LockedAsset.of(item.snapshot))
        if new != lock:
            with disk_errors(lock_path.parent):
                write_lock(lock_path, new)
    return fetched


def _config_patterns(req: AssetRequest, cache_dir: Path | str | None) -> list[str] | None:
    if not req.configs:
        return None
    sha = resolve_sha(req.repo_id, repo_type=req.repo_type, revision=req.revision, cache_dir=cache_dir)
    patterns: list[str] = []
    for name in req.configs:
        found = task_allow_patterns(req.repo_id, sha, name, cache_dir)
        if found is None:
            return None
        patterns += [p for p in found if p not in patterns]
    return patterns
