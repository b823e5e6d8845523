"""Bucketed and packed training against faithful's, 2 CPU processes, fp32: the same rows per step, per-step
losses within 1e-5 (relative), the same validations, and final weights allclose, under DDP (every
micro-batch synced: several forwards then one backward, processes running different numbers of forwards)
and under DeepSpeed ZeRO-2 with gradient accumulation 2 (its own accumulation and loss scaling).
max_length 256: long enough for bucketed to cut micro-batches into sub-batches (at 64 it never pays)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gpt4allj_kit import batching, data
from gpt4allj_kit.trace.records import read_trace
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

MODES = ("bucketed", "packed")
# fp32 (no autocast, no compile): differences can only come from the summation order of the losses.
SETS = {
    "ddp": {"max_length": 256, "log_grads_every": 2},
    "deepspeed": {"max_length": 256, "log_grads_every": 2, "gradient_accumulation_steps": 2},
}


@pytest.fixture(scope="module")
def faithful_runs(launch_train, tmp_path_factory) -> dict:
    """The faithful reference of each backend, launched when first asked for."""
    runs: dict = {}

    def get(backend: str):
        if backend not in runs:
            run = launch_train(
                tmp_path_factory.mktemp(f"{backend}-faithful") / "out",
                deepspeed=backend == "deepspeed",
                sets={**SETS[backend], "padding": "faithful"},
            )
            assert run.returncode == 0, run.log[-4000:]
            runs[backend] = run
        return runs[backend]

    return get


def test_bucketed_processes_run_different_numbers_of_forwards(tiny_train_split) -> None:
    """The runs below exercise the case that needs DDP's buffer broadcast off: in some step the two
    processes' micro-batches (unshuffled: batch k to process k % 2) are cut into different numbers of
    sub-batches."""
    tokenizer, train = tiny_train_split(256)
    collate = batching.collator_for("bucketed", data.pad_token_id(tokenizer), 256)
    counts = [
        len(collate([train[j] for j in range(i, min(i + 4, len(train)))])[batching.SUB_BATCHES])
        for i in range(0, len(train), 4)
    ]
    assert max(counts) > 1
    assert any(a != b for a, b in zip(counts[0::2], counts[1::2], strict=False))


def _assert_close_weights(a: Path, b: Path) -> None:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert left.keys() == right.keys()
    for name in left:
        torch.testing.assert_close(left[name], right[name], rtol=1e-4, atol=1e-6, msg=name)


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", ["ddp", "deepspeed"])
def test_a_mode_trains_as_faithful(
    backend: str, mode: str, faithful_runs, launch_train, tmp_path: Path
) -> None:
    reference = faithful_runs(backend)
    run = launch_train(
        tmp_path / "out", deepspeed=backend == "deepspeed", sets={**SETS[backend], "padding": mode}
    )
    assert run.returncode == 0, run.log[-4000:]

    ours, theirs = run.train_metrics(), reference.train_metrics()
    assert [m["step"] for m in ours] == [m["step"] for m in theirs]
    worst = max(_relative(m["train_loss"], r["train_loss"]) for m, r in zip(ours, theirs, strict=True))
    assert worst <= 1e-5, f"largest relative loss difference {worst:.2e}"
    for m, r in zip(ours, theirs, strict=True):
        assert m["grad_norm"] == pytest.approx(r["grad_norm"], rel=1e-4)
    # The same cadence (upstream's batch index) and validation losses.
    val = [(m["batch"], m["val_loss"]) for m in run.metrics() if "val_loss" in m]
    ref_val = [(m["batch"], m["val_loss"]) for m in reference.metrics() if "val_loss" in m]
    assert [b for b, _ in val] == [b for b, _ in ref_val]
    assert all(_relative(v, r) <= 1e-5 for (_, v), (_, r) in zip(val, ref_val, strict=True))
    _assert_close_weights(run.output_dir / "final", reference.output_dir / "final")

    # The trace: the same rows and content per step; fewer cells computed, the same real tokens.
    steps = read_trace(run.output_dir / "trace.jsonl").steps
    ref_steps = read_trace(reference.output_dir / "trace.jsonl").steps
    assert [(s.rows, s.batch_sha256) for s in steps] == [(s.rows, s.batch_sha256) for s in ref_steps]
    assert [s.nonpad_tokens for s in steps] == [s.nonpad_tokens for s in ref_steps]
    assert sum(s.tokens for s in steps) < sum(s.tokens for s in ref_steps)
    if mode == "packed":
        assert all(s.tokens == s.nonpad_tokens for s in steps)

    manifest = run.manifest()
    assert manifest["config"]["padding"] == mode
    assert manifest["attention"] == "sdpa"  # on a CPU; packed on CUDA: flash_attention_2 or flex_attention
    if backend == "deepspeed":
        assert manifest["accelerate"]["deepspeed_global_steps"] == manifest["steps"]["completed"]
