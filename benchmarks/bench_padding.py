"""Non-pad tokens/s of training in each padding mode (faithful, dynamic, bucketed, packed), side by side.

One run, 2 processes (DDP over gloo, as `accelerate launch` runs on CPUs), the tiny GPT-J with the real
50,400-token vocabulary, realistic rows tokenized by the real GPT-J tokenizer at max_length 1024.

Every mode trains the same micro-batches in the same order (the training split unshuffled; micro-batch k to
process k % 2, as accelerate shards them) from the same initial weights, with `batching.micro_batch_loss`
(the training loop's loss) and one AdamW step per micro-batch; the modes alternate in rounds so that a
noisy machine affects them alike, and each round's first step per mode is an untimed warm-up. Time is the
wall clock between barriers; non-pad tokens are the rows' real tokens, summed over both processes; tokens
are the cells the model computes. On a CPU, packed runs sdpa with a dense block mask over the packed
length (exact, no work skipped); its speed comes on GPUs with flash-attention's varlen kernels or flex
attention, which this benchmark does not measure.

    .venv/bin/python benchmarks/bench_padding.py [--batch-size 4] [--steps 2] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODES = ("faithful", "dynamic", "bucketed", "packed")
WORLD = 2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4, help="rows per micro-batch and process")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per mode, round and process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=400, help="realistic rows generated (a few are used)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "gpt4allj-kit-bench", help="assets home"
    )
    return parser.parse_args()


def training_rows(args: argparse.Namespace, model_dir: Path) -> list[dict[str, Any]]:
    """The first micro-batches' stored rows of the training split, in the loader's order."""
    import tempfile

    from gpt4allj_kit import assets, data
    from gpt4allj_kit.config import load_train_config
    from transformers import AutoTokenizer

    folder = Path(tempfile.mkdtemp(prefix="bench-padding-"))
    assets.write_rows(assets.realistic_rows(args.seed, args.rows), folder)
    config = load_train_config(
        None,
        {
            "model_name": str(model_dir),
            "tokenizer_name": str(model_dir),
            "dataset_path": str(folder / "train.jsonl"),
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "num_proc": 1,
            "output_dir": str(folder / "unused"),
        },
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    raw, _ = data.load_raw_dataset(config.dataset_path, revision="local")
    train = data.split_and_tokenize(raw, tokenizer, config).train
    needed = (args.steps + 1) * args.batch_size * WORLD
    return [{k: v.clone() for k, v in train[i].items()} for i in range(needed)]


def worker(rank: int, port: int, args: argparse.Namespace, model_dir: Path, rows: list, out: Any) -> None:
    import torch
    import torch.distributed as dist
    from gpt4allj_kit import batching, data
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(args.threads)
    pad_id = data.pad_token_id(AutoTokenizer.from_pretrained(model_dir))
    size = args.batch_size
    micro = [rows[i : i + size] for i in range(0, len(rows), size)][rank::WORLD]
    totals = {mode: torch.zeros(3, dtype=torch.float64) for mode in MODES}  # seconds, real, cells
    for _ in range(args.rounds):
        for mode in MODES:
            collate = batching.collator_for(mode, pad_id, args.max_length)
            attention = batching.attention_for(mode, "cpu")
            model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=torch.float32, **({"attn_implementation": attention} if attention else {})
            )
            # As the loop runs it (`batching.forwards_vary`): no buffer broadcast in the forward.
            ddp = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
            optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-4)
            batches = [collate(items) for items in micro]
            for n, batch in enumerate(batches):
                if n == 1:  # after the warm-up step
                    dist.barrier()
                    start = time.perf_counter()
                batching.micro_batch_loss(ddp, batch).backward()
                optimizer.step()
                optimizer.zero_grad()
                if n >= 1:
                    cells, real = batching.token_counts(batch)
                    totals[mode][1:] += torch.tensor([real, cells], dtype=torch.float64)
            dist.barrier()
            totals[mode][0] += time.perf_counter() - start
            del ddp, model, optimizer
    for mode in MODES:
        seconds = totals[mode][:1].clone()
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        dist.all_reduce(totals[mode][1:], op=dist.ReduceOp.SUM)
        totals[mode][0] = seconds[0]
    if rank == 0:
        out.put({mode: totals[mode].tolist() for mode in MODES})
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    args = parse_args()
    import torch.multiprocessing as mp
    from gpt4allj_kit import assets

    model_dir = assets.tiny_gptj_real_vocab(args.cache)
    rows = training_rows(args, model_dir)
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.spawn(worker, args=(free_port(), args, model_dir, rows, queue), nprocs=WORLD, join=True)
    results = queue.get()

    print(
        f"tiny GPT-J with the real vocabulary (50,400), {args.rows} realistic rows (seed {args.seed}), "
        f"max_length {args.max_length}, {WORLD} processes (DDP, gloo) x batch {args.batch_size}, "
        f"{args.steps} timed steps x {args.rounds} rounds per mode, {args.threads} thread(s) per process"
    )
    header = ("padding", "non-pad tok/s", "tok/s", "pad share", "seconds", "vs faithful")
    print(
        f"{header[0]:<10} "
        + " ".join(f"{h:>{w}}" for h, w in zip(header[1:], (14, 10, 10, 8, 12), strict=True))
    )
    base = results["faithful"][1] / results["faithful"][0]
    for mode, (seconds, real, cells) in results.items():
        rate = real / seconds
        print(
            f"{mode:<10} {rate:>14.0f} {cells / seconds:>10.0f} {1 - real / cells:>10.1%} {seconds:>8.2f} "
            f"{rate / base:>11.2f}x"
        )


if __name__ == "__main__":
    main()
