"""Non-pad tokens/s of training with faithful padding (every row padded to max_length, as upstream) versus
dynamic padding (each batch trimmed to its longest row, a multiple of 8), side by side in one run.

Tiny GPT-J, synthetic long-tailed data (the kit's offline assets), one CPU process, the same batches in
the same order for both modes; the modes alternate in rounds so that a noisy machine affects both alike.

    .venv/bin/python benchmarks/bench_padding.py [--max-length 256] [--batch-size 8] [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from itertools import islice
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--cache", type=Path, default=None, help="where the tiny assets are made (default: temp)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import torch
    from gpt4allj_kit import assets, data
    from gpt4allj_kit.config import load_train_config
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    cache = args.cache or Path(tempfile.mkdtemp(prefix="bench-padding-"))
    tiny = assets.tiny_assets(cache, seed=args.seed, rows=args.rows)
    config = load_train_config(
        None,
        {
            "model_name": str(tiny.model_dir),
            "tokenizer_name": str(tiny.tokenizer_dir),
            "dataset_path": str(tiny.jsonl),
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "num_proc": 1,
            "output_dir": str(cache / "unused"),
            "seed": args.seed,
        },
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny.tokenizer_dir)
    raw, _ = data.load_raw_dataset(config.dataset_path, revision="local")
    train = data.split_and_tokenize(raw, tokenizer, config).train
    pad_id = data.pad_token_id(tokenizer)
    needed = args.steps + 2
    rows = [train[i] for i in range(needed * args.batch_size)]
    batches = [rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)]

    results: dict[str, dict[str, float]] = {
        mode: {"seconds": 0.0, "nonpad": 0, "tokens": 0} for mode in ("faithful", "dynamic")
    }
    for _ in range(args.rounds):
        for mode in ("faithful", "dynamic"):
            collate = data.collator_for(mode, pad_id)
            torch.manual_seed(args.seed)
            model = AutoModelForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float32)
            model.config.use_cache = False
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            collated = [collate(b) for b in batches]
            for batch in collated[:2]:  # warm-up, untimed
                model(**batch).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            start = time.perf_counter()
            for batch in islice(collated, 2, None):
                loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                results[mode]["nonpad"] += int(batch["attention_mask"].sum())
                results[mode]["tokens"] += int(batch["input_ids"].numel())
            results[mode]["seconds"] += time.perf_counter() - start

    print(
        f"tiny GPT-J, {args.rows} synthetic rows (seed {args.seed}), max_length {args.max_length}, "
        f"batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds per mode, "
        f"1 process, {args.threads} thread(s)"
    )
    print(f"{'padding':<10} {'non-pad tok/s':>14} {'tok/s':>10} {'pad share':>10} {'seconds':>8}")
    rate = {}
    for mode, r in results.items():
        rate[mode] = r["nonpad"] / r["seconds"]
        pad_share = 1 - r["nonpad"] / r["tokens"]
        print(
            f"{mode:<10} {rate[mode]:>14.0f} {r['tokens'] / r['seconds']:>10.0f} {pad_share:>10.1%} "
            f"{r['seconds']:>8.2f}"
        )
    print(f"dynamic / faithful non-pad tokens/s: {rate['dynamic'] / rate['faithful']:.2f}x")


if __name__ == "__main__":
    main()
