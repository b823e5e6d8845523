"""One repo at one revision: resolved to its commit sha, the needed files downloaded by sha, verified.

Every download is made by commit sha, never by tag. Offline, the files come from the cache alone and are
checked against the lock, or against the tree listing cached when they were fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpt4allj_kit.errors import ConfigError, HubError
from gpt4allj_kit.fetch.cache import (
    cached_listing,
    cached_problem,
    file_hashes,
    hub_cache_dir,
    hub_mismatch,
    link_snapshot,
    lock_mismatch,
    offline_mode,
    remove_cached,
    repo_storage,
    write_ref,
)
from gpt4allj_kit.fetch.download import ProgressCallback, download_file
from gpt4allj_kit.fetch.errors import hub_errors
from gpt4allj_kit.fetch.listing import RemoteFile, remote_files
from gpt4allj_kit.fetch.lock import FileEntry, LockedAsset
from gpt4allj_kit.fetch.revisions import offline_sha, resolve_sha


@dataclass(frozen=True)
class Snapshot:
    """A local folder holding exactly the needed files of one commit of a repo."""

    repo_id: str
    repo_type: str
    revision: str
    sha: str
    path: Path
    files: tuple[FileEntry, ...] = ()
    repaired: tuple[str, ...] = ()  # cached files that failed verification and were fetched again

    def locked(self) -> LockedAsset:
        """The snapshot as the lock records it."""
        return LockedAsset(self.repo_id, self.repo_type, self.revision, self.sha, self.files)


def fetch_snapshot(
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
    target = _Target(repo_id, repo_type, revision, hub_cache_dir(cache_dir), allow_patterns, locked)
    offline = offline_mode() if offline is None else offline
    if offline:
        return _offline_snapshot(target)
    return _online_snapshot(target, verify, progress)


@dataclass(frozen=True)
class _Target:
    """One asset to bring into the cache, and the lock entry it must match (if any)."""

    repo_id: str
    repo_type: str
    revision: str
    cache: Path
    allow_patterns: list[str] | None
    locked: LockedAsset | None

    @property
    def storage(self) -> Path:
        return repo_storage(self.cache, self.repo_id, self.repo_type)

    @property
    def where(self) -> str:
        return f"{self.repo_type} {self.repo_id}@{self.revision}"


def _online_snapshot(t: _Target, verify: bool, progress: ProgressCallback | None) -> Snapshot:
    sha = resolve_sha(t.repo_id, repo_type=t.repo_type, revision=t.revision, cache_dir=t.cache)
    if t.locked is not None and t.locked.sha != sha:
        raise HubError(
            f"{t.repo_type} {t.repo_id}: revision '{t.revision}' moved: lock has {t.locked.sha}, "
            f"hub now has {sha}; re-run fetch without --locked to accept the new commit"
        )
    storage = t.storage
    with hub_errors(t.repo_id, t.repo_type, t.revision, t.cache):
        remotes = remote_files(t.repo_id, t.repo_type, sha, t.allow_patterns)
        folder = storage / "snapshots" / sha
        repaired = []
        for remote in remotes:
            problem = cached_problem(folder / remote.path, remote, t.locked, full=verify)
            if problem and problem != "missing":
                repaired.append(f"{remote.path} ({problem})")
                remove_cached(storage, sha, remote.path)
            if not (folder / remote.path).exists():
                download_file(t.repo_id, t.repo_type, sha, remote, storage, progress)
        link_snapshot(t.repo_id, t.repo_type, sha, [r.path for r in remotes], t.cache)
        unlinked = [r.path for r in remotes if not (folder / r.path).exists()]
        if unlinked:
            raise HubError(f"{t.where}: the cache did not take {', '.join(unlinked)}")
        entries = _entries(folder, remotes)
    if t.revision != sha:
        # The ref is what offline tools (and the kit offline) resolve a tag with: written after verification.
        write_ref(storage, t.revision, sha)
    snap = Snapshot(t.repo_id, t.repo_type, t.revision, sha, folder, tuple(entries), tuple(repaired))
    if t.locked is not None:
        _check_against_lock(snap, t.locked)
    return snap


def _entries(folder: Path, remotes: list[RemoteFile]) -> list[FileEntry]:
    return [FileEntry(r.path, r.size, r.lfs_sha256 or file_hashes(folder / r.path)[0]) for r in remotes]


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


def cached_snapshot(
    repo_id: str,
    *,
    repo_type: str,
    revision: str,
    cache_dir: Path | str | None = None,
    locked: LockedAsset | None = None,
) -> Snapshot | None:
    """The snapshot an earlier fetch left in the cache, found without the hub; None when it is not whole.

    The sha comes from `revision` itself, the lock's entry, else the ref the fetch wrote; the file list from
    the lock, else the tree listing cached at fetch time. Files are checked by size only, as an online fetch
    checks cached files, so that callers that only read (a dry run, the checks before a launch) stay fast.
    """
    t = _Target(repo_id, repo_type, revision, hub_cache_dir(cache_dir), None, locked)
    sha = offline_sha(t.storage, revision, locked)
    if sha is None:
        return None
    folder = t.storage / "snapshots" / sha
    if locked is not None and locked.sha == sha:
        if any(lock_mismatch(folder / f.path, f, full=False) for f in locked.files):
            return None
        return Snapshot(repo_id, repo_type, revision, sha, folder, locked.files)
    remotes = cached_listing(repo_id, repo_type, sha, t.cache, None)
    if remotes is None or any(
        not (folder / r.path).is_file() or (folder / r.path).stat().st_size != r.size for r in remotes
    ):
        return None
    return Snapshot(repo_id, repo_type, revision, sha, folder, tuple(_entries(folder, remotes)))


def _offline_snapshot(t: _Target) -> Snapshot:
    sha = offline_sha(t.storage, t.revision, t.locked)
    if sha is None:
        raise HubError(
            f"offline and the cache has no {t.where} (nothing fetched for it yet): fetch it online first"
        )
    folder = t.storage / "snapshots" / sha
    if t.locked is not None:
        paths = [f.path for f in t.locked.files]
        check = {f.path: (lambda local, f=f: lock_mismatch(local, f, full=True)) for f in t.locked.files}
    else:
        # Without a lock entry, the listing cached at fetch time says which files make the snapshot whole:
        # an offline snapshot_download would return a partial folder without complaint.
        remotes = cached_listing(t.repo_id, t.repo_type, sha, t.cache, t.allow_patterns)
        if remotes is None:
            raise HubError(
                f"offline and the cache has no file listing for {t.where} ({sha[:12]}): fetch it online first"
            )
        paths = [r.path for r in remotes]
        check = {r.path: (lambda local, r=r: hub_mismatch(local, r)) for r in remotes}
    missing = [p for p in paths if not (folder / p).exists()]
    if missing:
        raise HubError(
            f"offline and the cache lacks {len(missing)} file(s) of {t.where} ({sha[:12]}): "
            + ", ".join(missing)
        )
    bad = [f"{p} ({problem})" for p in paths if (problem := check[p](folder / p))]
    if bad:
        raise HubError(f"offline and cached files of {t.where} fail verification: {', '.join(bad)}")
    files = t.locked.files if t.locked is not None else tuple(_entries(folder, remotes))
    return Snapshot(t.repo_id, t.repo_type, t.revision, sha, folder, tuple(files))
