"""The asset lock (`gpt4allj-kit.lock.json`): every fetched (repo, revision) with its commit sha and files.

This module is the lock's one reader and writer: everything that reads the lock calls `read_lock`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import atomic_write_json, read_json_object
from gpt4allj_kit.redaction import refuse_secrets

LOCK_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    """One file of a snapshot as the lock records it."""

    path: str
    size: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class LockedAsset:
    repo_id: str
    repo_type: str
    revision: str
    sha: str
    files: tuple[FileEntry, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return self.repo_id, self.repo_type, self.revision

    def as_json(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "repo_type": self.repo_type,
            "revision": self.revision,
            "sha": self.sha,
            "files": [f.as_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LockedAsset:
        return cls(
            repo_id=data["repo_id"],
            repo_type=data["repo_type"],
            revision=data["revision"],
            sha=data["sha"],
            files=tuple(FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in data["files"]),
        )


@dataclass
class AssetLock:
    """The lock file's content: its assets, sorted by (type, repo, revision) when written."""

    assets: list[LockedAsset] = field(default_factory=list)

    def find(self, repo_id: str, repo_type: str, revision: str) -> LockedAsset | None:
        return next((a for a in self.assets if a.key == (repo_id, repo_type, revision)), None)

    def with_asset(self, new: LockedAsset) -> AssetLock:
        kept = [a for a in self.assets if a.key != new.key]
        return AssetLock(sorted([*kept, new], key=lambda a: (a.repo_type, a.repo_id, a.revision)))

    def as_json(self) -> dict[str, Any]:
        return {"version": LOCK_VERSION, "assets": [a.as_json() for a in self.assets]}


def lock_manifest_path(lock: Path) -> Path:
    """Where the fetch stage's manifest sits: beside its lock, `<lock stem>.manifest.json`."""
    return lock.with_name(f"{lock.stem}.manifest.json")


def read_lock(path: Path) -> AssetLock:
    """The lock at `path`; a missing file is an empty lock, a damaged one a one-line ConfigError."""
    if not path.exists() and not path.is_symlink():
        return AssetLock()
    try:
        data = read_json_object(path, kind="lock file")
    except ConfigError as exc:
        reason = exc.message.removeprefix(f"{path}: ")
        raise ConfigError(f"lock file {path} is not a valid kit lock ({reason})") from None
    try:
        return AssetLock([LockedAsset.from_json(a) for a in data["assets"]])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"lock file {path} is not a valid kit lock ({type(exc).__name__}: {exc})") from None


def write_lock(path: Path, lock: AssetLock) -> None:
    """Writes the lock atomically: readers see the old lock or the new one, never half of one."""
    data = lock.as_json()
    refuse_secrets(data, str(path))  # read back to pin what runs: never masked, never holding a secret
    atomic_write_json(path, data)
