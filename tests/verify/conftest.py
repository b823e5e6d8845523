"""Hand-made training directories for the verify tests: a config, a trace and a manifest written as the
kit's loop writes them, the data's rows known only by count (no tokenizer needed), so that each rule's
pass, differs and cannot-tell can be produced on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gpt4allj_kit import __version__
from gpt4allj_kit.config import load_profile, load_train_config, train_config_yaml
from gpt4allj_kit.manifest import lock_sha256
from gpt4allj_kit.trace import expected
from gpt4allj_kit.trace.layout import Layout, steps_per_epoch

DATA_ROWS = 200
# The smoke profile's recipe (configs/profiles/smoke.yaml), the data a hub repo that is not fetched here.
SMOKE = load_profile("smoke")
BASE_CONFIG = {
    **SMOKE.train,
    "model_name": "kit-tests/tiny-model",
    "tokenizer_name": "kit-tests/tiny-model",
    "dataset_path": "kit-tests/not-fetched-data",
}


def launch_record(config: Any, processes: int, rows: expected.TrainRows, **extra: Any) -> dict[str, Any]:
    layout = Layout(processes, config.batch_size, config.gradient_accumulation_steps)
    return {
        "launch": True,
        "step": 0,
        "epoch": 0,
        "batches_done": 0,
        "resumed_from": None,
        "kit_version": __version__,
        "lock_sha256": lock_sha256(),
        "num_processes": processes,
        "batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "distributed_type": "DistributedType.MULTI_CPU",
        "mixed_precision": "no",
        "zero_stage": None,
        "optimizer": {
            "class": "torch.optim.adamw.AdamW",
            "betas": [0.9, 0.999],
            "eps": 1e-8,
            "weight_decay": 0.0,
        },
        "seed": config.seed,
        "shuffle": config.shuffle,
        "data_rows": rows.data_rows,
        "train_rows": len(rows.rows),
        "dropped_rows": "",
        "steps_per_epoch": steps_per_epoch(len(rows.rows), layout),
        "total_steps": steps_per_epoch(len(rows.rows), layout) * config.num_epochs,
        **extra,
    }


class HandMadeRun:
    """A training directory under construction: `steps` are the expected ones until a test changes them."""

    def __init__(self, root: Path, processes: int = 2, **overrides: Any) -> None:
        self.root = root
        self.config = load_train_config(None, {**BASE_CONFIG, "output_dir": str(root), **overrides})
        self.rows = expected.from_counts(DATA_ROWS, self.config.seed, (), "counts")
        self.layout = Layout(processes, self.config.batch_size, self.config.gradient_accumulation_steps)
        steps = expected.expected_steps(self.rows, self.layout, expected.Schedule.of(self.config))
        self.steps = [s.model_dump(mode="json", exclude_none=True) for s in steps]
        for step in self.steps:
            step.update(loss=1.0, grad_norm=1.0, tokens=step["n_rows"] * 128, nonpad_tokens=step["n_rows"])
        self.launches = [launch_record(self.config, processes, self.rows)]
        self.manifest: dict[str, Any] | None = None

    def finish(self, **manifest: Any) -> HandMadeRun:
        """A manifest, as the loop writes at the end."""
        self.manifest = {"stage": "train", "config": self.config.model_dump(mode="json"), **manifest}
        return self

    def write(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "train_config.yaml").write_text(train_config_yaml(self.config))
        lines = [*self.launches[:1], *self.steps]
        for later in self.launches[1:]:  # a resume: its record goes before the first step it redoes
            at = next(i for i, r in enumerate(lines) if not r.get("launch") and r["step"] > later["step"])
            lines.insert(at, later)
        (self.root / "trace.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        if self.manifest is not None:
            (self.root / "manifest.json").write_text(json.dumps(self.manifest))
        return self.root


@pytest.fixture()
def hand_made(tmp_path: Path) -> Callable[..., HandMadeRun]:
    count = iter(range(100))

    def make(processes: int = 2, **overrides: Any) -> HandMadeRun:
        return HandMadeRun(tmp_path / f"run{next(count)}", processes, **overrides)

    return make
