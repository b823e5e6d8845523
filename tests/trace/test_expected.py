"""The expected trace's parts against the training's own: the split (datasets' train_test_split), the
rows with nothing to learn, the content digests the loop's loader gives (every padding mode),
and the step records; and the comparison of two traces."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
from gpt4allj_kit import batching, data
from gpt4allj_kit.assets import TinyAssets, synthetic_rows
from gpt4allj_kit.config import PADDING_MODES, TrainConfig
from gpt4allj_kit.trace import expected
from gpt4allj_kit.trace.capture import DIGEST_COLUMN, ROW_COLUMN, RowNumbered, StepRows, with_row_column
from gpt4allj_kit.trace.layout import Layout
from gpt4allj_kit.trace.records import StepRecord
from torch.utils.data import DataLoader


@pytest.mark.parametrize(("rows", "seed"), [(19, 42), (20, 42), (40, 7), (3000, 42), (10_001, 123)])
def test_split_rows_is_datasets_train_test_split(rows: int, seed: int) -> None:
    split = datasets.Dataset.from_dict({"i": list(range(rows))}).train_test_split(test_size=0.05, seed=seed)
    train, validation = data.split_rows(rows, seed)
    assert train.tolist() == split["train"]["i"]
    assert validation.tolist() == split["test"]["i"]


def _config(tiny: TinyAssets, tmp_path: Path, dataset: Path, **overrides: object) -> TrainConfig:
    values = {
        "model_name": str(tiny.model_dir),
        "tokenizer_name": str(tiny.tokenizer_dir),
        "dataset_path": str(dataset),
        "output_dir": str(tmp_path / "out"),
        "max_length": 64,
        "num_proc": 1,
        "batch_size": 4,
    }
    return TrainConfig(**(values | overrides))


@pytest.fixture(scope="module")
def data_with_drops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    records = synthetic_rows(seed=5, rows=300)
    records[10]["response"] = ""
    records[200]["prompt"] = records[200]["response"] = ""
    path = tmp_path_factory.mktemp("drops") / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_the_training_rows_are_named_by_their_row_in_the_data(
    tiny: TinyAssets, tmp_path: Path, data_with_drops
) -> None:
    """split_and_tokenize's row numbers name the loaded rows its splits hold (dropped rows left out), and
    the row count with the dropped rows gives the same rows without tokenizing."""
    config = _config(tiny, tmp_path, data_with_drops)
    raw, _ = data.load_raw_dataset(str(data_with_drops), revision="main")
    tokenizer = pytest.importorskip("transformers").AutoTokenizer.from_pretrained(tiny.tokenizer_dir)
    splits = data.split_and_tokenize(raw, tokenizer, config)
    assert splits.dropped.rows == (10, 200)
    assert 10 not in splits.train_rows and 200 not in splits.train_rows
    for i in (0, 7, len(splits.train) - 1):
        row = raw[int(splits.train_rows[i])]
        encoded = data.encode_pair(tokenizer, row["prompt"], row["response"], 64)
        assert (
            splits.train[i]["input_ids"].tolist() == encoded["input_ids"][: len(splits.train[i]["input_ids"])]
        )
        assert encoded["attention_mask"].count(1) == len(splits.train[i]["input_ids"])
    counted = expected.from_counts(len(raw), 42, splits.dropped.rows, "counts")
    assert counted.rows.tolist() == splits.train_rows.tolist()
    full = expected.from_dataset(config)
    assert full.rows.tolist() == splits.train_rows.tolist() and full.content
    assert len(full.digests) == len(splits.train)


@pytest.mark.parametrize("padding", PADDING_MODES)
def test_the_loops_loader_gives_the_expected_digests(tiny: TinyAssets, tmp_path: Path, padding: str) -> None:
    """Rows read through the loop's loader (row numbers and digests carried by the dataset and collator
    wrappers, popped before the model) digest as the expected trace digests them, whatever the padding."""
    config = _config(tiny, tmp_path, tiny.jsonl, padding=padding)
    full = expected.from_dataset(config)
    raw, _ = data.load_raw_dataset(str(tiny.jsonl), revision="main")
    tokenizer = pytest.importorskip("transformers").AutoTokenizer.from_pretrained(tiny.tokenizer_dir)
    splits = data.split_and_tokenize(raw, tokenizer, config)
    plain = batching.collator_for(padding, data.pad_token_id(tokenizer), config.max_length)
    loader = DataLoader(
        RowNumbered(splits.train, splits.train_rows), batch_size=8, collate_fn=with_row_column(plain)
    )
    digest_of = dict(zip(full.rows.tolist(), full.digests, strict=True))
    step = StepRows()
    for n, batch in enumerate(loader):
        step.take(batch)
        assert not {ROW_COLUMN, DIGEST_COLUMN} & set(batch)  # what the model gets: its columns only
        alone = plain([splits.train[i] for i in range(8 * n, 8 * n + 8)])
        assert _same_tensors(batch, alone)  # the same tensors as without the row numbers
        if n == 2:
            break
    entries = step.entries()
    assert len(entries) == 24
    assert all(digest_of[row] == digest for row, digest in entries)


def _same_tensors(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.equal(b)
    return a == b


def test_expected_steps_of_a_small_layout() -> None:
    """38 training rows, 2 processes x batch 4, accumulation 2: 3 steps per epoch (5 batches each: the
    last window holds one), the stream wrapping 2 rows; WarmupLR's first two steps at min_lr."""
    train = expected.from_counts(40, 42, (), "counts")
    schedule = expected.Schedule(shuffle=False, seed=42, epochs=2, lr=1e-3, warmup_steps=2)
    steps = list(expected.expected_steps(train, Layout(2, 4, 2), schedule))
    assert [(s.step, s.epoch, s.window, s.n_rows) for s in steps] == [
        (1, 0, (0, 1), 16), (2, 0, (2, 3), 16), (3, 0, (4, 4), 8),
        (4, 1, (0, 1), 16), (5, 1, (2, 3), 16), (6, 1, (4, 4), 8),
    ]  # fmt: skip
    assert [s.lr for s in steps] == [0.0, 0.0, 5e-4, 1e-3, 1e-3, 1e-3]
    first_rows = train.rows[:2].tolist()
    assert sorted(steps[2].row_list()) == sorted(train.rows[32:38].tolist() + first_rows)
    every = [r for s in steps[:3] for r in s.row_list()]
    assert sorted(set(every)) == sorted(train.rows.tolist()) and len(every) == 40
    capped = list(
        expected.expected_steps(train, Layout(2, 4, 2), expected.Schedule(False, 42, 2, max_steps=4))
    )
    assert [s.step for s in capped] == [1, 2, 3, 4]


def _record(step: int, rows: str, content: str | None = "h") -> StepRecord:
    return StepRecord(
        step=step, epoch=0, window=(step - 1, step - 1), rows=rows, n_rows=1, batch_sha256=content
    )


def test_comparing_traces_names_each_difference() -> None:
    wanted = [_record(1, "1"), _record(2, "2"), _record(3, "3")]
    assert expected.compare_steps(wanted[:2], wanted, complete=False).same  # running: step 3 to come
    finished = expected.compare_steps(wanted[:2], wanted, complete=True)
    assert not finished.same and finished.pending == 1
    found = [_record(1, "1"), _record(2, "7", "h"), _record(3, "3", "other"), _record(4, "4")]
    result = expected.compare_steps(found, wanted, complete=True)
    assert [(m.step, m.what) for m in result.mismatches] == [
        (2, "other rows (1 not expected, 1 expected rows missing)"),
        (3, "the same rows with other content (batch hash differs)"),
    ]
    assert result.extra == (4,)
    rows_only = expected.compare_steps(
        [*found[:1], _record(3, "3", "other")], wanted, complete=False, content=False
    )
    assert rows_only.same and rows_only.content_compared == 0
