"""Which rows each optimizer step reads: accelerate 1.15's data loading, replicated as index arithmetic.

What `accelerator.prepare` makes of the training loader (`make_accelerator`: seedable sampler, even
batches, no split batches, `drop_last` false), read from accelerate's `data_loader.py`:

- **order per epoch**: unshuffled (the recipe), the training split's own order; shuffled, a
  `SeedableRandomSampler` whose generator is seeded with `seed + epoch` (its initial seed is
  `torch.random.initial_seed()` at `prepare`, which `set_seed(seed)` made the config's seed) and draws
  `torch.randperm(rows)`. The order is the same whatever the number of processes.
- **batches**: a `BatchSampler` of `batch_size` over that order. With one process that is all: the last
  batch may be short. With P > 1, `BatchSamplerShard` gives global batch j to process j % P as its batch
  j // P, and (`even_batches`) completes the stream with the rows of the first P batches, cyclically, until
  every process has the same number of full batches, ceil(batches / P): so the epoch's last batches repeat
  a few rows from its start.
- **optimizer steps** (`accelerator.accumulate`): every K batches of each process, and at the epoch's last
  batch (accelerate syncs at the end of the loader and restarts its count), so an epoch's last step may
  hold fewer than K batches.

The rows of one step are then one contiguous slice of the epoch's stream: process p's batches a..b-1 are
global batches a*P+p, so all processes' together are global batches a*P .. b*P-1. Positions here index
the epoch's order; `expected.py` turns them into rows of the loaded data.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Layout:
    """How a global batch is made: processes x per-process batch x gradient accumulation."""

    num_processes: int
    batch_size: int
    accumulation: int

    @property
    def global_batch(self) -> int:
        return self.num_processes * self.batch_size * self.accumulation

    def describe(self) -> str:
        return (
            f"{self.num_processes} process{'es' if self.num_processes > 1 else ''} x batch {self.batch_size} "
            f"x accumulation {self.accumulation}"
        )


def batches_per_process(rows: int, layout: Layout) -> int:
    """Batches each process reads per epoch: the prepared loader's length."""
    batches = math.ceil(rows / layout.batch_size)
    return batches if layout.num_processes == 1 else math.ceil(batches / layout.num_processes)


def steps_per_epoch(rows: int, layout: Layout) -> int:
    return math.ceil(batches_per_process(rows, layout) / layout.accumulation)


def epoch_order(rows: int, *, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """The positions of the training split in the order the sampler yields them in `epoch` (0-based)."""
    if not shuffle:
        return np.arange(rows, dtype=np.int64)
    import torch

    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    return torch.randperm(rows, generator=generator).numpy().astype(np.int64)


def epoch_stream(order: np.ndarray, layout: Layout) -> np.ndarray:
    """`order` as the processes consume it: global batch j is stream[j*B:(j+1)*B], read by process j % P;
    with P > 1 completed cyclically from the first P batches' rows (accelerate's even_batches)."""
    if layout.num_processes == 1:
        return order
    rows = len(order)
    total = layout.num_processes * batches_per_process(rows, layout) * layout.batch_size
    first = order[: min(rows, layout.num_processes * layout.batch_size)]
    return np.concatenate([order, np.resize(first, total - rows)])


@dataclass(frozen=True)
class StepSlice:
    """One optimizer step of an epoch: its stream slice and the batch indices (in each process) it spans."""

    index: int  # 0-based within the epoch
    start: int
    stop: int
    first_batch: int
    last_batch: int


def step_slices(rows: int, layout: Layout) -> Iterator[StepSlice]:
    """The optimizer steps of one epoch of `rows` training rows, in order."""
    per_process = batches_per_process(rows, layout)
    per_batch = layout.num_processes * layout.batch_size
    length = rows if layout.num_processes == 1 else per_process * per_batch
    for index in range(math.ceil(per_process / layout.accumulation)):
        first = index * layout.accumulation
        end = min(first + layout.accumulation, per_process)
        yield StepSlice(index, first * per_batch, min(end * per_batch, length), first, end - 1)


def wrapped_rows(rows: int, layout: Layout) -> int:
    """How many rows per epoch even_batches repeats from the epoch's start."""
    if layout.num_processes == 1:
        return 0
    return layout.num_processes * batches_per_process(rows, layout) * layout.batch_size - rows


# --- two layouts side by side -------------------------------------------------------------------------


@dataclass(frozen=True)
class StepDifference:
    step: int  # 1-based over epochs
    epoch: int
    only_reference: int  # rows (with repeats) the reference layout's step reads and this one's does not
    only_planned: int


@dataclass(frozen=True)
class LayoutComparison:
    """Where a planned layout's steps read other rows than a reference layout's (the recipe's), on the
    same data, seed and order: by position in each epoch's order, so without reading the data."""

    reference: Layout
    planned: Layout
    rows: int
    steps_reference: int
    steps_planned: int
    differing: tuple[StepDifference, ...]

    @property
    def same(self) -> bool:
        return not self.differing and self.steps_reference == self.steps_planned

    def summary(self) -> str:
        ref, plan = self.reference.describe(), self.planned.describe()
        if self.same:
            return f"{plan} reads the same rows as {ref} at every one of its {self.steps_planned} steps"
        total = max(self.steps_reference, self.steps_planned)
        parts = []
        if self.differing:
            steps = compact_steps([d.step for d in self.differing])
            parts.append(f"{len(self.differing)} of {total} steps read other rows (steps {steps})")
        if self.steps_reference != self.steps_planned:
            parts.append(f"{self.steps_planned} steps instead of {self.steps_reference}")
        why = []
        for layout in (self.reference, self.planned):
            if wrapped := wrapped_rows(self.rows, layout):
                why.append(f"{layout.describe()} repeats {wrapped} rows at each epoch's end (even_batches)")
            elif math.ceil(self.rows / layout.batch_size) * layout.batch_size != self.rows:
                why.append(f"{layout.describe()} ends each epoch with a short batch")
        reason = f" ({'; '.join(why)})" if why else ""
        return f"{plan} against {ref}: {', '.join(parts)}{reason}"

    def as_json(self) -> dict[str, object]:
        return {
            "reference": layout_json(self.reference),
            "planned": layout_json(self.planned),
            "train_rows": self.rows,
            "steps_reference": self.steps_reference,
            "steps_planned": self.steps_planned,
            "same": self.same,
            "differing_steps": compact_steps([d.step for d in self.differing]),
            "summary": self.summary(),
        }


def layout_json(layout: Layout) -> dict[str, int]:
    return {
        "num_processes": layout.num_processes,
        "batch_size": layout.batch_size,
        "gradient_accumulation_steps": layout.accumulation,
    }


def _epoch_steps(rows: int, layout: Layout) -> list[np.ndarray]:
    stream = epoch_stream(np.arange(rows, dtype=np.int64), layout)
    return [np.sort(stream[s.start : s.stop]) for s in step_slices(rows, layout)]


def _multiset_difference(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(in a and not in b, in b and not in a), counting repeats."""
    left, right = Counter(a.tolist()), Counter(b.tolist())
    return sum((left - right).values()), sum((right - left).values())


def compare_layouts(
    rows: int, reference: Layout, planned: Layout, *, epochs: int, max_steps: int | None = None
) -> LayoutComparison:
    """Step by step (over every epoch, up to `max_steps`), where `planned` reads other rows than
    `reference`. Every epoch has the same structure (only the order changes, the same for both), so one
    epoch is computed and repeated."""
    ref_epoch, plan_epoch = _epoch_steps(rows, reference), _epoch_steps(rows, planned)
    total_ref, total_plan = len(ref_epoch) * epochs, len(plan_epoch) * epochs
    if max_steps is not None:
        total_ref, total_plan = min(total_ref, max_steps), min(total_plan, max_steps)
    differing = []
    for step in range(max(total_ref, total_plan)):
        ref = ref_epoch[step % len(ref_epoch)] if step < total_ref else np.zeros(0, dtype=np.int64)
        plan = plan_epoch[step % len(plan_epoch)] if step < total_plan else np.zeros(0, dtype=np.int64)
        ref_epoch_no = step // len(ref_epoch)
        plan_epoch_no = step // len(plan_epoch)
        if ref_epoch_no == plan_epoch_no and np.array_equal(ref, plan):
            continue
        if ref_epoch_no != plan_epoch_no:  # the same positions of different epochs' orders: other rows
            only_ref, only_plan = len(ref), len(plan)
        else:
            only_ref, only_plan = _multiset_difference(ref, plan)
        differing.append(
            StepDifference(
                step + 1, plan_epoch_no if step < total_plan else ref_epoch_no, only_ref, only_plan
            )
        )
    return LayoutComparison(reference, planned, rows, total_ref, total_plan, tuple(differing))


def compact_steps(steps: list[int]) -> str:
    """1-based step numbers as ranges: '3, 7-9'."""
    parts = []
    for start, stop in _runs(sorted(steps)):
        parts.append(str(start) if start == stop else f"{start}-{stop}")
    return ", ".join(parts)


def _runs(values: list[int]) -> Iterator[tuple[int, int]]:
    if not values:
        return
    start = prev = values[0]
    for value in values[1:]:
        if value != prev + 1:
            yield start, prev
            start = value
        prev = value
    yield start, prev


# --- recorded with a launch -----------------------------------------------------------------------------

# Written beside the resolved config by `gpt4allj-kit train` when its layout is not the recipe's: the
# recipe's layout, which the training compares itself with on its exact row count (its manifest and trace).
LAYOUT_FILE = "data_layout.json"


def layout_of(data: object) -> Layout | None:
    """A layout from its JSON form (`layout_json`); None when it is not one."""
    if not isinstance(data, dict):
        return None
    try:
        return Layout(
            int(data["num_processes"]), int(data["batch_size"]), int(data["gradient_accumulation_steps"])
        )
    except (KeyError, TypeError, ValueError):
        return None


def recorded_comparison(
    output_dir: Path, rows: int, planned: Layout, *, epochs: int, max_steps: int | None
) -> dict[str, object] | None:
    """`planned` against the reference layout the launch recorded in `output_dir` (None: none recorded)."""
    file = output_dir / LAYOUT_FILE
    try:
        reference = layout_of(json.loads(file.read_text(encoding="utf-8")).get("reference"))
    except (OSError, ValueError, AttributeError):
        return None
    if reference is None:
        return None
    return compare_layouts(rows, reference, planned, epochs=epochs, max_steps=max_steps).as_json()
