"""Bucketed and packed training against faithful's, 2 CPU processes, fp32: the same rows per step, per-step
losses within 1e-5 (relative), the same validations, and final weights allclose, under DDP (against the
DDP reference run of conftest.py: multiple forwards then one synced backward per micro-batch) and under
DeepSpeed ZeRO-2 with gradient accumulation 2 (its own accumulation and loss scaling)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gpt4allj_kit.trace.records import read_trace
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

MODES = ("bucketed", "packed")
# fp32 (no autocast, no compile): differences can only come from the summation order of the losses.
DEEPSPEED_FP32_SETS = {"gradient_accumulation_steps": 2, "log_grads_every": 2}


@pytest.fixture(scope="module")
def deepspeed_fp32_faithful(launch_train, tmp_path_factory):
    run = launch_train(
        tmp_path_factory.mktemp("ds-fp32") / "out",
        deepspeed=True,
        sets={**DEEPSPEED_FP32_SETS, "padding": "faithful"},
    )
    assert run.returncode == 0, run.log[-4000:]
    return run


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
    backend: str, mode: str, request, launch_train, reference_sets, tmp_path: Path
) -> None:
    if backend == "ddp":
        reference = request.getfixturevalue("ddp_reference")
        run = launch_train(tmp_path / "out", deepspeed=False, sets={**reference_sets["ddp"], "padding": mode})
    else:
        reference = request.getfixturevalue("deepspeed_fp32_faithful")
        run = launch_train(tmp_path / "out", deepspeed=True, sets={**DEEPSPEED_FP32_SETS, "padding": mode})
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
