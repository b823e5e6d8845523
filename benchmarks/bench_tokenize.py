"""Tokenization speed and padding waste, measured side by side in one run on the tiny world.

1. rows/s of the batched fast path (`data.encode_batch`, three batched tokenizer calls per batch) versus
   the row-by-row definition (`data.encode_pair`, three tokenizer calls per row, as upstream did), on the
   same synthetic long-tailed rows, after checking that both give identical rows;
2. how much of a batch is real tokens with faithful padding (every row padded to max_length) versus
   dynamic padding (each batch trimmed to its longest row, rounded up to a multiple of 8), over the
   batches of the training split in training order.

    .venv/bin/python benchmarks/bench_tokenize.py [--rows N] [--max-length N] [--batch-size N] [--json]

The tiny tokenizer is a 512-token byte-level BPE: its texts make several times more tokens than GPT-J's
50k vocabulary would, so absolute rows/s are not those of the real recipe; the ratios are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import datasets
import numpy as np
from gpt4allj_kit import batching, data, paths
from gpt4allj_kit.assets import synthetic_rows, tiny_assets
from gpt4allj_kit.recipe import VALIDATION_FRACTION
from transformers import AutoTokenizer, PreTrainedTokenizerBase

BATCH_ROWS = 1000  # datasets.map's default batch size, what split_and_tokenize hands encode_arrays


def _best_seconds(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def tokenization_speed(
    tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, str]], max_length: int, repeats: int
) -> dict[str, float]:
    prompts = [r["prompt"] for r in rows]
    responses = [r["response"] for r in rows]

    def batched() -> list[dict[str, list[list[int]]]]:
        chunks = [slice(i, i + BATCH_ROWS) for i in range(0, len(rows), BATCH_ROWS)]
        return [data.encode_batch(tokenizer, prompts[c], responses[c], max_length) for c in chunks]

    def row_by_row() -> list[dict[str, list[int]]]:
        pairs = zip(prompts, responses, strict=True)
        return [data.encode_pair(tokenizer, p, r, max_length) for p, r in pairs]

    first = [row for out in batched() for row in zip(*out.values(), strict=True)]
    second = [tuple(row.values()) for row in row_by_row()]
    if first != second:
        raise SystemExit("encode_batch and encode_pair disagree: fix that before measuring speed")
    batched_s = _best_seconds(batched, repeats)
    row_s = _best_seconds(row_by_row, repeats)
    return {
        "batched_rows_per_s": len(rows) / batched_s,
        "row_by_row_rows_per_s": len(rows) / row_s,
        "speedup": row_s / batched_s,
    }


def padding_waste(
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict[str, str]],
    max_length: int,
    batch_size: int,
    seed: int,
) -> dict[str, float]:
    """Non-pad token fractions over the training split's batches, in the order training reads them."""
    raw = datasets.Dataset.from_list(rows)
    train = raw.train_test_split(test_size=VALIDATION_FRACTION, seed=seed)["train"]
    arrays = data.encode_arrays(tokenizer, train["prompt"], train["response"], max_length)
    lengths = arrays.attention_mask.sum(axis=1)
    dynamic_cells = 0
    for start in range(0, len(lengths), batch_size):
        here = lengths[start : start + batch_size]  # dynamic padding's width: the longest row, rounded to 8
        dynamic_cells += batching.rounded_width(int(here.max()), max_length) * len(here)
    real = int(lengths.sum())
    return {
        "mean_row_tokens": float(lengths.mean()),
        "median_row_tokens": float(np.median(lengths)),
        "p99_row_tokens": float(np.percentile(lengths, 99)),
        "truncated_rows_fraction": float((lengths == max_length).mean()),
        "faithful_nonpad_fraction": real / (len(lengths) * max_length),
        "dynamic_nonpad_fraction": real / dynamic_cells,
        "cells_ratio_faithful_over_dynamic": (len(lengths) * max_length) / dynamic_cells,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42, help="split seed (the recipe's)")
    parser.add_argument("--data-seed", type=int, default=1234, help="seed of the synthetic rows")
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()

    assets = tiny_assets(paths.kit_cache_dir())
    tokenizer = AutoTokenizer.from_pretrained(assets.tokenizer_dir)
    rows = synthetic_rows(args.data_seed, args.rows)
    result: dict[str, Any] = {
        "command": "benchmarks/bench_tokenize.py",
        "rows": args.rows,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "cores": data.available_cores(),
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "(unset)"),
        "python": platform.python_version(),
        "speed": tokenization_speed(tokenizer, rows, args.max_length, args.repeats),
        "padding": padding_waste(tokenizer, rows, args.max_length, args.batch_size, args.seed),
    }
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    speed, pad = result["speed"], result["padding"]
    head = f"tiny tokenizer, {args.rows} synthetic rows, max_length {args.max_length}"
    print(f"{head}, {result['cores']} cores")
    print(f"  row by row (encode_pair):  {speed['row_by_row_rows_per_s']:10.0f} rows/s")
    print(f"  batched (encode_batch):    {speed['batched_rows_per_s']:10.0f} rows/s")
    print(f"  speedup:                   {speed['speedup']:10.2f} x")
    print(
        f"row tokens: mean {pad['mean_row_tokens']:.0f}, median {pad['median_row_tokens']:.0f}, "
        f"p99 {pad['p99_row_tokens']:.0f}; truncated rows {pad['truncated_rows_fraction']:.1%}"
    )
    print(f"non-pad share of batch cells (batch size {args.batch_size}):")
    print(f"  faithful padding (to max_length): {pad['faithful_nonpad_fraction']:6.1%}")
    print(f"  dynamic padding (longest row, x8): {pad['dynamic_nonpad_fraction']:6.1%}")
    print(f"  faithful/dynamic token cells:     {pad['cells_ratio_faithful_over_dynamic']:6.2f} x")


if __name__ == "__main__":
    main()
