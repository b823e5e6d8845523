"""The hub cache: where it is, its layout, and whether a cached file is the hub's (or the lock's) file.

The kit keeps to huggingface_hub's own layout (`<cache>/<models|datasets>--org--name/` holding `blobs/<etag>`,
`snapshots/<sha>/<file>` linking to a blob, `refs/<tag>` naming a sha), so transformers, datasets and lm-eval
reuse what the kit fetched, and the kit reuses theirs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gpt4allj_kit.fetch.listing import RemoteFile, needed_files
from gpt4allj_kit.fetch.lock import FileEntry, LockedAsset
from gpt4allj_kit.files import atomic_write_text, disk_errors

_CHUNK = 1 << 20
_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")


def hub_cache_dir(cache_dir: Path | str | None = None) -> Path:
    """The hub cache in use: `cache_dir`, else HF_HUB_CACHE, else HF_HOME/hub.

    Read from the environment now: huggingface_hub's `constants.HF_HUB_CACHE` is fixed when it is imported.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser().resolve()
    if env := os.environ.get("HF_HUB_CACHE"):
        return Path(env).expanduser().resolve()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "huggingface"
    )
    return (Path(home).expanduser() / "hub").resolve()


def repo_storage(cache: Path, repo_id: str, repo_type: str) -> Path:
    """The folder of one repo in the cache (`models--org--name`), as huggingface_hub names it."""
    from huggingface_hub.file_download import repo_folder_name

    return cache / repo_folder_name(repo_id=repo_id, repo_type=repo_type)


def offline_mode() -> bool:
    """Whether the hub client is offline (HF_HUB_OFFLINE, read when huggingface_hub was imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached_ref(storage: Path, revision: str) -> str | None:
    """The sha that `refs/<revision>` names: what an earlier online fetch resolved the tag to."""
    ref = storage / "refs" / revision
    return ref.read_text().strip() if ref.is_file() else None


def write_ref(storage: Path, revision: str, sha: str) -> None:
    with disk_errors(storage):
        atomic_write_text(storage / "refs" / revision, sha)


# --- is it the right file? ----------------------------------------------------------------------------


def file_hashes(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file in one read: the hub's names of LFS and of git files."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha256.update(chunk)
            git.update(chunk)
    return sha256.hexdigest(), git.hexdigest()


def hub_mismatch(local: Path, remote: RemoteFile) -> str | None:
    """Why `local` is not the hub's file, or None when it is (size, then the hub's own hash)."""
    if not local.exists():
        return "missing"
    size = local.stat().st_size
    if size != remote.size:
        return f"truncated or grown: size {size} != {remote.size}"
    sha256, git_sha1 = file_hashes(local)
    if remote.lfs_sha256 is not None and sha256 != remote.lfs_sha256:
        return "corrupted: sha256 differs from the hub's"
    if remote.lfs_sha256 is None and git_sha1 != remote.blob_id:
        return "corrupted: git blob hash differs from the hub's"
    return None


def lock_mismatch(local: Path, entry: FileEntry, *, full: bool) -> str | None:
    """Why `local` is not the lock's file (by size; by sha256 too when `full`), or None when it is."""
    if not local.exists():
        return "missing"
    size = local.stat().st_size
    if size != entry.size:
        return f"truncated or grown: size {size} != {entry.size}"
    if full and file_hashes(local)[0] != entry.sha256:
        return "corrupted: sha256 differs from the lock"
    return None


def cached_problem(local: Path, remote: RemoteFile, locked: LockedAsset | None, *, full: bool) -> str | None:
    """Why a cached file cannot be used as it is: against the lock's entry, else the hub's listing."""
    if not local.exists():
        return "missing"
    entry = next((f for f in locked.files if f.path == remote.path), None) if locked else None
    if entry is not None:
        return lock_mismatch(local, entry, full=full)
    if full:
        return hub_mismatch(local, remote)
    size = local.stat().st_size
    return None if size == remote.size else f"truncated or grown: size {size} != {remote.size}"


def remove_cached(storage: Path, sha: str, path: str) -> None:
    """Drops a bad file from the snapshot and its blob so the next download starts from clean bytes."""
    pointer = storage / "snapshots" / sha / path
    if pointer.is_symlink():
        blob = pointer.resolve()
        pointer.unlink()
        with contextlib.suppress(FileNotFoundError):
            blob.unlink()
    elif pointer.exists():
        pointer.unlink()


# --- what huggingface_hub does for the kit --------------------------------------------------------------


def link_snapshot(repo_id: str, repo_type: str, sha: str, paths: list[str], cache: Path) -> None:
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


def cached_listing(
    repo_id: str, repo_type: str, sha: str, cache: Path, allow_patterns: list[str] | None
) -> list[RemoteFile] | None:
    """The needed files of `sha` from the tree listing cached when it was fetched; None when there is none."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        tree = {
            f.path: f
            for f in get_cached_repo_tree(repo_id, repo_type=repo_type, revision=sha, cache_dir=cache)
        }
    except CachedRepoTreeNotFoundError:
        return None
    folder = repo_storage(cache, repo_id, repo_type) / "snapshots" / sha
    return [
        RemoteFile(path, tree[path].size, tree[path].blob_id, _linked_sha256(folder / path))
        for path in needed_files(tree, repo_type, allow_patterns)
    ]


def _linked_sha256(pointer: Path) -> str | None:
    """An LFS file's sha256: the name of the blob its snapshot entry links to.

    The cached listing keeps only git's blob id, which for an LFS file hashes the pointer, not the content.
    A blob is named by the ETag the hub served (the sha256 for LFS files), and the kit checks each blob it
    downloads against the hub's listing before linking it. Without links (a filesystem without symlinks)
    an LFS file cannot be checked offline and is reported as differing.
    """
    if not pointer.is_symlink():
        return None
    name = Path(os.readlink(pointer)).name
    return name if _SHA256_NAME.fullmatch(name) else None
