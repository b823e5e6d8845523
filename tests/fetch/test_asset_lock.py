"""The asset lock's one reader and writer: what it writes reads back equal; a damaged lock is one line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.fetch.lock import LOCK_VERSION, AssetLock, FileEntry, LockedAsset, read_lock, write_lock

MODEL = LockedAsset("org/model", "model", "v1", "a" * 40, (FileEntry("config.json", 3, "b" * 64),))
DATA = LockedAsset(
    "org/data",
    "dataset",
    "v1",
    "c" * 40,
    (FileEntry("data/a.jsonl", 5, "d" * 64), FileEntry("data/b.jsonl", 7, "e" * 64)),
)


def test_the_lock_round_trips_through_its_reader_and_writer(tmp_path: Path) -> None:
    lock = AssetLock().with_asset(MODEL).with_asset(DATA)
    path = tmp_path / "gpt4allj-kit.lock.json"
    write_lock(path, lock)
    assert read_lock(path) == lock
    data = json.loads(path.read_text())
    assert data["version"] == LOCK_VERSION
    assert [a["repo_id"] for a in data["assets"]] == ["org/data", "org/model"]  # by type, then repo
    assert data["assets"][1] == {
        "repo_id": "org/model",
        "repo_type": "model",
        "revision": "v1",
        "sha": "a" * 40,
        "files": [{"path": "config.json", "size": 3, "sha256": "b" * 64}],
    }
    moved = replace(MODEL, sha="f" * 40)
    updated = lock.with_asset(moved)
    assert updated.find("org/model", "model", "v1") == moved and len(updated.assets) == 2
    assert updated.find("org/model", "model", "v2") is None


def test_a_missing_lock_is_empty_and_a_damaged_one_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "gpt4allj-kit.lock.json"
    assert read_lock(path) == AssetLock()
    for text in ("{", '{"assets": [{"repo_id": "x"}]}', "[]"):
        path.write_text(text)
        with pytest.raises(ConfigError, match="is not a valid kit lock") as info:
            read_lock(path)
        assert "\n" not in info.value.message
