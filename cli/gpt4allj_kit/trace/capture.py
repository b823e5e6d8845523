"""What the training loop uses to trace its data: each training row carries its row number through the
loader, and each optimizer step's rows and content digests are gathered from every process.

The row number rides along as one more batch column (`ROW_COLUMN`), added by a thin dataset wrapper and
stacked by a collator wrapper around the padding mode's own collator, which also adds each row's content
digest (`DIGEST_COLUMN`), taken from the stored row before any padding, so it is the same in every mode;
the model's columns are built exactly as before, and the loop pops both (`StepRows.take`) before the model
sees the batch. Nothing here draws random numbers or changes a tensor the model sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gpt4allj_kit.trace.records import DIGEST_BYTES, stored_row_digest

ROW_COLUMN = "_kit_row"
DIGEST_COLUMN = "_kit_digest"


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
    """`collate` on the stored rows' columns; the row numbers and the rows' digests (`uint8`, one row of
    `DIGEST_BYTES` each) added as tensor columns of their own."""

    def collate_numbered(items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = [item[ROW_COLUMN] for item in items]
        stored = [{k: v for k, v in item.items() if k != ROW_COLUMN} for item in items]
        digests = b"".join(stored_row_digest(np.asarray(i["input_ids"]), int(i["masked"])) for i in stored)
        batch = collate(stored)
        batch[ROW_COLUMN] = torch.tensor(rows, dtype=torch.long)
        batch[DIGEST_COLUMN] = torch.frombuffer(bytearray(digests), dtype=torch.uint8).view(-1, DIGEST_BYTES)
        return batch

    return collate_numbered


class StepRows:
    """The row numbers and content of this process's micro-batches of one optimizer step."""

    def __init__(self) -> None:
        self.parts: list[tuple[Any, Any]] = []

    def take(self, batch: dict[str, Any]) -> None:
        """Pops a micro-batch's row numbers and digests (the model never sees them)."""
        # Tensors are kept (not copied to the host) until the step ends, where the loop syncs anyway.
        self.parts.append((batch.pop(ROW_COLUMN), batch.pop(DIGEST_COLUMN)))

    def entries(self) -> list[tuple[int, bytes]]:
        """(row, digest) of every row of the step in this process."""
        found: list[tuple[int, bytes]] = []
        for rows, digests in self.parts:
            found += zip(rows.cpu().tolist(), (d.tobytes() for d in digests.cpu().numpy()), strict=True)
        return found


def gathered(accelerator: Any, step: StepRows) -> Sequence[tuple[int, bytes]]:
    """Every process's (row, digest) entries of the step (a collective: every process calls it)."""
    from accelerate.utils import gather_object

    return gather_object(step.entries())
