"""The expected data trace of a config: which rows (and what content) each optimizer step will read,
computed without training and without a GPU, and its comparison with a run's trace.

The training rows come from the same place as the training's: the data's row count and the seed give the
split (`data.split_rows`, datasets' own permutation), the rows with nothing to learn are dropped, and
`layout` turns the order of each epoch into per-step rows. Where the data and tokenizer are at hand,
`from_dataset` runs the training's own `data.split_and_tokenize` (cached by datasets, so a training
that ran, or the next one, shares the work) and hashes every training row's tokens, so the expected
trace carries each step's content hash too; otherwise `from_counts` needs only the row count (and the
dropped rows, when known) and the comparison is by row numbers only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gpt4allj_kit import data
from gpt4allj_kit.config import load_profile
from gpt4allj_kit.errors import EnvironmentNotReady
from gpt4allj_kit.trace.layout import (
    Layout,
    LayoutComparison,
    compare_layouts,
    epoch_order,
    epoch_stream,
    step_slices,
    steps_per_epoch,
)
from gpt4allj_kit.trace.records import StepRecord, batch_hash, encode_rows, record_line, stored_row_digest

if TYPE_CHECKING:
    from gpt4allj_kit.config import TrainConfig

_HASH_CHUNK = 4096


@dataclass
class TrainRows:
    """The training split as the loop reads it: each position's row of the loaded data, and (when the
    data was at hand) each position's content digest."""

    data_rows: int
    rows: np.ndarray  # loaded-data row behind each training position, in the split's order
    digests: list[bytes] | None = None
    dropped: tuple[int, ...] | None = ()  # None: not known (not tokenized)
    source: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def content(self) -> bool:
        return self.digests is not None


def from_counts(data_rows: int, seed: int, dropped: tuple[int, ...] | None, source: str) -> TrainRows:
    """The training rows from the row count alone: `dropped` rows (with nothing to learn) left out when
    known; None says they are not known (assumed none)."""
    clock = time.perf_counter()
    train, _ = data.split_rows(data_rows, seed)
    if dropped:
        train = train[~np.isin(train, np.asarray(dropped, dtype=np.int64))]
    return TrainRows(data_rows, train, None, dropped, source, {"split": time.perf_counter() - clock})


def _at_hand(config: TrainConfig) -> tuple[Path | None, Path | None]:
    """(data folder or file, tokenizer folder), each None when neither local nor fetched."""
    from gpt4allj_kit.errors import ConfigError
    from gpt4allj_kit.train import sources

    found = []
    for name, revision, kind, key in (
        (config.dataset_path, config.revision, "dataset", "dataset_path"),
        (config.tokenizer_name, config.model_revision, "model", "tokenizer_name"),
    ):
        try:
            source = sources.cached_source(name, revision, kind, key=key, config=config)
        except ConfigError:  # a local path that is gone, a lock that cannot be read: not at hand
            source = None
        found.append(source[0] if source is not None else None)
    return found[0], found[1]


def data_at_hand(config: TrainConfig) -> tuple[Path, Path] | None:
    """(data folder or file, tokenizer folder) when both are local or fetched; None otherwise."""
    folder, tokenizer = _at_hand(config)
    return (folder, tokenizer) if folder is not None and tokenizer is not None else None


def from_dataset(config: TrainConfig) -> TrainRows:
    """The training rows and their content digests through the training's own code path (load, check,
    tokenize, split, drop); EnvironmentNotReady when the data or the tokenizer is not at hand."""
    from gpt4allj_kit.train import sources

    folder, tokenizer_dir = _at_hand(config)
    missing = [
        what
        for what, found in (
            (f"the data ({config.dataset_path}@{config.revision})", folder),
            (f"the tokenizer ({config.tokenizer_name}@{config.model_revision})", tokenizer_dir),
        )
        if found is None
    ]
    if folder is None or tokenizer_dir is None:
        raise EnvironmentNotReady(
            f"{' and '.join(missing)} not fetched: run `gpt4allj-kit fetch --revision {config.revision}` "
            "first, or give the data's row count (`gpt4allj-kit trace --rows N`) for row numbers only"
        )
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    raw, _ = data.load_raw_dataset(str(folder), revision=config.revision)
    tokenizer = sources.load_tokenizer(tokenizer_dir, config)
    timings["load and check rows"] = time.perf_counter() - clock
    clock = time.perf_counter()
    splits = data.split_and_tokenize(raw, tokenizer, config)
    timings["tokenize and split (cached by datasets)"] = time.perf_counter() - clock
    clock = time.perf_counter()
    digests = split_digests(splits.train)
    timings["hash training rows"] = time.perf_counter() - clock
    return TrainRows(
        len(raw),
        splits.train_rows,
        digests,
        splits.dropped.rows,
        "tokenized (the training's own code)",
        timings,
    )


def split_digests(split: Any) -> list[bytes]:
    """Each row's content digest, in the split's order (from the stored rows, as the loader takes it)."""
    table = split.with_format("arrow", columns=list(data.ROW_COLUMNS))
    digests: list[bytes] = []
    for start in range(0, len(table), _HASH_CHUNK):
        chunk = table[start : start + _HASH_CHUNK]
        ids = chunk.column("input_ids").combine_chunks()
        values, offsets = ids.values.to_numpy(), ids.offsets.to_numpy()
        masked = chunk.column(data.MASKED).to_numpy()
        digests += [
            stored_row_digest(values[offsets[i] : offsets[i + 1]], int(masked[i])) for i in range(len(masked))
        ]
    return digests


@dataclass(frozen=True)
class Schedule:
    """What shapes the steps besides the layout: the sampler's order, epochs, a step cap, the LR."""

    shuffle: bool
    seed: int
    epochs: int
    max_steps: int | None = None
    lr: float | None = None
    min_lr: float = 0.0
    warmup_steps: int = 0

    @classmethod
    def of(cls, config: TrainConfig) -> Schedule:
        return cls(
            config.shuffle, config.seed, config.num_epochs, config.max_steps, config.lr, config.min_lr,
            config.warmup_steps,
        )  # fmt: skip

    def total_steps(self, rows: int, layout: Layout) -> int:
        total = steps_per_epoch(rows, layout) * self.epochs
        return min(total, self.max_steps) if self.max_steps is not None else total

    def lr_of(self, step: int) -> float | None:
        from gpt4allj_kit.train.optim import warmup_constant_lr

        if self.lr is None:
            return None
        return warmup_constant_lr(step - 1, lr=self.lr, min_lr=self.min_lr, warmup_steps=self.warmup_steps)


def expected_steps(train: TrainRows, layout: Layout, schedule: Schedule) -> Iterator[StepRecord]:
    """One record per optimizer step, as the training's trace will hold it (data and lr; no loss)."""
    n = len(train.rows)
    per_epoch = steps_per_epoch(n, layout)
    total = schedule.total_steps(n, layout)
    for epoch in range(schedule.epochs):
        if epoch * per_epoch >= total:
            return
        stream = epoch_stream(
            epoch_order(n, shuffle=schedule.shuffle, seed=schedule.seed, epoch=epoch), layout
        )
        for piece in step_slices(n, layout):
            step = epoch * per_epoch + piece.index + 1
            if step > total:
                return
            positions = stream[piece.start : piece.stop]
            digests = train.digests
            yield StepRecord(
                step=step,
                epoch=epoch,
                window=(piece.first_batch, piece.last_batch),
                rows=encode_rows(train.rows[positions].tolist()),
                n_rows=len(positions),
                batch_sha256=batch_hash(digests[i] for i in positions.tolist()) if digests else None,
                lr=schedule.lr_of(step),
            )


# --- comparing two traces -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepMismatch:
    step: int
    what: str


@dataclass(frozen=True)
class TraceComparison:
    """A run's steps against the expected (or another run's) steps."""

    compared: int
    content_compared: int
    mismatches: tuple[StepMismatch, ...]
    extra: tuple[int, ...]  # steps the run has that are not expected
    pending: int  # expected steps the run has not reached (yet, or ever: see `complete`)
    complete: bool  # the run is finished: pending steps are missing, not to come

    @property
    def same(self) -> bool:
        return not self.mismatches and not self.extra and (self.pending == 0 or not self.complete)


def compare_steps(
    found: list[StepRecord],
    expected: list[StepRecord],
    *,
    complete: bool,
    content: bool = True,
    windows: bool = True,
) -> TraceComparison:
    """Step by step: the epoch, the batch window (`windows`: not between two layouts, whose windows differ
    by construction), the rows and (`content`, when both have it) the hash."""
    wanted = {s.step: s for s in expected}
    mismatches, extra, compared, hashed = [], [], 0, 0
    for step in found:
        other = wanted.get(step.step)
        if other is None:
            extra.append(step.step)
            continue
        compared += 1
        what = []
        if step.epoch != other.epoch:
            what.append(f"epoch {step.epoch}, expected {other.epoch}")
        if windows and tuple(step.window) != tuple(other.window):
            what.append(f"batches {list(step.window)}, expected {list(other.window)}")
        if step.rows != other.rows:
            what.append(_rows_difference(step, other))
        elif content and step.batch_sha256 and other.batch_sha256:
            hashed += 1
            if step.batch_sha256 != other.batch_sha256:
                what.append("the same rows with other content (batch hash differs)")
        if what:
            mismatches.append(StepMismatch(step.step, "; ".join(what)))
    seen = {s.step for s in found}
    pending = sum(1 for s in expected if s.step not in seen)
    return TraceComparison(compared, hashed, tuple(mismatches), tuple(extra), pending, complete)


def _rows_difference(step: StepRecord, other: StepRecord) -> str:
    from collections import Counter

    ours, theirs = Counter(step.row_list()), Counter(other.row_list())
    missing, added = sum((theirs - ours).values()), sum((ours - theirs).values())
    return f"other rows ({added} not expected, {missing} expected rows missing)"


# --- `gpt4allj-kit trace` -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceRequest:
    """What `gpt4allj-kit trace` was asked: a config as `train` resolves it, and a layout."""

    config: Path | None = None
    revision: str | None = None
    profile: str = "full"
    num_processes: int | None = None  # default: the profile's
    accumulation: int | None = None  # default: the config's
    sets: tuple[str, ...] = ()
    rows: int | None = None  # the data's row count, for row numbers only (the data is not needed)


@dataclass(frozen=True)
class ExpectedTrace:
    config: TrainConfig
    layout: Layout
    reference: Layout | None  # the recipe's layout (the profile's)
    comparison: LayoutComparison | None  # `layout` against `reference`, when they differ
    train: TrainRows
    steps: list[StepRecord]
    seconds: dict[str, float]

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(len(self.train.rows), self.layout)

    def header(self) -> dict[str, Any]:
        """The trace file's first line, in the shape of a training's launch record."""
        return {
            "launch": True,
            "expected": True,
            "step": 0,
            "num_processes": self.layout.num_processes,
            "batch_size": self.layout.batch_size,
            "gradient_accumulation_steps": self.layout.accumulation,
            "seed": self.config.seed,
            "shuffle": self.config.shuffle,
            "data_rows": self.train.data_rows,
            "train_rows": len(self.train.rows),
            "dropped_rows": encode_rows(self.train.dropped) if self.train.dropped is not None else None,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": len(self.steps),
            "content": self.train.content,
            "source": self.train.source,
            "data_layout": self.comparison.as_json() if self.comparison else None,
        }

    def text(self) -> str:
        lines = [record_line(self.header())]
        lines += [record_line(s.model_dump(mode="json", exclude_none=True)) for s in self.steps]
        return "".join(lines)


def expected_trace(request: TraceRequest) -> ExpectedTrace:
    """The expected trace of a config: resolved as `train` resolves it (profile, config, --set, revision),
    the data's rows through the training's own code when the data is at hand (else `request.rows`), and
    the steps of `request`'s layout."""
    from gpt4allj_kit.train import launch

    clock = time.perf_counter()
    profile = load_profile(request.profile)
    reference = launch.recipe_layout(profile)
    sets = [*request.sets, "checkpoint=null"]  # an expected trace starts at step 1: it never resumes
    if request.accumulation is not None:
        sets.append(f"gradient_accumulation_steps={request.accumulation}")
    processes = request.num_processes or (reference.num_processes if reference else 1)
    plan = launch.plan(
        launch.TrainRequest(
            revision=request.revision,
            config=request.config,
            profile=request.profile,
            num_processes=processes,
            sets=sets,
        )
    )
    config = plan.config
    seconds = {"resolve the config": time.perf_counter() - clock}
    if request.rows is not None:
        train = from_counts(
            request.rows, config.seed, None, "--rows: row numbers only (rows with nothing to learn not known)"
        )
    else:
        train = from_dataset(config)
    seconds.update(train.timings)
    layout = Layout(processes, config.batch_size, config.gradient_accumulation_steps)
    clock = time.perf_counter()
    steps = list(expected_steps(train, layout, Schedule.of(config)))
    seconds["order, shard and step"] = time.perf_counter() - clock
    comparison = None
    if reference is not None and reference != layout:
        clock = time.perf_counter()
        comparison = compare_layouts(
            len(train.rows), reference, layout, epochs=config.num_epochs, max_steps=config.max_steps
        )
        seconds["compare with the recipe's layout"] = time.perf_counter() - clock
    return ExpectedTrace(config, layout, reference, comparison, train, steps, seconds)
