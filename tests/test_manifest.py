"""Every manifest proves what ran: kit version, lock hash, package versions; never a secret."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import pytest
from gpt4allj_kit import __version__, paths
from gpt4allj_kit.config import load_train_config
from gpt4allj_kit.manifest import write_manifest
from gpt4allj_kit.redaction import redact

SECRET = "hf_secretvalue123"


def test_manifest_records_the_kit_and_the_lock_but_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("WANDB_API_KEY", SECRET + "w")
    path = tmp_path / "run" / "manifest.json"
    written = write_manifest(
        path,
        stage="test",
        command=["gpt4allj-kit", "fetch", f"--token={SECRET}"],
        config=load_train_config(),
        started="2026-01-01T00:00:00+00:00",
        note=f"token {SECRET} must not leak",
    )
    text = path.read_text()
    assert SECRET not in text
    manifest = json.loads(text)
    assert manifest == json.loads(json.dumps(written, default=str))
    env = manifest["environment"]
    assert env["kit_version"] == __version__
    lock_digest = hashlib.sha256(paths.lock_path().read_bytes()).hexdigest()
    assert env["lock_sha256"] == lock_digest
    assert env["packages"]["torch"] == metadata.version("torch")
    assert env["packages"]["deepspeed"] == metadata.version("deepspeed")
    assert env["secrets_set"] == {"HF_TOKEN": True, "HUGGING_FACE_HUB_TOKEN": False, "WANDB_API_KEY": True}
    assert manifest["config"]["lr"] == 2.0e-5 and manifest["stage"] == "test"
    assert "***" in manifest["command"]


def test_extra_fields_are_redacted_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    path = tmp_path / "manifest.json"
    write_manifest(path, stage="test", command="x", error=f"401 for token {SECRET}")
    assert SECRET not in path.read_text()
    assert redact(f"a {SECRET} b") == "a *** b"
