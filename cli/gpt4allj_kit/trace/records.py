"""`trace.jsonl`: what every training writes about the data each optimizer step read, and how it is read.

One JSON line per optimizer step (`StepRecord`): the step, its epoch and batch window, the rows of the
loaded data it read (every process, every accumulation micro-batch; sorted, as ranges), a hash of their
content, the learning rate it used, its loss, gradient norm and token counts. Each launch of the training
(a start, a resume) first writes one `LaunchRecord`: the layout, the data's row counts and the run's
settings, so that a trace read on its own says how it was made. The main process appends each line and
fsyncs it; a line torn by a kill is the last one and readers skip it; a resume cuts the file back to the
resumed state, as it does `metrics.jsonl`.

Content hash: each row's digest is BLAKE2b-128 of its real (non-padding) positions' token ids then labels,
as int32 little-endian (the same in every padding mode: it is taken from the stored, unpadded row); a
step's `batch_sha256` is the SHA-256 of its rows' digests, sorted, concatenated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gpt4allj_kit.config import validate
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import read_text

DIGEST_BYTES = 16


# --- rows, compactly ----------------------------------------------------------------------------------


def encode_rows(rows: Iterable[int]) -> str:
    """Row numbers (repeats kept) sorted, consecutive runs as `a-b`: '3-5,5-6,12'."""
    values = sorted(int(r) for r in rows)
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)


def decode_rows(text: str) -> list[int]:
    """`encode_rows`'s rows back, sorted; ValueError on anything else."""
    rows: list[int] = []
    for part in filter(None, text.split(",")):
        first, sep, last = part.partition("-")
        start, stop = int(first), int(last) if sep else int(first)
        if stop < start or start < 0:
            raise ValueError(f"bad range {part!r}")
        rows.extend(range(start, stop + 1))
    return rows


# --- content ------------------------------------------------------------------------------------------


def row_digest(ids: np.ndarray, labels: np.ndarray) -> bytes:
    """One row's digest from its real positions' ids and labels (1-D, any integer type)."""
    h = hashlib.blake2b(np.asarray(ids).astype("<i4", copy=False).tobytes(), digest_size=DIGEST_BYTES)
    h.update(np.asarray(labels).astype("<i4", copy=False).tobytes())
    return h.digest()


def row_digests(input_ids: np.ndarray, labels: np.ndarray, attention_mask: np.ndarray) -> list[bytes]:
    """Each padded row's digest (rows of 2-D arrays; real tokens are the attention mask's leading ones)."""
    lengths = np.asarray(attention_mask).sum(axis=1)
    ids, marks = np.asarray(input_ids), np.asarray(labels)
    return [row_digest(ids[i, :n], marks[i, :n]) for i, n in enumerate(lengths.tolist())]


def stored_row_digest(ids: np.ndarray, masked: int) -> bytes:
    """The digest of a row as the tokenized dataset stores it: real ids, the first `masked` labels -100."""
    labels = np.array(ids, dtype="<i4")
    labels[:masked] = -100
    return row_digest(ids, labels)


def batch_hash(digests: Iterable[bytes]) -> str:
    return hashlib.sha256(b"".join(sorted(digests))).hexdigest()


# --- records ------------------------------------------------------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=True)


class StepRecord(_Record):
    step: int = Field(ge=1)
    epoch: int = Field(ge=0)  # 0-based: the epoch this step belongs to
    window: tuple[int, int]  # first and last batch index (0-based, in each process) of the step
    rows: str  # `encode_rows` of the rows read
    n_rows: int = Field(ge=0)
    batch_sha256: str | None = None
    lr: float | None = None
    loss: float | None = None
    grad_norm: float | None = None
    tokens: int | None = None
    nonpad_tokens: int | None = None

    def row_list(self) -> list[int]:
        return decode_rows(self.rows)


class LaunchRecord(_Record):
    """A start or resume of the training: `step` optimizer steps were done before it."""

    launch: bool = True
    step: int = Field(0, ge=0)
    epoch: int = 0
    batches_done: int = 0
    resumed_from: str | None = None
    num_processes: int | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    seed: int | None = None
    shuffle: bool | None = None
    data_rows: int | None = None
    train_rows: int | None = None
    dropped_rows: str | None = None  # `encode_rows` of the loaded rows dropped (nothing to learn)
    batches_per_epoch: int | None = None
    steps_per_epoch: int | None = None
    total_steps: int | None = None


@dataclass
class Trace:
    """A trace file read back: its launches and steps in file order; `torn`: a last line cut by a kill."""

    path: Path | None = None
    launches: list[LaunchRecord] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    torn: bool = False

    def step_map(self) -> dict[int, StepRecord]:
        return {s.step: s for s in self.steps}


def record_line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    lines = read_text(path, str(path), "trace file").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError:
            if number == len(lines):
                yield number, None  # torn by a kill: only ever the last line
                return
            raise ConfigError(f"{path}: line {number}: not JSON (a trace line is one JSON object)") from None


def read_trace(path: Path) -> Trace:
    """The trace at `path`; a damaged line (not the last) or a record of the wrong shape is a one-line
    ConfigError naming the file and the line."""
    trace = Trace(path=path)
    for number, data in _records(path):
        if data is None:
            trace.torn = True
            continue
        where = f"{path}: line {number}"
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        if data.get("launch"):
            trace.launches.append(validate(LaunchRecord, data, where))
        else:
            trace.steps.append(validate(StepRecord, data, where))
    return trace
