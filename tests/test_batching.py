"""Padding modes: each collator's tensors from the stored (unpadded) rows, and each mode's loss and gradients
against faithful's on the same micro-batches (tiny GPT-J, fp32, CPU)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from gpt4allj_kit import batching, data
from gpt4allj_kit.assets import TinyAssets
from gpt4allj_kit.config import PADDING_MODES, TrainConfig
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.trace.records import row_digests, stored_row_digest
from transformers import AutoTokenizer, PreTrainedTokenizerBase, default_data_collator

MAX_LENGTH = 128
BATCH = 8


@pytest.fixture(scope="module")
def tokenizer(tiny: TinyAssets) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(tiny.tokenizer_dir)


@pytest.fixture(scope="module")
def stored(tiny: TinyAssets, tokenizer: PreTrainedTokenizerBase, tmp_path_factory: pytest.TempPathFactory):
    """The tiny data's training split as stored, and the raw rows behind it."""
    config = TrainConfig(
        model_name=str(tiny.model_dir),
        tokenizer_name=str(tiny.tokenizer_dir),
        dataset_path=str(tiny.jsonl),
        output_dir=str(tmp_path_factory.mktemp("unused")),
        max_length=MAX_LENGTH,
        num_proc=1,
    )
    raw, _ = data.load_raw_dataset(str(tiny.jsonl), revision="main")
    splits = data.split_and_tokenize(raw, tokenizer, config)
    return splits, raw


def micro_batches(stored, count: int) -> list[list[dict]]:
    splits, _ = stored
    return [[splits.train[i] for i in range(n * BATCH, (n + 1) * BATCH)] for n in range(count)]


def collate(mode: str, tokenizer: PreTrainedTokenizerBase, items: list[dict]) -> dict:
    return batching.collator_for(mode, data.pad_token_id(tokenizer), MAX_LENGTH)(items)


# --- the collators' tensors ---------------------------------------------------------------------------


def test_rows_are_stored_unpadded_and_faithful_pads_them_as_upstream(
    stored, tokenizer: PreTrainedTokenizerBase
) -> None:
    """The stored columns are the real ids and the masked count; the faithful collator gives exactly what
    `default_data_collator` gave on upstream's padded rows (encode_pair, the definition)."""
    splits, raw = stored
    assert splits.train.column_names == list(data.ROW_COLUMNS)
    first = splits.train[0]
    assert first["input_ids"].dtype == torch.int64 and first["input_ids"].ndim == 1
    assert first["input_ids"].shape[0] < MAX_LENGTH  # unpadded
    for items, start in zip(micro_batches(stored, 3), range(0, 3 * BATCH, BATCH), strict=True):
        expected_rows = []
        for i in range(start, start + BATCH):
            row = raw[int(splits.train_rows[i])]
            encoded = data.encode_pair(tokenizer, row["prompt"], row["response"], MAX_LENGTH)
            expected_rows.append({k: torch.tensor(v) for k, v in encoded.items()})
        expected = default_data_collator(expected_rows)
        got = collate("faithful", tokenizer, items)
        assert list(got) == list(expected)
        for key in expected:
            assert got[key].dtype == expected[key].dtype and got[key].equal(expected[key]), key


def test_dynamic_pads_to_the_longest_row_rounded_to_8(stored, tokenizer: PreTrainedTokenizerBase) -> None:
    for items in micro_batches(stored, 4):
        faithful, dynamic = (collate(m, tokenizer, items) for m in ("faithful", "dynamic"))
        longest = max(len(item["input_ids"]) for item in items)
        width = min(MAX_LENGTH, -(-longest // 8) * 8)
        assert all(dynamic[k].equal(faithful[k][:, :width]) for k in faithful)
        assert (faithful["attention_mask"][:, width:] == 0).all()
    full = [{"input_ids": torch.arange(60), "masked": torch.tensor(3)}]  # 60: no multiple of 8
    assert batching.collator_for("dynamic", 0, 60)(full)["input_ids"].shape == (1, 60)


def _real_rows(batch: dict) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) of each row's real positions."""
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    return [
        (batch["input_ids"][i, :n].tolist(), batch["labels"][i, :n].tolist()) for i, n in enumerate(lengths)
    ]


def test_bucketed_sub_batches_hold_the_same_rows_in_fewer_cells(
    stored, tokenizer: PreTrainedTokenizerBase
) -> None:
    split_seen = False
    for items in micro_batches(stored, 6):
        faithful, bucketed = (collate(m, tokenizer, items) for m in ("faithful", "bucketed"))
        subs = bucketed[batching.SUB_BATCHES]
        split_seen |= len(subs) > 1
        rows = [row for sub in subs for row in _real_rows(sub)]
        assert sorted(rows) == sorted(_real_rows(faithful))
        lengths = [len(ids) for ids, _ in rows]
        assert lengths == sorted(lengths, reverse=True)  # longest first
        for sub in subs:  # each padded only to its own longest row, rounded to 8
            longest = int(sub["attention_mask"].sum(dim=1).max())
            assert sub["input_ids"].shape[1] == min(MAX_LENGTH, -(-longest // 8) * 8)
        assert batching.token_counts(bucketed)[0] < batching.token_counts(faithful)[0]
        assert batching.token_counts(bucketed)[1] == batching.token_counts(faithful)[1]
        assert bucketed[batching.LABEL_TOKENS] == int((faithful["labels"][:, 1:] != -100).sum())
    assert split_seen


@pytest.mark.parametrize("cost", [0, 40, 256, 10**6])
def test_bucket_bounds_are_the_cheapest_cut(cost: int) -> None:
    """Against every way of cutting sorted rows into contiguous sub-batches."""
    rng = np.random.default_rng(cost)
    for _ in range(20):
        lengths = sorted(rng.integers(1, 200, size=int(rng.integers(1, 8))).tolist(), reverse=True)

        def total(bounds: list[int], lengths: list[int] = lengths) -> int:
            return sum(
                (b - a) * batching.rounded_width(lengths[a], 200) + cost
                for a, b in itertools.pairwise(bounds)
            )

        n = len(lengths)
        cuts = [[0, *inner, n] for k in range(n) for inner in itertools.combinations(range(1, n), k)]
        got = batching.bucket_bounds(lengths, 200, cost)
        assert got[0] == 0 and got[-1] == n
        assert total(got) == min(total(c) for c in cuts)
    assert batching.bucket_bounds([100, 90, 10], 200, 10**6) == [0, 3]


def test_packed_is_one_sequence_with_positions_restarting_per_row() -> None:
    items = [
        {"input_ids": torch.tensor([5, 6, 7, 8]), "masked": torch.tensor(2)},
        {"input_ids": torch.tensor([9, 10, 11]), "masked": torch.tensor(1)},
        {"input_ids": torch.tensor([12, 13]), "masked": torch.tensor(0)},  # the first label is masked anyway
    ]
    batch = batching.collator_for("packed", 0, 16)(items)
    assert set(batch) == {"input_ids", "position_ids", "labels"}  # no attention mask
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 12, 13]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 8, -100, 10, 11, -100, 13]]
    assert batching.token_counts(batch) == (9, 9)


def test_every_mode_has_a_collator_and_an_unknown_one_is_refused() -> None:
    row = [{"input_ids": torch.tensor([1, 2, 3]), "masked": torch.tensor(1)}]
    for mode in PADDING_MODES:
        assert batching.collator_for(mode, 0, 8)(row)
    with pytest.raises(ConfigError, match="padding 'ragged': expected one of faithful, dynamic"):
        batching.collator_for("ragged", 0, 8)


def test_packed_chooses_an_attention_that_skips_masked_blocks_on_cuda() -> None:
    assert batching.attention_for("faithful", "cuda") is None
    assert batching.attention_for("bucketed", "cuda") is None
    assert batching.attention_for("packed", "cpu") == "sdpa"
    assert batching.attention_for("packed", "cuda") in ("flash_attention_2", "flex_attention")


def test_a_rows_digest_is_the_same_in_every_mode(stored, tokenizer: PreTrainedTokenizerBase) -> None:
    """The trace's digest of a stored row equals the padded row's digest (faithful and dynamic tensors)."""
    for items in micro_batches(stored, 2):
        digests = [stored_row_digest(item["input_ids"].numpy(), int(item["masked"])) for item in items]
        for mode in ("faithful", "dynamic"):
            batch = collate(mode, tokenizer, items)
            assert row_digests(batch["input_ids"], batch["labels"], batch["attention_mask"]) == digests


# --- the same losses and gradients ------------------------------------------------------------------------


def _loss_and_grads(model: torch.nn.Module, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = batching.micro_batch_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


@pytest.mark.parametrize("mode", ["dynamic", "bucketed", "packed"])
def test_losses_and_gradients_equal_faithfuls(
    tiny: TinyAssets, stored, tokenizer: PreTrainedTokenizerBase, mode: str
) -> None:
    """Relative difference of the loss and of every gradient <= 1e-5 (fp32, the loop's loss function)."""
    from transformers import GPTJForCausalLM

    attention = batching.attention_for(mode, "cpu")
    model = GPTJForCausalLM.from_pretrained(
        tiny.model_dir, dtype=torch.float32, **({"attn_implementation": attention} if attention else {})
    )
    model.train()  # the tiny model has no dropout: train mode is deterministic
    for items in micro_batches(stored, 3):
        expected_loss, expected_grads = _loss_and_grads(model, collate("faithful", tokenizer, items))
        loss, grads = _loss_and_grads(model, collate(mode, tokenizer, items))
        assert loss == pytest.approx(expected_loss, rel=1e-5)
        assert grads.keys() == expected_grads.keys()
        for name, grad in grads.items():
            scale = float(expected_grads[name].norm())
            assert float((grad - expected_grads[name]).norm()) <= 1e-5 * scale + 1e-12, name


def test_packed_rows_attend_across_each_other_with_a_cache(
    tiny: TinyAssets, stored, tokenizer: PreTrainedTokenizerBase
) -> None:
    """Why the packed forward passes use_cache=False: with a cache, transformers does not tell the rows
    apart from the position ids, and the loss is another (rows attend to the rows before them)."""
    from transformers import GPTJForCausalLM

    model = GPTJForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float32, attn_implementation="sdpa")
    items = micro_batches(stored, 1)[0]
    packed = collate("packed", tokenizer, items)
    with torch.no_grad():
        right = float(batching.micro_batch_loss(model, packed))
        crossed = float(model(**packed, use_cache=True).loss)
        faithful = float(model(**collate("faithful", tokenizer, items)).loss)
    assert right == pytest.approx(faithful, rel=1e-5)
    assert abs(crossed - faithful) > 1e-4 * faithful


def test_token_counts_are_the_cells_computed(stored, tokenizer: PreTrainedTokenizerBase) -> None:
    items = micro_batches(stored, 1)[0]
    real = sum(len(item["input_ids"]) for item in items)
    assert batching.token_counts(collate("faithful", tokenizer, items)) == (BATCH * MAX_LENGTH, real)
    assert batching.token_counts(collate("packed", tokenizer, items)) == (real, real)
    cells = sum(s["input_ids"].numel() for s in collate("bucketed", tokenizer, items)[batching.SUB_BATCHES])
    assert batching.token_counts(collate("bucketed", tokenizer, items)) == (cells, real)
