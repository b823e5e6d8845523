"""Resumable training states (`step_N/`) and saved weights (`epoch_N/`, `final/`), written atomically.

A `step_N/` holds accelerate's `save_state` (model, optimizer, scheduler, RNG of every process, sampler)
plus `trainer_state.json` (the data position), so `--resume` continues on the very next batch. Every
directory appears whole or not at all: the processes write into one temporary sibling that the main
process renames once all of them are done.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import atomic_dir, atomic_write_json

STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class TrainerState:
    """Where training stands: optimizer steps done, the epoch in progress, micro-batches of it consumed."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    tokens: int = 0
    nonpad_tokens: int = 0
    train_seconds: float = 0.0


def step_dirs(output_dir: Path) -> list[Path]:
    """Complete `step_N/` states in `output_dir`, oldest first."""
    if not output_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in output_dir.iterdir()
        if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()
    ]
    return [p for _, p in sorted(found)]


def resolve_resume(resume: str, output_dir: Path, *, given_as: str = "--resume") -> Path:
    """The state to resume from: `latest` (newest `step_N/` of the output dir) or a given `step_N/`.

    `given_as` names where `resume` came from (`--resume` or the config's `checkpoint`) in the error.
    """
    if resume == "latest":
        states = step_dirs(output_dir)
        if not states:
            raise ConfigError(f"{given_as} latest: no saved state (step_N/) in {output_dir}")
        return states[-1]
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise ConfigError(f"{given_as} {resume}: not a saved training state (no {STATE_FILE})")
    return path


def read_state(path: Path) -> TrainerState:
    data = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    return TrainerState(**{k: v for k, v in data.items() if k in TrainerState.__dataclass_fields__})


def save_state(accelerator: Any, target: Path, state: TrainerState) -> Path:
    """accelerate's full state of every process plus `state`, as `target` (all or nothing).

    `files.atomic_dir` runs on the main process only (its temporary name is random); the other processes
    learn that name by broadcast and write their shards (DeepSpeed optimizer partitions, RNG) into it.
    """
    from accelerate.utils import broadcast_object_list

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_dir(target)) if accelerator.is_main_process else None
        shared = broadcast_object_list([str(tmp) if tmp else None], from_process=0)[0]
        accelerator.save_state(shared)
        if accelerator.is_main_process:
            atomic_write_json(Path(shared) / STATE_FILE, asdict(state))
        accelerator.wait_for_everyone()
    accelerator.wait_for_everyone()
    return target


def save_weights(accelerator: Any, model: Any, tokenizer: Any, target: Path) -> str:
    """`save_pretrained` (safetensors) of the unwrapped model plus the tokenizer; returns the saved dtype.

    Under DeepSpeed bf16 the weights are bf16 (that is what the engine holds), so the dtype is reported for
    the manifest rather than assumed. A LoRA model saves its adapter.
    """
    state_dict = accelerator.get_state_dict(model)
    dtype = str(next(iter(state_dict.values())).dtype).removeprefix("torch.") if state_dict else "unknown"
    if accelerator.is_main_process:
        with atomic_dir(target) as tmp:
            accelerator.unwrap_model(model).save_pretrained(
                tmp, state_dict=state_dict, safe_serialization=True, is_main_process=True
            )
            tokenizer.save_pretrained(tmp)
    accelerator.wait_for_everyone()
    return dtype
