"""How a micro-batch of stored rows becomes what the model computes, in each padding mode, and its loss.

Rows are stored unpadded (`data.ROW_COLUMNS`): a row's real ids and how many of its leading positions are
the prompt (label -100); its labels are its ids with those positions at -100. Every mode keeps upstream's
micro-batches (the same rows, in the same order) and upstream's loss: the mean token cross-entropy over the
micro-batch's label tokens (transformers' causal-LM loss: labels shifted by one, -100 ignored). They differ
in the padding cells the model computes:

- **faithful**: every row padded to ``max_length`` (ids with the pad token, labels -100, attention 0): the
  tensors transformers' `default_data_collator` made from upstream's padded rows.
- **dynamic**: the same, padded only to the longest row of the micro-batch rounded up to a multiple of 8
  (never beyond ``max_length``); the trailing columns it drops are padding in every row.
- **bucketed**: the rows sorted by length (longest first) and cut into sub-batches, each padded only to its
  own longest row (a multiple of 8). Each sub-batch's summed token losses are divided by the micro-batch's
  label-token count and added: the loss and its gradient are the padded micro-batch's, and there is still
  ONE backward per micro-batch (DeepSpeed's accumulation and loss scaling and DDP's gradient hooks see what
  they see with faithful). The processes may then run different numbers of forwards, so DDP must not
  broadcast buffers in its forward (`forwards_vary`: the loop turns that off; GPT-J's buffers are
  constants). The cut (`bucket_bounds`) minimises the cells computed plus `SUB_BATCH_CELLS` per
  sub-batch (a forward's fixed cost, counted in cells). The activations of every sub-batch live until the
  backward; their cells never exceed the padded batch's, so neither does the memory.
- **packed** (padding-free): the rows concatenated into one sequence ``[1, total]``, `position_ids`
  restarting at 0 in each row, each row's first label masked (no row predicts the next row's first
  token), no attention mask. transformers tells the rows apart from the position ids only when the model
  runs without a cache, so the forward passes ``use_cache=False`` (with a cache, rows silently attend to
  each other). The attention (`attention_for`) must skip the masked blocks to save work: flash-attention's
  varlen kernels where `flash_attn` is installed, else flex attention on CUDA; on a CPU sdpa, which builds
  a dense block mask over the packed length (correct, not faster).
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

from gpt4allj_kit.config import PADDING_MODES
from gpt4allj_kit.errors import ConfigError

IGNORE_INDEX = -100
# Sub-batch widths and dynamic padding are rounded up to this (tensor cores like multiples of 8).
MULTIPLE_OF = 8
# A bucketed sub-batch's fixed cost (one more forward and backward: kernel launches, reading the weights),
# in padding cells: a split pays off when it saves more cells than this.
SUB_BATCH_CELLS = 256
SUB_BATCHES = "sub_batches"
LABEL_TOKENS = "label_tokens"

Row = tuple[Any, int]  # (1-D int64 tensor of real ids, masked count)
Collator = Callable[[list[dict[str, Any]]], dict[str, Any]]


# --- rows -----------------------------------------------------------------------------------------------


def stored_rows(items: Sequence[dict[str, Any]]) -> list[Row]:
    """(ids, masked) of each stored row (torch-format items of `data.ROW_COLUMNS`)."""
    import torch

    if not items:
        raise ValueError("cannot collate an empty batch")
    return [(torch.as_tensor(item["input_ids"], dtype=torch.long), int(item["masked"])) for item in items]


def label_tokens(rows: Sequence[Row]) -> int:
    """The label tokens the causal-LM loss averages over: positions after the first whose label is not
    -100 (the loss shifts labels by one, so position 0's label is never a target)."""
    return sum(max(0, len(ids) - max(masked, 1)) for ids, masked in rows)


def padded(rows: Sequence[Row], width: int, pad_token_id: int) -> dict[str, Any]:
    """The rows right-padded to `width`: upstream's padded rows, stacked as `default_data_collator` did."""
    import torch

    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (ids, masked) in enumerate(rows):
        n = len(ids)
        input_ids[i, :n] = ids
        attention_mask[i, :n] = 1
        labels[i, masked:n] = ids[masked:]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def rounded_width(length: int, max_length: int) -> int:
    return min(max_length, math.ceil(length / MULTIPLE_OF) * MULTIPLE_OF)


# --- bucketed: where to cut a sorted micro-batch ----------------------------------------------------------


def bucket_bounds(lengths: Sequence[int], max_length: int, cost: int = SUB_BATCH_CELLS) -> list[int]:
    """Where to cut rows sorted longest first: the bounds [0, ..., len] of the contiguous sub-batches that
    minimise the cells computed (rows x rounded width of the sub-batch's first row) plus `cost` per
    sub-batch. Exact (dynamic programming over the cut points; a micro-batch holds tens of rows)."""
    n = len(lengths)
    best = [0.0] + [math.inf] * n  # best[j]: the cheapest cut of rows [0, j)
    cut_at = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            total = best[i] + (j - i) * rounded_width(lengths[i], max_length) + cost
            if total < best[j]:
                best[j], cut_at[j] = total, i
    bounds = [n]
    while bounds[-1] > 0:
        bounds.append(cut_at[bounds[-1]])
    return bounds[::-1]


# --- collators ------------------------------------------------------------------------------------------


def faithful_collator(pad_token_id: int, max_length: int) -> Collator:
    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        return padded(stored_rows(items), max_length, pad_token_id)

    return collate


def dynamic_collator(pad_token_id: int, max_length: int) -> Collator:
    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        rows = stored_rows(items)
        longest = max(len(ids) for ids, _ in rows)
        return padded(rows, rounded_width(longest, max_length), pad_token_id)

    return collate


def bucketed_collator(pad_token_id: int, max_length: int) -> Collator:
    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        rows = sorted(stored_rows(items), key=lambda row: -len(row[0]))  # stable: ties keep their order
        bounds = bucket_bounds([len(ids) for ids, _ in rows], max_length)
        subs = [
            padded(rows[a:b], rounded_width(len(rows[a][0]), max_length), pad_token_id)
            for a, b in itertools.pairwise(bounds)
        ]
        return {SUB_BATCHES: subs, LABEL_TOKENS: label_tokens(rows)}

    return collate


def packed_collator(pad_token_id: int, max_length: int) -> Collator:
    del pad_token_id, max_length  # nothing is padded

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = stored_rows(items)
        labels = []
        for ids, masked in rows:
            row_labels = ids.clone()
            row_labels[: max(masked, 1)] = IGNORE_INDEX  # the first label too: it would follow another row
            labels.append(row_labels)
        positions = [torch.arange(len(ids), dtype=torch.long) for ids, _ in rows]
        return {
            "input_ids": torch.cat([ids for ids, _ in rows])[None],
            "position_ids": torch.cat(positions)[None],
            "labels": torch.cat(labels)[None],
        }

    return collate


_COLLATORS: dict[str, Callable[[int, int], Collator]] = {
    "faithful": faithful_collator,
    "dynamic": dynamic_collator,
    "bucketed": bucketed_collator,
    "packed": packed_collator,
}


def collator_for(padding: str, pad_token_id: int, max_length: int) -> Collator:
    """The collator of a padding mode, taking stored rows (`data.ROW_COLUMNS`)."""
    if padding not in _COLLATORS:
        raise ConfigError(f"padding {padding!r}: expected one of {', '.join(PADDING_MODES)}")
    return _COLLATORS[padding](pad_token_id, max_length)


# --- the model's side -----------------------------------------------------------------------------------


def attention_for(padding: str, device_type: str) -> str | None:
    """The attention implementation a mode loads the model with (None: transformers' default).

    Packed rows need an attention that keeps them apart from the position ids and, to save work, skips
    the masked blocks: flash-attention's varlen kernels (when `flash_attn` is installed), else flex
    attention (its backward runs on CUDA only); on a CPU sdpa (a dense mask: exact, not faster).
    """
    if padding != "packed":
        return None
    if device_type != "cuda":
        return "sdpa"
    return "flash_attention_2" if importlib.util.find_spec("flash_attn") is not None else "flex_attention"


def forwards_vary(padding: str) -> bool:
    """Whether the processes may run different numbers of forwards per micro-batch (bucketed's
    sub-batches): nothing collective may then happen inside a forward (DDP's buffer broadcast)."""
    return padding == "bucketed"


def micro_batch_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Upstream's loss of one micro-batch (the mean over its label tokens), whatever its mode's shape."""
    if SUB_BATCHES in batch:
        count = batch[LABEL_TOKENS]
        losses = [model(**sub, num_items_in_batch=count).loss for sub in batch[SUB_BATCHES]]
        return losses[0] if len(losses) == 1 else sum(losses[1:], losses[0])
    if "position_ids" in batch:
        return model(**batch, use_cache=False).loss
    return model(**batch).loss


def token_counts(batch: dict[str, Any]) -> tuple[int, int]:
    """(cells the model computes, real tokens among them) of a collated micro-batch."""
    if SUB_BATCHES in batch:
        counts = [token_counts(sub) for sub in batch[SUB_BATCHES]]
        return sum(c for c, _ in counts), sum(r for _, r in counts)
    cells = int(batch["input_ids"].numel())
    if "attention_mask" not in batch:
        return cells, cells  # packed: every cell is a real token
    return cells, int(batch["attention_mask"].sum())
