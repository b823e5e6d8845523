"""Real 2-process CPU training runs: DDP and DeepSpeed ZeRO-2, step counts, resume after SIGKILL, LoRA."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

TRAIN_ROWS = 40 - math.ceil(40 * 0.05)  # the 5% validation split
BATCHES_PER_EPOCH = math.ceil(TRAIN_ROWS / (4 * 2))  # per process: batch 4, 2 processes


def assert_bit_identical(a: Path, b: Path) -> None:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        assert torch.equal(left[name], right[name]), f"{name} differs"


def test_ddp_run_trains_and_saves(ddp_reference) -> None:
    out = ddp_reference.output_dir
    train = ddp_reference.train_metrics()
    assert [m["step"] for m in train] == list(range(1, 2 * BATCHES_PER_EPOCH + 1))
    assert train[-1]["train_loss"] < train[0]["train_loss"] - 0.3
    val = [m["val_loss"] for m in ddp_reference.metrics() if "val_loss" in m]
    assert val[-1] < val[0]
    for key in (
        "step",
        "epoch",
        "train_loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "nonpad_tokens_per_s",
        "time",
    ):
        assert key in train[-1]
    # Upstream's cadence (faithful padding): a state after batch index 3 of each epoch, named by the batch
    # counted over epochs (5 per epoch); validation after batch index 3 and at each epoch's end.
    assert sorted(p.name for p in out.glob("step_*")) == ["step_3", "step_8"]
    assert {"epoch_1", "epoch_2", "final"} <= {p.name for p in out.iterdir()}
    assert [(m["batch"], m["step"]) for m in ddp_reference.metrics() if "val_loss" in m] == [
        (3, 4), (4, 5), (8, 9), (9, 10)
    ]  # fmt: skip
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    manifest = ddp_reference.manifest()
    assert manifest["stage"] == "train"
    assert manifest["accelerate"]["distributed_type"] == "DistributedType.MULTI_CPU"
    assert manifest["accelerate"]["num_processes"] == 2
    assert manifest["steps"] == {"steps_per_epoch": 5, "total_steps": 10, "completed": 10}
    assert manifest["saved_weights_dtype"] == "float32"
    assert manifest["assets"]["data"]["rows"] == 40
    assert manifest["optimizer"]["class"] == "torch.optim.adamw.AdamW"

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out / "final")
    assert AutoTokenizer.from_pretrained(out / "final").eos_token == "<|endoftext|>"
    assert (out / "final" / "model.safetensors").is_file()
    assert model.config.model_type == "gptj"


def test_ddp_lr_schedule_is_deepspeed_warmup(ddp_reference) -> None:
    from gpt4allj_kit.train.optim import warmup_constant_lr

    lrs = [m["lr"] for m in ddp_reference.train_metrics()]
    expected = [warmup_constant_lr(k, lr=1e-3, min_lr=0.0, warmup_steps=2) for k in range(len(lrs))]
    assert lrs == pytest.approx(expected)


def test_deepspeed_run_counts_steps_compiles_and_saves_bf16(deepspeed_reference) -> None:
    manifest = deepspeed_reference.manifest()
    settings = manifest["accelerate"]
    steps_per_epoch = math.ceil(BATCHES_PER_EPOCH / 2)
    assert settings["distributed_type"] == "DistributedType.DEEPSPEED"
    assert settings["gradient_accumulation_steps"] == 2
    # The optimizer stepped once per 2 micro-batches (plus the epoch's last odd one), not every micro-batch.
    assert settings["deepspeed_global_steps"] == steps_per_epoch * 2 == manifest["steps"]["completed"]
    # The documented --dynamo_backend=inductor applies under --use_deepspeed (recovered from the launcher).
    assert settings["dynamo_backend"] == "INDUCTOR"
    assert settings["dynamo_backend_from_launcher_argv"] == "inductor"
    assert settings["compiled"] is True
    assert manifest["deepspeed"]["zero_optimization"]["stage"] == 2
    assert manifest["deepspeed"]["gradient_accumulation_steps"] == 2
    assert manifest["deepspeed"]["train_batch_size"] == 4 * 2 * 2
    assert manifest["optimizer"]["weight_decay"] == 0.0
    assert manifest["deepspeed"]["optimizer"]["params"]["torch_adam"] is True  # CPU: no FusedAdam build
    assert manifest["deepspeed"]["optimizer"]["params"]["betas"] == [0.9, 0.999]
    assert manifest["saved_weights_dtype"] == "bfloat16"
    train = deepspeed_reference.train_metrics()
    assert [m["step"] for m in train] == list(range(1, steps_per_epoch * 2 + 1))
    assert train[-1]["train_loss"] < train[0]["train_loss"] - 0.3


def test_accumulation_keeps_upstreams_validations_and_ends_windows_before_saving(deepspeed_reference) -> None:
    """Accumulation 2, eval_every 2, save_every 2, 5 batches per epoch: validation after batch index 2 (inside
    the window of batches 2-3, before its optimizer step, as upstream) and at each epoch's end; upstream's
    saves after batch 2 and 4 are taken at the ends of their windows (batch 3, and 4 which ends the epoch)."""
    out = deepspeed_reference.output_dir
    validations = [(m["batch"], m["step"]) for m in deepspeed_reference.metrics() if "val_loss" in m]
    assert validations == [(2, 1), (4, 3), (7, 4), (9, 6)]
    assert sorted(p.name for p in out.glob("step_*")) == ["step_3", "step_4", "step_8", "step_9"]
    import json

    def state(name: str) -> tuple[int, int, int]:
        saved = json.loads((out / name / "trainer_state.json").read_text())
        return saved["step"], saved["epoch"], saved["batches_done"]

    # step_4 ends epoch 0: saved after the epoch's validation and weights, so a resume starts epoch 1.
    assert [state(n) for n in ("step_3", "step_4", "step_8", "step_9")] == [
        (2, 0, 4),
        (3, 1, 0),
        (5, 1, 4),
        (6, 2, 0),
    ]


def test_deepspeed_loss_is_not_divided_twice(deepspeed_reference, tiny, tiny_train_split) -> None:
    """Step 1's gradient norm equals the norm of the mean loss of its 4 micro-batches, computed here.

    DeepSpeed divides each micro-batch loss by the accumulation steps itself; a loop that divided too
    would log half this norm.
    """
    from gpt4allj_kit import batching, data
    from transformers import AutoModelForCausalLM

    tokenizer, train = tiny_train_split(64)
    collate = batching.collator_for("faithful", data.pad_token_id(tokenizer), 64)
    model = AutoModelForCausalLM.from_pretrained(tiny.model_dir)
    # Unshuffled: micro-batches of 4 rows go to process 0, 1, 0, 1 over the first 16 rows.
    losses = [model(**collate([train[j] for j in range(i, i + 4)])).loss for i in range(0, 16, 4)]
    torch.stack(losses).mean().backward()
    norm = torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    logged = deepspeed_reference.train_metrics()[0]["grad_norm"]
    assert logged == pytest.approx(float(norm), rel=0.05)  # bf16 autocast


@pytest.mark.parametrize("backend", ["ddp", "deepspeed"])
def test_resume_after_sigkill_is_bit_identical(
    backend, request, launch_train, tmp_path: Path, ddp_reference, deepspeed_reference, reference_sets
) -> None:
    """SIGKILL both processes mid-epoch (after a saved state), resume, and end with the same weights."""
    if backend == "ddp":
        reference = ddp_reference
        kwargs = {"deepspeed": False, "sets": reference_sets["ddp"]}
        # DDP resumes through the config's `checkpoint` key, DeepSpeed through train.py --resume.
        resume_with = {"sets": {**reference_sets["ddp"], "checkpoint": "latest"}}
        # Killed after step 5 (the epoch's last batch, before its end); step_3 holds 4 steps: 1 is redone.
        kill_after, resumed_from = 5, "step_3"
    else:
        reference = deepspeed_reference
        kwargs = {
            "deepspeed": True,
            "precision": "bf16",
            "dynamo": "inductor",
            "sets": reference_sets["deepspeed"],
        }
        resume_with = {"resume": "latest"}
        # Killed after step 4 (epoch 1's first window); step_4 holds epoch 0 whole: steps 4-6 are redone.
        kill_after, resumed_from = 4, "step_4"
    out = tmp_path / "out"
    killed = launch_train(out, kill_after_step=kill_after, **kwargs)
    assert killed.returncode != 0
    assert (out / resumed_from).is_dir() and not (out / "final").exists()
    assert max(m["step"] for m in killed.train_metrics()) == kill_after

    resumed = launch_train(out, **{**kwargs, **resume_with})
    assert resumed.returncode == 0, resumed.log[-4000:]
    assert resumed.manifest()["resumed_from"].endswith(resumed_from)
    assert_bit_identical(out / "final", reference.output_dir / "final")
    # metrics.jsonl holds each step and each validation once, with the reference run's losses.
    ours = [(m["step"], m["train_loss"]) for m in resumed.train_metrics()]
    theirs = [(m["step"], m["train_loss"]) for m in reference.train_metrics()]
    assert ours == theirs
    val = [(m["batch"], m["val_loss"]) for m in resumed.metrics() if "val_loss" in m]
    assert val == [(m["batch"], m["val_loss"]) for m in reference.metrics() if "val_loss" in m]
    # trace.jsonl too (tests/train/test_trace.py): every step's rows, content, lr, loss and grad norm.
    from gpt4allj_kit.trace.records import read_trace

    ours_trace, theirs_trace = (
        read_trace(out / "trace.jsonl"),
        read_trace(reference.output_dir / "trace.jsonl"),
    )
    assert [s.model_dump() for s in ours_trace.steps] == [s.model_dump() for s in theirs_trace.steps]
    assert len(ours_trace.launches) == 2 and ours_trace.launches[1].resumed_from.endswith(resumed_from)


def test_rows_with_nothing_to_learn_are_dropped_and_recorded(launch_train, tmp_path: Path) -> None:
    """Empty prompts train; empty responses (alone or with an empty prompt) leave only the eos to learn,
    where upstream's data.py stopped: the run drops them and its manifest says how many, where, and why."""
    from gpt4allj_kit import data
    from gpt4allj_kit.assets import synthetic_rows, write_rows

    rows = synthetic_rows(seed=7, rows=40)
    rows[5]["prompt"] = ""
    rows[6]["response"] = ""
    rows[7]["prompt"] = rows[7]["response"] = ""
    write_rows(rows, tmp_path / "data")
    sets = {"dataset_path": str(tmp_path / "data" / "train.jsonl"), "num_epochs": 1, "max_steps": 1}
    run = launch_train(tmp_path / "out", deepspeed=False, sets=sets)
    assert run.returncode == 0, run.log[-4000:]
    provenance = run.manifest()["assets"]["data"]
    assert provenance["rows"] == 40 and provenance["empty"] == {"prompts": 2, "responses": 2}
    dropped = provenance["dropped"]
    assert (dropped["rule"], dropped["rows"], dropped["first"]) == (data.DROP_RULE, 2, [6, 7])
    assert dropped["train"] + dropped["validation"] == 2


def test_lora_run_saves_an_adapter_that_loads(launch_train, tmp_path: Path, tiny) -> None:
    out = tmp_path / "out"
    run = launch_train(
        out, deepspeed=False, sets={"lora": True, "num_epochs": 1, "max_steps": 3, "warmup_steps": 0}
    )
    assert run.returncode == 0, run.log[-4000:]
    final = out / "final"
    assert (final / "adapter_config.json").is_file()
    assert (final / "adapter_model.safetensors").is_file()
    assert not (final / "model.safetensors").exists()

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny.model_dir), final)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # trained: B starts at zero


def test_cli_runs_the_smoke_command_and_propagates_its_exit_code(tmp_path: Path, kit_cli) -> None:
    """`gpt4allj-kit train --profile smoke` prints the command, streams the launch, returns its failure."""
    from gpt4allj_kit.train.loop import KILL_AFTER_STEP_ENV

    env = {KILL_AFTER_STEP_ENV: "1", "TMPDIR": str(tmp_path)}
    result = kit_cli(
        "train", "--profile", "smoke", "--set", "max_steps=3", cwd=tmp_path, env=env, timeout=600
    )
    assert result.returncode not in (0, 2, 3), result.stderr[-3000:]
    first = result.stdout.splitlines()[0]
    assert "accelerate launch" in first and "--num_processes=2" in first and "train.py --config" in first
    assert "training exited with code" in result.stderr
    assert (tmp_path / "outputs" / "smoke" / "metrics.jsonl").is_file()


@pytest.mark.parametrize(("backend", "tolerance"), [("ddp", 1e-6), ("deepspeed", 1e-5)])
def test_log_grads_every_logs_each_parameters_gradient_norm(
    backend, tolerance, ddp_reference, deepspeed_reference
) -> None:
    """Every `log_grads_every` (2) steps one record holds each parameter's gradient norm; together they
    make the global norm that the step's record logs (DeepSpeed's own, computed from ZeRO's partitions)."""
    run = ddp_reference if backend == "ddp" else deepspeed_reference
    records = [m for m in run.metrics() if "grad_norms" in m]
    steps = [m["step"] for m in run.train_metrics()]
    assert [r["step"] for r in records] == [s for s in steps if s % 2 == 0]
    global_norm = {m["step"]: m["grad_norm"] for m in run.train_metrics()}
    from transformers import AutoModelForCausalLM

    trainable = {
        n for n, _ in AutoModelForCausalLM.from_pretrained(run.output_dir / "final").named_parameters()
    }
    for record in records:
        norms = record["grad_norms"]
        assert {name.removeprefix("_orig_mod.") for name in norms} == trainable
        assert math.sqrt(sum(v * v for v in norms.values())) == pytest.approx(
            global_norm[record["step"]], rel=tolerance
        )
