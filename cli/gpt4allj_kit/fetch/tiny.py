"""The smoke world's fetch: the generated tiny model, tokenizer, data and task fixtures, locked by content.

Nothing comes from a hub: each asset is a local folder, and a digest of its file list stands where a hub
commit sha stands, so the lock and the manifest of a smoke run read like those of a real one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from gpt4allj_kit import paths
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.fetch.lock import AssetLock, FileEntry
from gpt4allj_kit.fetch.snapshot import Snapshot
from gpt4allj_kit.files import sha256_file


@dataclass(frozen=True)
class TinyWorld:
    """What the smoke world is made from: one seed, and where its task fixtures go."""

    seed: int
    fixtures_dir: Path
    fixture_rows: int
    assets_dir: Path | None = None  # default: the kit's cache


@dataclass(frozen=True)
class TinyFetch:
    snapshots: list[tuple[str, Snapshot]]  # (what, snapshot)
    fixtures: Path  # the lm-eval include path of the task fixtures


def tiny_snapshots(world: TinyWorld) -> TinyFetch:
    """Makes (or finds, by seed) the tiny assets and the task fixtures, each as a content-locked snapshot."""
    from gpt4allj_kit.assets import tiny_assets
    from gpt4allj_kit.evaluate.fixtures import task_fixtures

    tiny = tiny_assets(world.assets_dir or paths.kit_cache_dir(), seed=world.seed)
    include = task_fixtures(world.fixtures_dir, world.seed, world.fixture_rows)
    revision = f"seed{world.seed}"
    fixtures = Path(world.fixtures_dir)

    def local(repo_id: str, repo_type: str, folder: Path, names: list[Path]) -> Snapshot:
        return _local_snapshot(repo_id, repo_type, revision, folder, names)

    return TinyFetch(
        [
            ("model", local("kit/tiny-gptj", "model", tiny.root, sorted(tiny.model_dir.rglob("*.*")))),
            (
                "tokenizer",
                local("kit/tiny-gptj-tokenizer", "model", tiny.root, sorted(tiny.tokenizer_dir.glob("*"))),
            ),
            ("data", local("kit/tiny-prompt-generations", "dataset", tiny.root, [tiny.jsonl])),
            ("tasks", local("kit/task-fixtures", "dataset", fixtures, sorted(fixtures.rglob("*.jsonl")))),
        ],
        include,
    )


def check_same_assets(lock: AssetLock, snapshots: list[Snapshot]) -> None:
    """A run's generated assets must stay what its lock recorded: a changed generator needs a new run dir."""
    for snap in snapshots:
        before = lock.find(snap.repo_id, snap.repo_type, snap.revision)
        if before is not None and before.sha != snap.sha:
            raise ConfigError(
                f"{snap.repo_id}: the generated assets differ from the run's lock ({before.sha[:12]} -> "
                f"{snap.sha[:12]}); the kit's asset generator changed - use a new --output directory"
            )


def content_sha(files: tuple[FileEntry, ...]) -> str:
    """A 40-hex digest of a local asset's file list, standing where a hub commit sha stands."""
    digest = hashlib.sha1(usedforsecurity=False)
    for entry in sorted(files, key=lambda f: (f.path, f.size, f.sha256)):
        digest.update(f"{entry.path}\0{entry.size}\0{entry.sha256}\n".encode())
    return digest.hexdigest()


def _local_snapshot(repo_id: str, repo_type: str, revision: str, folder: Path, names: list[Path]) -> Snapshot:
    files = tuple(
        sorted(
            (FileEntry(str(p.relative_to(folder)), p.stat().st_size, sha256_file(p)) for p in names),
            key=lambda f: f.path,
        )
    )
    return Snapshot(repo_id, repo_type, revision, content_sha(files), folder, files)
