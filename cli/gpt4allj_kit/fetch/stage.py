"""The fetch stage: every asset a run needs, resolved, downloaded, verified, locked, with its manifest.

`fetch_assets` is the one entry point, for the `fetch` command and for `reproduce`, in both worlds: hub
assets by revision, or the smoke world's generated assets (`FetchRequest.tiny`). It writes the asset lock
and, beside it, the stage's manifest (`<lock stem>.manifest.json`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt4allj_kit import paths
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.fetch.cache import offline_mode
from gpt4allj_kit.fetch.download import ProgressCallback
from gpt4allj_kit.fetch.lock import AssetLock, lock_manifest_path, read_lock, write_lock
from gpt4allj_kit.fetch.snapshot import Snapshot, fetch_snapshot
from gpt4allj_kit.fetch.tasks import config_patterns, task_datasets
from gpt4allj_kit.fetch.tiny import TinyWorld, check_same_assets, tiny_snapshots
from gpt4allj_kit.files import check_writable
from gpt4allj_kit.manifest import now_iso, write_manifest
from gpt4allj_kit.recipe import ASSET_REPOS, DEFAULT_REVISION

WHAT = ("data", "model", "base", "tasks")


@dataclass(frozen=True)
class FetchRequest:
    """What to fetch and how; the defaults are those of `gpt4allj-kit fetch`."""

    what: tuple[str, ...] = ("data", "model", "base")
    revision: str = DEFAULT_REVISION
    base_revision: str = "main"
    tasks_revision: str = "main"
    lock: Path = Path(paths.LOCK_NAME)
    locked: bool = False  # every asset as the lock has it, the lock left as it is
    verify: bool = False  # re-hash cached files, fetch bad ones again
    offline: bool | None = None  # None: as HF_HUB_OFFLINE says
    cache_dir: Path | None = None
    tiny: TinyWorld | None = None  # the smoke world: generated assets instead of the hub
    command: str | list[str] = "gpt4allj-kit fetch"

    @property
    def manifest(self) -> Path:
        return lock_manifest_path(self.lock)

    def config(self) -> dict[str, Any]:
        """The request as the manifest records it."""
        if self.tiny is not None:
            tiny = {"seed": self.tiny.seed, "fixture_rows": self.tiny.fixture_rows}
            return {"tiny": tiny, "revision": self.revision, "locked": self.locked}
        return {
            "what": ",".join(self.what),
            "revision": self.revision,
            "locked": self.locked,
            "verify": self.verify,
            "offline": bool(self.offline),
        }


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

    def as_json(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "what": self.what,
            "repo_id": snap.repo_id,
            "repo_type": snap.repo_type,
            "revision": snap.revision,
            "sha": snap.sha,
            "path": str(snap.path),
            "files": [f.as_json() for f in snap.files],
            "repaired": list(snap.repaired),
            "previous_sha": self.previous_sha,
        }


@dataclass(frozen=True)
class FetchResult:
    lock: Path
    manifest: Path
    assets: list[Fetched]
    fixtures: Path | None = None  # the smoke world's task fixtures (an lm-eval include path)

    def as_json(self) -> dict[str, Any]:
        return {"lock": str(self.lock), "assets": [f.as_json() for f in self.assets]}


def asset_requests(
    what: Iterable[str], *, revision: str, base_revision: str = "main", tasks_revision: str = "main"
) -> list[AssetRequest]:
    """The (repo, revision) pairs `fetch --what` names; evaluation tasks sharing a repo share one asset."""
    what = list(what)
    if not what:
        raise ConfigError(f"--what names nothing to fetch: give {', '.join(WHAT)} (comma-separated)")
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
            raise ConfigError(f"--what takes {', '.join(WHAT)} (comma-separated), not {item!r}")
    return requests


def fetch_assets(request: FetchRequest, progress: ProgressCallback | None = None) -> FetchResult:
    """Fetches every asset, then writes the lock (once, atomically, after all verified) and the manifest.

    `request.locked`: every asset must be in the lock, at the same sha and hashes; the lock is left as it is.
    """
    started = now_iso()
    # The lock and manifest are written after every download: a path that cannot take them is said first.
    if request.tiny is not None or not request.locked:
        check_writable(request.lock, "--lock", directory=False)
    check_writable(request.manifest, directory=False)
    if request.cache_dir is not None:
        check_writable(request.cache_dir, "--cache-dir", directory=True)
    lock = read_lock(request.lock)
    fixtures = None
    if request.tiny is not None:
        made = tiny_snapshots(request.tiny)
        fixtures = made.fixtures
        if request.locked:
            check_same_assets(lock, [snap for _, snap in made.snapshots])
        fetched = [_with_previous(what, snap, lock) for what, snap in made.snapshots]
    else:
        fetched = _fetch_hub(request, lock, progress)
    # A locked hub fetch leaves the lock as it is; the smoke world's lock takes assets it did not have yet.
    if request.tiny is not None or not request.locked:
        new = lock
        for item in fetched:
            new = new.with_asset(item.snapshot.locked())
        if new != lock:
            write_lock(request.lock, new)
    write_manifest(
        request.manifest,
        stage="fetch",
        command=request.command,
        config=request.config(),
        started=started,
        lock=str(request.lock),
        assets=[f.as_json() for f in fetched],
    )
    return FetchResult(request.lock, request.manifest, fetched, fixtures)


def _with_previous(what: str, snap: Snapshot, lock: AssetLock) -> Fetched:
    before = lock.find(snap.repo_id, snap.repo_type, snap.revision)
    return Fetched(what, snap, before.sha if before else None)


def _fetch_hub(request: FetchRequest, lock: AssetLock, progress: ProgressCallback | None) -> list[Fetched]:
    offline = offline_mode() if request.offline is None else request.offline
    requests = asset_requests(
        request.what,
        revision=request.revision,
        base_revision=request.base_revision,
        tasks_revision=request.tasks_revision,
    )
    fetched = []
    for req in requests:
        entry = lock.find(req.repo_id, req.repo_type, req.revision)
        if request.locked and entry is None:
            raise ConfigError(
                f"--locked, but {request.lock} has no entry for {req.repo_type} {req.repo_id}@{req.revision}"
            )
        # Offline, the file list comes from the lock or the cached listing: no config lookup on the hub.
        patterns = (
            None if offline else config_patterns(req.repo_id, req.revision, req.configs, request.cache_dir)
        )
        snap = fetch_snapshot(
            req.repo_id,
            repo_type=req.repo_type,
            revision=req.revision,
            cache_dir=request.cache_dir,
            allow_patterns=patterns,
            offline=offline,
            locked=entry if (request.locked or offline) else None,
            verify=request.verify,
            progress=progress,
        )
        fetched.append(_with_previous(req.what, snap, lock))
    return fetched
