"""Real 2-process `accelerate launch` runs of train.py on the tiny GPT-J, shared between the train tests.

Settings are tiny (40 rows, max_length 64, batch 4 per process) so that each launch takes seconds of
training; most of the time is process start-up and, once per session, DeepSpeed's shm op build and the
inductor compile (both cached in the session's TORCH_EXTENSIONS_DIR / TORCHINDUCTOR_CACHE_DIR). On a CPU
the loop runs DeepSpeed's Adam as torch's AdamW (`optim.use_torch_adam_on_cpu`), so FusedAdam is not built.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpt4allj_kit import paths
from gpt4allj_kit.assets import TinyAssets, synthetic_rows, write_rows
from gpt4allj_kit.config import LaunchConfig, load_train_config, train_config_yaml
from gpt4allj_kit.train.launch import CONFIG_FILE, accelerate_command, executable_argv, launch_env
from gpt4allj_kit.train.loop import KILL_AFTER_STEP_ENV

ROWS = 40
LAUNCH_TIMEOUT_S = 900
# The reference runs' settings over the common ones below (the resume tests repeat them).
DDP_SETS = {"shuffle": True, "log_grads_every": 2}
# eval_every 2 with accumulation 2: upstream's cadence validates inside an accumulation window (batch 2).
DEEPSPEED_SETS = {"gradient_accumulation_steps": 2, "eval_every": 2, "save_every": 2, "log_grads_every": 2}


@dataclass(frozen=True)
class Run:
    output_dir: Path
    returncode: int
    log: str

    def metrics(self) -> list[dict]:
        lines = (self.output_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def train_metrics(self) -> list[dict]:
        return [m for m in self.metrics() if "train_loss" in m]

    def manifest(self) -> dict:
        return json.loads((self.output_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def tiny_train_split(tiny: TinyAssets, train_data: Path) -> Any:
    """(tokenizer, training split) at a max_length, of the tiny world's data as the training makes them."""
    return lambda max_length: _tiny_train_split(tiny, train_data, max_length)


def _tiny_train_split(tiny: TinyAssets, train_data: Path, max_length: int) -> tuple[Any, Any]:
    from gpt4allj_kit import data
    from transformers import AutoTokenizer

    config = load_train_config(
        None,
        {"model_name": str(tiny.model_dir), "tokenizer_name": str(tiny.tokenizer_dir),
         "dataset_path": str(train_data), "max_length": max_length, "batch_size": 4, "num_proc": 1,
         "output_dir": "unused"},
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(tiny.tokenizer_dir)
    raw, _ = data.load_raw_dataset(str(train_data), revision="unused")
    return tokenizer, data.split_and_tokenize(raw, tokenizer, config).train


@pytest.fixture(scope="session")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train-data")
    write_rows(synthetic_rows(seed=7, rows=ROWS), folder)
    return folder / "train.jsonl"


@pytest.fixture(scope="session")
def launch_train(tiny: TinyAssets, train_data: Path, tmp_path_factory):
    """A function running train.py through `accelerate launch` with 2 CPU processes (or `num_processes`);
    returns a Run.

    As `gpt4allj-kit train` does, the resolved config is written into the output dir and given to
    `train.py --config` (or to `script`, another loop taking the same `--config`).
    """
    tmp_root = tmp_path_factory.mktemp("train-tmp")

    def launch(
        output_dir: Path,
        *,
        deepspeed: bool,
        sets: dict[str, object] | None = None,
        precision: str = "no",
        dynamo: str = "no",
        resume: str | None = None,
        kill_after_step: int | None = None,
        script: Path | None = None,
        num_processes: int = 2,
    ) -> Run:
        launch_config = LaunchConfig(
            num_processes=num_processes,
            mixed_precision=precision,
            dynamo_backend=dynamo,
            use_deepspeed=deepspeed,
            deepspeed_config_file="configs/deepspeed/ds_config_gptj.json",  # the recipe's, unchanged
            cpu=True,
        )
        values = {
            "model_name": str(tiny.model_dir),
            "tokenizer_name": str(tiny.tokenizer_dir),
            "dataset_path": str(train_data),
            "max_length": 64,
            "batch_size": 4,
            "num_proc": 1,
            "lr": 1e-3,
            "warmup_steps": 2,
            "num_epochs": 2,
            "eval_every": 3,
            "save_every": 3,
            "gradient_checkpointing": False,
            "output_dir": str(output_dir),
            **(sets or {}),
        }
        config_file = output_dir / CONFIG_FILE
        output_dir.mkdir(parents=True, exist_ok=True)
        config_file.write_text(train_config_yaml(load_train_config(None, values)))
        train_args = ["--config", str(config_file)]
        if resume:
            train_args += ["--resume", resume]
        argv = accelerate_command(launch_config, train_args, num_processes=num_processes)
        if script is not None:  # another loop on the same config (the upstream reference)
            argv[argv.index("train.py")] = str(script)
        env = {**os.environ, **launch_env(launch_config), "TMPDIR": str(tmp_root), "OMP_NUM_THREADS": "1"}
        # Without the explicit variable, train.py must recover --dynamo_backend from the launcher (tested).
        env.pop("ACCELERATE_DYNAMO_BACKEND", None)
        if kill_after_step is not None:
            env[KILL_AFTER_STEP_ENV] = str(kill_after_step)
        result = subprocess.run(
            executable_argv(argv),
            cwd=paths.project_root(),
            env=env,
            capture_output=True,
            text=True,
            timeout=LAUNCH_TIMEOUT_S,
        )
        return Run(output_dir, result.returncode, result.stdout + result.stderr)

    return launch


@pytest.fixture(scope="session")
def reference_sets() -> dict[str, dict[str, object]]:
    """The settings each reference run adds (the resume tests repeat them)."""
    return {"ddp": DDP_SETS, "deepspeed": DEEPSPEED_SETS}


@pytest.fixture(scope="session")
def ddp_reference(launch_train, tmp_path_factory) -> Run:
    """Uninterrupted DDP run (shuffled with the seedable sampler): 5 steps per epoch, 10 in all."""
    run = launch_train(tmp_path_factory.mktemp("ddp-ref") / "out", deepspeed=False, sets=DDP_SETS)
    assert run.returncode == 0, run.log[-4000:]
    return run


@pytest.fixture(scope="session")
def deepspeed_reference(launch_train, tmp_path_factory) -> Run:
    """Uninterrupted DeepSpeed ZeRO-2 run with the documented bf16 + inductor flags and accumulation 2."""
    run = launch_train(
        tmp_path_factory.mktemp("ds-ref") / "out",
        deepspeed=True,
        precision="bf16",
        dynamo="inductor",
        sets=DEEPSPEED_SETS,
    )
    assert run.returncode == 0, run.log[-4000:]
    return run
