"""`gpt4allj-kit fetch` end to end against the hub stand-in: resolution, files, lock, repair, resume."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from gpt4allj_kit.assets import TinyAssets
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.fetch.lock import read_lock, write_lock
from gpt4allj_kit.fetch.stage import FetchRequest, fetch_assets
from gpt4allj_kit.fetch.tiny import TinyWorld

from .conftest import BASE, DATA, DECOYS, MODEL, Hub

NEEDED_MODEL_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


def _asset(result: dict, repo_id: str) -> dict:
    return next(a for a in result["assets"] if a["repo_id"] == repo_id)


def test_fetch_resolves_tags_to_shas_and_locks_the_needed_files(kit, hub: Hub) -> None:
    run = kit("fetch", "--revision", "v1.0", "--json")
    assert run.code == 0, run.err
    result = run.json()
    for repo_id, revision in ((MODEL, "v1.0"), (DATA, "v1.0"), (BASE, "main")):
        asset = _asset(result, repo_id)
        assert asset["sha"] == hub.shas[repo_id, revision]
        folder = Path(asset["path"])
        assert folder.parts[-2:] == ("snapshots", asset["sha"])  # the hub's own cache layout
        assert folder.is_relative_to(kit.hf_home / "hub")
    model = _asset(result, MODEL)
    files = {f["path"] for f in model["files"]}
    assert files >= NEEDED_MODEL_FILES
    assert not files & {*DECOYS, "pytorch_model.bin", ".gitattributes"}  # safetensors wins, no duplicates
    assert {f["path"] for f in _asset(result, BASE)["files"]} >= {"pytorch_model.bin", "config.json"}
    assert not {f["path"] for f in _asset(result, BASE)["files"]} & set(DECOYS)
    # Decoys never left the server; every download was made by sha, never by tag.
    resolves = [s.path for s in hub.server.log if "/resolve/" in s.path]
    assert not [p for p in resolves if p.endswith((*DECOYS, "pytorch_model.bin")) and MODEL in p]
    assert all(f"/resolve/{hub.shas[MODEL, 'v1.0']}/" in p for p in resolves if p.startswith(f"/{MODEL}/"))
    # The lock: repo, type, requested revision, sha, and every file with size and the hub's sha256.
    lock = read_lock(kit.lock)
    entry = lock.find(MODEL, "model", "v1.0")
    assert entry is not None and entry.sha == hub.shas[MODEL, "v1.0"]
    weights = next(f for f in entry.files if f.path == "model.safetensors")
    server_bytes = hub.server.repos["model", MODEL].commits[entry.sha]["model.safetensors"]
    import hashlib

    assert (weights.size, weights.sha256) == (len(server_bytes), hashlib.sha256(server_bytes).hexdigest())
    assert (kit.hf_home / "hub" / "models--nomic-ai--gpt4all-j" / "refs" / "v1.0").read_text() == entry.sha
    # The command's manifest beside the lock: what was asked, which shas came back, the environment.
    manifest = json.loads(kit.lock.with_name(f"{kit.lock.stem}.manifest.json").read_text())
    assert manifest["stage"] == "fetch" and manifest["config"]["revision"] == "v1.0"
    assert {a["sha"] for a in manifest["assets"]} >= {entry.sha}
    assert manifest["environment"]["lock_sha256"]


def test_revisions_get_their_own_files_and_share_identical_blobs(kit, hub: Hub) -> None:
    old = kit("fetch", "--revision", "v1.0", "--what", "model", "--json")
    new = kit("fetch", "--revision", "v1.2-jazzy", "--what", "model", "--json")
    assert old.code == 0 and new.code == 0, old.err + new.err
    old_dir, new_dir = Path(_asset(old.json(), MODEL)["path"]), Path(_asset(new.json(), MODEL)["path"])
    assert old_dir != new_dir
    assert "kit_revision" not in json.loads((old_dir / "config.json").read_text())
    assert json.loads((new_dir / "config.json").read_text())["kit_revision"] == "v1.2-jazzy"
    # Same weights in both commits: one blob in the cache, downloaded once.
    assert (old_dir / "model.safetensors").resolve() == (new_dir / "model.safetensors").resolve()
    assert len(hub.server.gets("model.safetensors")) == 1
    lock = read_lock(kit.lock)
    assert {a.revision for a in lock.assets} == {"v1.0", "v1.2-jazzy"}


def test_locked_refuses_a_moved_tag_and_shows_both_shas(kit, hub: Hub) -> None:
    assert kit("fetch", "--revision", "v1.0", "--what", "data").code == 0
    data = hub.server.repos["dataset", DATA]
    old_sha = hub.shas[DATA, "v1.0"]
    new_sha = data.commit({"data/train.jsonl": b'{"prompt": "p", "response": "r", "source": "s"}\n'}, "v1.0")
    refused = kit("fetch", "--revision", "v1.0", "--what", "data", "--locked")
    assert refused.code == 3
    assert old_sha in refused.err and new_sha in refused.err and "moved" in refused.err
    assert "Traceback" not in refused.err and len(refused.err.strip().splitlines()) == 1
    assert read_lock(kit.lock).find(DATA, "dataset", "v1.0").sha == old_sha  # the lock is untouched
    accepted = kit("fetch", "--revision", "v1.0", "--what", "data")
    assert accepted.code == 0, accepted.err
    assert f"lock had {old_sha}, now {new_sha}" in accepted.out
    assert read_lock(kit.lock).find(DATA, "dataset", "v1.0").sha == new_sha


def test_verify_catches_a_flipped_byte_and_a_truncated_file_and_repairs_them(kit, hub: Hub) -> None:
    first = kit("fetch", "--revision", "v1.0", "--what", "model", "--json")
    assert first.code == 0, first.err
    folder = Path(_asset(first.json(), MODEL)["path"])
    weights = (folder / "model.safetensors").resolve()
    good = weights.read_bytes()
    os.chmod(weights, 0o644)
    weights.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    config = (folder / "tokenizer.json").resolve()
    os.chmod(config, 0o644)
    config.write_bytes(config.read_bytes()[:-10])
    # Without --verify the same-size flip goes unnoticed by design (cached files are checked by size only).
    repaired = kit("fetch", "--revision", "v1.0", "--what", "model", "--verify")
    assert repaired.code == 0, repaired.err
    assert "repaired model.safetensors (corrupted" in repaired.out.replace("  ", " ")
    assert "repaired tokenizer.json (truncated" in repaired.out.replace("  ", " ")
    assert (folder / "model.safetensors").read_bytes() == good
    assert len(hub.server.gets("model.safetensors")) == 2
    again = kit("fetch", "--revision", "v1.0", "--what", "model", "--verify", "--locked")
    assert again.code == 0 and "repaired" not in again.out, again.out + again.err


def test_a_dropped_connection_is_resumed_by_the_next_fetch(kit, hub: Hub) -> None:
    size = len(hub.server.repos["model", MODEL].commits[hub.shas[MODEL, "v1.0"]]["model.safetensors"])
    cut = size // 3
    # The first GET breaks after `cut` bytes and the retry breaks at once: this fetch gives up.
    hub.server.drop_connection("model.safetensors", after_bytes=cut, times=2)
    broken = kit("fetch", "--revision", "v1.0", "--what", "model")
    assert broken.code == 3, broken.out + broken.err
    assert "cannot reach the hub" in broken.err and "Traceback" not in broken.err
    assert not kit.lock.exists()  # nothing half-fetched is recorded
    snapshot = kit.hf_home / "hub" / "models--nomic-ai--gpt4all-j" / "snapshots" / hub.shas[MODEL, "v1.0"]
    assert not (snapshot / "model.safetensors").exists()
    resumed = kit("fetch", "--revision", "v1.0", "--what", "model", "--verify")
    assert resumed.code == 0, resumed.err
    gets = hub.server.gets("model.safetensors")
    assert gets[-1].range == f"bytes={cut}-" and gets[-1].status == 206
    assert hub.server.bytes_served("model.safetensors") == size  # every byte sent exactly once
    assert read_lock(kit.lock).find(MODEL, "model", "v1.0") is not None


def test_a_connection_dropped_once_is_resumed_within_the_same_fetch(kit, hub: Hub) -> None:
    hub.server.drop_connection("data/train.jsonl", after_bytes=1000, times=1)
    run = kit("fetch", "--revision", "v1.2-jazzy", "--what", "data", "--verify")
    assert run.code == 0, run.err
    assert [g.range for g in hub.server.gets("data/train.jsonl")] == [None, "bytes=1000-"]


def test_the_stage_writes_the_lock_and_its_manifest_in_the_smoke_world(
    tiny: TinyAssets, tmp_path: Path
) -> None:
    world = TinyWorld(tiny.seed, tmp_path / "fixtures", fixture_rows=4, assets_dir=tiny.root.parent)
    lock_path = tmp_path / "run" / "gpt4allj-kit.lock.json"
    result = fetch_assets(FetchRequest(lock=lock_path, tiny=world, command="gpt4allj-kit reproduce"))
    assert result.lock == lock_path
    assert result.manifest == lock_path.with_name("gpt4allj-kit.lock.manifest.json")
    lock = read_lock(lock_path)
    assert {a.repo_id for a in lock.assets} == {
        "kit/tiny-gptj",
        "kit/tiny-gptj-tokenizer",
        "kit/tiny-prompt-generations",
        "kit/task-fixtures",
    }
    manifest = json.loads(result.manifest.read_text())
    assert manifest["stage"] == "fetch" and manifest["lock"] == str(lock_path)
    assert manifest["command"] == "gpt4allj-kit reproduce" and manifest["config"]["tiny"]["seed"] == tiny.seed
    assert {(a["repo_id"], a["sha"]) for a in manifest["assets"]} == {(a.repo_id, a.sha) for a in lock.assets}
    assert result.fixtures is not None and (result.fixtures / "boolq.yaml").is_file()
    # The same seed gives the same content shas: a re-run against the lock leaves it as it was.
    before = lock_path.read_bytes()
    again = fetch_assets(FetchRequest(lock=lock_path, locked=True, tiny=world))
    assert lock_path.read_bytes() == before
    assert all(f.previous_sha == f.snapshot.sha for f in again.assets)
    # A lock recording other content (the generator changed since) is refused, and so is its run dir.
    model = lock.find("kit/tiny-gptj", "model", f"seed{tiny.seed}")
    assert model is not None
    write_lock(lock_path, lock.with_asset(replace(model, sha="0" * 40)))
    with pytest.raises(ConfigError, match="generated assets differ from the run's lock"):
        fetch_assets(FetchRequest(lock=lock_path, locked=True, tiny=world))
