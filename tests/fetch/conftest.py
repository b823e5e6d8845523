"""Fetch test fixtures: the stand-in server with tiny model/dataset repos, and the kit as a subprocess."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gpt4allj_kit.assets import TinyAssets, synthetic_rows

from .standin import HubStandIn

MODEL = "nomic-ai/gpt4all-j"
DATA = "nomic-ai/gpt4all-j-prompt-generations"
BASE = "EleutherAI/gpt-j-6B"
PRIVATE = "nomic-ai/private-model"
# Other weight formats the real repos carry: fetch must never download them.
DECOYS = ("flax_model.msgpack", "tf_model.h5", "onnx/model.onnx")
ROWS = {"v1.0": (11, 40), "v1.2-jazzy": (12, 50)}


@dataclass
class Hub:
    server: HubStandIn
    shas: dict[tuple[str, str], str]  # (repo_id, revision) -> sha


def jsonl(rows: list[dict[str, str]]) -> bytes:
    return b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in rows)


def _model_files(tiny: TinyAssets) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in tiny.model_dir.iterdir() if p.is_file()}
    files.update({name: b"decoy " + name.encode() * 64 for name in DECOYS})
    files["pytorch_model.bin"] = b"pytorch duplicate of the safetensors weights" * 16
    files[".gitattributes"] = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    return files


@pytest.fixture
def hub(tiny: TinyAssets) -> Iterator[Hub]:
    """A fresh stand-in per test (tags move, faults fire): two revisions of each repo, each its own sha."""
    server = HubStandIn().start()
    shas: dict[tuple[str, str], str] = {}
    model = server.repo(MODEL)
    files = _model_files(tiny)
    shas[MODEL, "v1.0"] = model.commit(files, "v1.0")
    config = json.loads(files["config.json"])
    files["config.json"] = json.dumps({**config, "kit_revision": "v1.2-jazzy"}, indent=2).encode()
    shas[MODEL, "v1.2-jazzy"] = model.commit(files, "v1.2-jazzy", "main")
    data = server.repo(DATA, "dataset")
    for tag, (seed, rows) in ROWS.items():
        shas[DATA, tag] = data.commit({"data/train.jsonl": jsonl(synthetic_rows(seed, rows))}, tag)
    data.refs["main"] = shas[DATA, "v1.2-jazzy"]
    base = server.repo(BASE)
    bins = {k: v for k, v in _model_files(tiny).items() if not k.endswith(".safetensors")}
    shas[BASE, "main"] = base.commit(bins, "main")
    server.repo(PRIVATE, private=True).commit({"config.json": b"{}"}, "main")
    yield Hub(server, shas)
    server.stop()


@dataclass
class KitRun:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def kit(tmp_path: Path, hub: Hub, kit_cli):
    """Runs `gpt4allj-kit` in a subprocess against the stand-in (env read at import: a fresh process each)."""
    hf_home = tmp_path / "hf-home"

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> KitRun:
        at_hub = {"HF_ENDPOINT": hub.server.endpoint, "HF_HOME": str(hf_home), "NO_COLOR": "1", **(env or {})}
        proc = kit_cli(*args, env=at_hub, cwd=tmp_path, timeout=timeout)
        return KitRun(proc.returncode, proc.stdout, proc.stderr)

    run.hf_home = hf_home  # type: ignore[attr-defined]
    run.lock = tmp_path / "gpt4allj-kit.lock.json"  # type: ignore[attr-defined]
    return run
