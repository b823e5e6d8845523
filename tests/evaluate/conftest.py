"""Shared evaluation runs: one kit run (a training dir: epoch_1 and final) and one `lm_eval` command-line
run on the same tiny model, tasks and fixtures, made once per session and read by several tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from gpt4allj_kit.assets import TinyAssets
from gpt4allj_kit.evaluate.fixtures import task_fixtures
from gpt4allj_kit.recipe import EVAL_TASKS

LIMIT = 2
BATCH = 4
FIXTURE_SEED = 11
FIXTURE_DOCS = 5
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Runs:
    fixtures: Path
    train_dir: Path
    kit_out: Path
    cli_results: Path
    kit_stdout: str
    limit: int = LIMIT
    fixture_seed: int = FIXTURE_SEED
    fixture_docs: int = FIXTURE_DOCS


@pytest.fixture(scope="session")
def run_kit(kit_cli: Any) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The CLI offline, with time for an evaluation."""
    return partial(kit_cli, env=kit_cli.OFFLINE, timeout=600)


@pytest.fixture(scope="session")
def eval_fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return task_fixtures(tmp_path_factory.mktemp("fixtures"), seed=FIXTURE_SEED, n=FIXTURE_DOCS)


@pytest.fixture(scope="session")
def runs(
    tiny: TinyAssets,
    eval_fixtures: Path,
    tmp_path_factory: pytest.TempPathFactory,
    kit_cli: Any,
    run_kit: Any,
) -> Runs:
    base = tmp_path_factory.mktemp("eval-runs")
    # A training output dir is a file layout: epoch_N/ and final/ each hold a saved model.
    train_dir = base / "train"
    for name in ("epoch_1", "final"):
        shutil.copytree(tiny.model_dir, train_dir / name)
    (train_dir / "metrics.jsonl").write_text("")
    tasks = ",".join(EVAL_TASKS)
    kit_out = base / "kit"
    done = run_kit(
        "eval", "--model", str(train_dir), "--tasks", "common-sense", "--limit", str(LIMIT),
        "--batch-size", str(BATCH), "--device", "cpu", "--dtype", "float32",
        "--fixtures", str(eval_fixtures), "--output", str(kit_out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    cli_out = base / "cli"
    ref = subprocess.run(
        [
            str(BIN / "lm_eval"), "--model", "hf",
            "--model_args", f"pretrained={tiny.model_dir},dtype=float32",
            "--tasks", tasks, "--include_path", str(eval_fixtures), "--device", "cpu",
            "--batch_size", str(BATCH), "--limit", str(LIMIT), "--output_path", str(cli_out), "--log_samples",
        ],
        capture_output=True, text=True, timeout=600, env=kit_cli.env(kit_cli.OFFLINE),
    )  # fmt: skip
    assert ref.returncode == 0, ref.stderr[-3000:]
    (cli_results,) = cli_out.rglob("results_*.json")
    return Runs(eval_fixtures, train_dir, kit_out, cli_results, done.stdout)
