"""What the training loop uses to trace its data: each training row carries its row number through the
loader, and each optimizer step's rows and content digests are gathered from every process.

The row number rides along as one more batch column (`ROW_COLUMN`), added by a thin dataset wrapper and
stacked by a collator wrapper around the recipe's own collator, so the model's columns are built exactly
as before; the loop pops it before `model(**batch)`. Nothing here draws random numbers or changes a
tensor the model sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gpt4allj_kit.trace.records import row_digests

ROW_COLUMN = "_kit_row"


class RowNumbered:
    """A map-style dataset whose items also carry `ROW_COLUMN`: `rows[i]` for item i."""

    def __init__(self, dataset: Any, rows: np.ndarray) -> None:
        if len(rows) != len(dataset):
            raise ValueError(f"{len(rows)} row numbers for {len(dataset)} rows")
        self.dataset = dataset
        self.rows = rows

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], ROW_COLUMN: int(self.rows[index])}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        # datasets fetches a whole batch in one call: keep that (the same rows, faster than one by one).
        items = self.dataset.__getitems__(indices)
        return [{**item, ROW_COLUMN: int(self.rows[i])} for item, i in zip(items, indices, strict=True)]


def with_row_column(
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
) -> Callable[..., dict[str, Any]]:
    """`collate` on the model's columns; the row numbers added as a tensor column of their own."""

    def collate_numbered(items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = [item[ROW_COLUMN] for item in items]
        batch = collate([{k: v for k, v in item.items() if k != ROW_COLUMN} for item in items])
        batch[ROW_COLUMN] = torch.tensor(rows, dtype=torch.long)
        return batch

    return collate_numbered


class StepRows:
    """The row numbers and content of this process's micro-batches of one optimizer step."""

    def __init__(self) -> None:
        self.parts: list[tuple[Any, Any, Any, Any]] = []

    def add(self, rows: Any, batch: dict[str, Any]) -> None:
        # Tensors are kept (not copied to the host) until the step ends, where the loop syncs anyway.
        self.parts.append((rows, batch["input_ids"], batch["labels"], batch["attention_mask"]))

    def entries(self) -> list[tuple[int, bytes]]:
        """(row, digest) of every row of the step in this process."""
        found: list[tuple[int, bytes]] = []
        for rows, ids, labels, mask in self.parts:
            digests = row_digests(ids.cpu().numpy(), labels.cpu().numpy(), mask.cpu().numpy())
            found += zip(rows.cpu().tolist(), digests, strict=True)
        return found


def gathered(accelerator: Any, step: StepRows) -> Sequence[tuple[int, bytes]]:
    """Every process's (row, digest) entries of the step (a collective: every process calls it)."""
    from accelerate.utils import gather_object

    return gather_object(step.entries())
