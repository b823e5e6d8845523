"""The sampler, shard and accumulation arithmetic against accelerate's own objects, built in this process:
`prepare_data_loader` with an explicit process count and index gives each process's real loader (the
seedable sampler, BatchSamplerShard with even_batches), and a real Accelerator's `accumulate` says where
each optimizer step ends."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from gpt4allj_kit.trace import layout
from gpt4allj_kit.trace.layout import Layout
from torch.utils.data import DataLoader


class Positions:
    """A dataset whose items are their own positions."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def real_batches(rows: int, batch: int, processes: int, *, shuffle: bool, seed: int, epochs: int) -> dict:
    """{(process, epoch): [batch positions]} from accelerate's prepared loaders, seeded as the loop seeds."""
    found = {}
    for process in range(processes):
        set_seed(seed)  # the loop's set_seed(config.seed) before prepare: the sampler's initial seed
        loader = prepare_data_loader(
            DataLoader(Positions(rows), batch_size=batch, shuffle=shuffle),
            num_processes=processes,
            process_index=process,
            use_seedable_sampler=True,
            put_on_device=False,
        )
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            found[(process, epoch)] = [b.tolist() for b in loader]
    return found


CASES = list(itertools.product([1, 3, 7, 8, 9, 16, 17, 38, 63], [1, 4, 5], [1, 2, 3, 4], [False, True]))


@pytest.mark.parametrize(("rows", "batch", "processes", "shuffle"), CASES)
def test_every_process_reads_the_batches_the_arithmetic_gives(rows, batch, processes, shuffle) -> None:
    """Order (seedable sampler, seed + epoch), sharding (global batch j to process j % P) and even_batches'
    cyclic wrap-around, including datasets smaller than one global batch."""
    real = real_batches(rows, batch, processes, shuffle=shuffle, seed=42, epochs=2)
    plan = Layout(processes, batch, 1)
    per_process = layout.batches_per_process(rows, plan)
    for epoch in range(2):
        stream = layout.epoch_stream(layout.epoch_order(rows, shuffle=shuffle, seed=42, epoch=epoch), plan)
        for process in range(processes):
            ours = [
                stream[(i * processes + process) * batch : (i * processes + process + 1) * batch].tolist()
                for i in range(per_process)
            ]
            assert ours == real[(process, epoch)], (process, epoch)


def test_shuffled_epochs_differ_and_unshuffled_keep_the_split_order() -> None:
    one, two = (layout.epoch_order(40, shuffle=True, seed=42, epoch=e) for e in (0, 1))
    assert sorted(one.tolist()) == list(range(40)) and not np.array_equal(one, two)
    assert layout.epoch_order(40, shuffle=False, seed=42, epoch=1).tolist() == list(range(40))


@pytest.fixture()
def accelerator_for():
    """A real Accelerator with `gradient_accumulation_steps` (its state reset around each use)."""

    made = []

    def make(accumulation: int) -> Accelerator:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        made.append(Accelerator(gradient_accumulation_steps=accumulation))
        return made[-1]

    yield make
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.mark.parametrize(
    ("rows", "batch", "processes", "accumulation"),
    list(itertools.product([3, 9, 17, 38], [2, 4], [1, 2, 3], [1, 2, 3])),
)
def test_optimizer_steps_end_where_accelerate_syncs(
    rows, batch, processes, accumulation, accelerator_for
) -> None:
    """Every K batches of a process and at its loader's last batch (a short last window), each epoch anew."""
    accelerator = accelerator_for(accumulation)
    model = torch.nn.Linear(1, 1)
    expected = [
        (s.first_batch, s.last_batch)
        for s in layout.step_slices(rows, Layout(processes, batch, accumulation))
    ]
    for process in range(processes):
        loader = prepare_data_loader(
            DataLoader(Positions(rows), batch_size=batch),
            num_processes=processes,
            process_index=process,
            put_on_device=False,
        )
        for _epoch in range(2):
            windows, first = [], 0
            for index, _batch in enumerate(loader):
                with accelerator.accumulate(model):
                    pass
                if accelerator.sync_gradients:
                    windows.append((first, index))
                    first = index + 1
            assert windows == expected


def test_a_step_is_one_slice_of_the_stream() -> None:
    """38 rows, batch 4: 2 processes read 10 global batches (wrapping 2 rows), 1 process 10 with a short
    last one; with accumulation 2 the single process's steps are the 2-process steps but for the tails."""
    two = Layout(2, 4, 1)
    one = Layout(1, 4, 2)
    assert layout.steps_per_epoch(38, two) == layout.steps_per_epoch(38, one) == 5
    assert layout.wrapped_rows(38, two) == 2 and layout.wrapped_rows(38, one) == 0
    assert [(s.start, s.stop) for s in layout.step_slices(38, two)][-1] == (32, 40)
    assert [(s.start, s.stop) for s in layout.step_slices(38, one)][-1] == (32, 38)


def test_layouts_compared_name_the_tail_steps() -> None:
    check = layout.compare_layouts(38, Layout(2, 4, 1), Layout(1, 4, 2), epochs=2)
    assert not check.same
    assert [(d.step, d.only_reference, d.only_planned) for d in check.differing] == [(5, 2, 0), (10, 2, 0)]
    assert "2 of 10 steps read other rows (steps 5, 10)" in check.summary()
    assert "repeats 2 rows" in check.summary()
    # 8 GPUs -> 4 with --keep-global-batch on the released data's size: the same rows but at the epochs' ends.
    rows = 808_812 - 40_441
    keep = layout.compare_layouts(rows, Layout(8, 32, 1), Layout(4, 32, 2), epochs=2)
    assert keep.steps_planned == keep.steps_reference
    assert [d.step for d in keep.differing] == [keep.steps_reference // 2, keep.steps_reference]
    same = layout.compare_layouts(256 * 10, Layout(8, 32, 1), Layout(4, 32, 2), epochs=2)
    assert same.same and "the same rows" in same.summary()
    # Another batch size breaks the step boundaries: every step differs, and there are fewer of them.
    other = layout.compare_layouts(100, Layout(2, 4, 1), Layout(2, 5, 1), epochs=1)
    assert len(other.differing) == 13 and {d.epoch for d in other.differing} == {0}
    assert "10 steps instead of 13" in other.summary()


def test_compact_steps() -> None:
    assert layout.compact_steps([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"
    assert layout.compact_steps([]) == ""
