"""The state of one reproduction run directory: which stage ran, when, with what result.

`RUN_DIR/run.json` is rewritten atomically after every stage transition, so `gpt4allj-kit status RUN_DIR`
shows the truth even while a run is in progress or after it was killed. Its command line and error details
are redacted like every record the kit writes (`redaction`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from gpt4allj_kit import paths
from gpt4allj_kit.config import validate
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import atomic_write_json, read_json_object
from gpt4allj_kit.manifest import now_iso
from gpt4allj_kit.redaction import redact_data
from gpt4allj_kit.train.supervisor import pid_alive

STAGES = ("doctor", "fetch", "train", "eval", "compare", "report")
StageStatus = Literal["pending", "running", "done", "skipped", "failed", "interrupted"]


class StageRecord(BaseModel):
    name: str
    status: StageStatus = "pending"
    started: str | None = None
    ended: str | None = None
    seconds: float | None = None
    key: str | None = Field(None, description="the stage's headline number, for the summary table")
    path: str | None = None
    detail: str | None = None
    pid: int | None = None


class RunState(BaseModel):
    revision: str
    profile: str
    command: str
    created: str
    updated: str
    stages: dict[str, StageRecord]

    @field_validator("stages")
    @classmethod
    def _every_stage(cls, stages: dict[str, StageRecord]) -> dict[str, StageRecord]:
        missing = [name for name in STAGES if name not in stages]
        if missing:
            raise ValueError(f"missing stage(s) {', '.join(missing)} (the kit records every stage)")
        return stages

    @classmethod
    def new(cls, revision: str, profile: str, command: str) -> RunState:
        stamp = now_iso()
        return cls(
            revision=revision,
            profile=profile,
            command=command,
            created=stamp,
            updated=stamp,
            stages={name: StageRecord(name=name) for name in STAGES},
        )

    def stage(self, name: str) -> StageRecord:
        return self.stages[name]


def state_path(run_dir: Path) -> Path:
    return run_dir / paths.RUN_STATE


def load_state(run_dir: Path) -> RunState:
    """The run's state; a missing, unreadable or damaged run.json is a one-line ConfigError naming the
    file (and the key at fault)."""
    file = state_path(run_dir)
    if not run_dir.is_dir():
        what = "no such directory" if not run_dir.exists() else "a file, not a directory"
        raise ConfigError(f"{run_dir}: not a reproduction run directory ({what})")
    if not file.exists():
        raise ConfigError(f"{run_dir}: not a reproduction run directory (no {paths.RUN_STATE})")
    data = read_json_object(file, kind="run state file")
    return _mark_dead_runs(validate(RunState, data, str(file)))


def _mark_dead_runs(state: RunState) -> RunState:
    """A stage still 'running' whose process is gone was interrupted (killed, machine rebooted)."""
    for record in state.stages.values():
        if record.status == "running" and (record.pid is None or not pid_alive(record.pid)):
            record.status = "interrupted"
    return state


def save_state(run_dir: Path, state: RunState) -> None:
    state.updated = now_iso()
    atomic_write_json(state_path(run_dir), redact_data(state))
