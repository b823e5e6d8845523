"""The training loop that runs in every process started by `accelerate launch ... train.py`.

Read top to bottom: arguments -> config -> accelerator -> tokenizer, model, data -> optimizer, schedule ->
prepare -> (resume) -> epochs of accumulated steps with logging, evaluation and saving -> final weights and
the run manifest. Semantics are the upstream recipe's (commit a4e8616c) with its bugs fixed (see README).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpt4allj_kit import batching, paths
from gpt4allj_kit.config import TrainConfig, load_train_config
from gpt4allj_kit.errors import KitError
from gpt4allj_kit.redaction import redact
from gpt4allj_kit.trace.capture import StepRows, gathered
from gpt4allj_kit.trace.records import batch_hash, encode_rows
from gpt4allj_kit.train import burnin, checkpoint, optim, sources
from gpt4allj_kit.train.cadence import Cadence
from gpt4allj_kit.train.checkpoint import TrainerState

# Fault injection for the resume tests: every process SIGKILLs itself right after this optimizer step.
KILL_AFTER_STEP_ENV = "GPT4ALLJ_KIT_KILL_AFTER_STEP"
# What stops a training: the kit's supervisor sends SIGTERM, torch elastic's agent forwards what it gets.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="train.py", description="GPT4All-J fine-tuning (run it through `accelerate launch`)."
    )
    parser.add_argument("--config", default=None, help="training config YAML (default: the documented one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        help="'latest' or a step_N/ directory (over the config's `checkpoint`)",
    )
    parser.add_argument(
        "--burn-in",
        type=int,
        default=None,
        metavar="N",
        help="time N optimizer steps after the warm-up ones, then write burn_in.json (train/burnin.py)",
    )
    return parser.parse_args(argv)


class Stopped(BaseException):
    """A stop signal arrived: the process leaves at once, quietly (a BaseException, so that no library's
    `except Exception` holds it up). The saved `step_N/` states stay whole: each is renamed into place only
    when complete."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stop_quietly_on_signals() -> None:
    """SIGTERM, SIGINT and SIGHUP end this process with one line instead of a traceback per process."""

    def stop(signum: int, _frame: object) -> None:
        # torch elastic's agent forwards the signal it got too: a second one must not interrupt the exit.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)


def main(argv: list[str] | None = None) -> int:
    """Entry of root `train.py`: expected failures print one line and exit with their code."""
    stop_quietly_on_signals()
    args = parse_args(argv)
    try:
        config = load_train_config(args.config, args.set)
        train(
            config,
            resume=args.resume,
            command=[sys.argv[0], *(argv if argv is not None else sys.argv[1:])],
            burn_in=args.burn_in,
        )
    except KitError as exc:
        print(f"error: {redact(exc.message)}", file=sys.stderr, flush=True)  # into reproduce's launch.log
        return int(exc.exit_code)
    except Stopped as exc:
        name = signal.Signals(exc.signum).name
        rank = os.environ.get("RANK", "0")
        print(f"train.py (rank {rank}): stopped by {name}; resume with --resume latest", file=sys.stderr)
        return 128 + exc.signum
    return 0


# --- the launcher's dynamo flag ---------------------------------------------------------------------


def launcher_dynamo_backend(cmdlines: Iterable[list[str]]) -> str | None:
    """The `--dynamo_backend` given to the `accelerate launch` among `cmdlines` (ancestors first)."""
    for argv in cmdlines:
        if not any(Path(a).name == "accelerate" or a.endswith("accelerate/commands/launch.py") for a in argv):
            continue
        for i, arg in enumerate(argv):
            if arg.startswith("--dynamo_backend="):
                return arg.split("=", 1)[1]
            if arg == "--dynamo_backend" and i + 1 < len(argv):
                return argv[i + 1]
    return None


def _ancestor_cmdlines() -> list[list[str]]:
    import psutil

    lines = []
    for proc in psutil.Process().parents():
        try:
            lines.append(proc.cmdline())
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    return lines


def apply_launcher_dynamo_backend() -> str | None:
    """Makes `--dynamo_backend` apply under `--use_deepspeed`, where accelerate 1.15 silently drops it.

    accelerate's DeepSpeed launcher does not export ACCELERATE_DYNAMO_BACKEND (its other launchers do), so
    the documented command's `--dynamo_backend=inductor` would compile nothing. When the variable is unset,
    the flag is read from the launching `accelerate` process's command line and exported here, before the
    Accelerator is created.
    """
    if os.environ.get("ACCELERATE_DYNAMO_BACKEND") or os.environ.get("ACCELERATE_USE_DEEPSPEED") != "true":
        return os.environ.get("ACCELERATE_DYNAMO_BACKEND")
    backend = launcher_dynamo_backend(_ancestor_cmdlines())
    if backend:
        os.environ["ACCELERATE_DYNAMO_BACKEND"] = backend.upper()
    return backend


# --- building blocks ----------------------------------------------------------------------------------


def has_process_group() -> bool:
    """Whether accelerate will create a torch.distributed process group: several processes, or DeepSpeed
    (which makes one even for a single process). A lone process has none, and a process-group setting
    makes accelerate fail on it ("Default process group has not been initialized")."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return world > 1 or os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true"


def make_accelerator(config: TrainConfig) -> Any:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import (
        DataLoaderConfiguration,
        DistributedDataParallelKwargs,
        InitProcessGroupKwargs,
        ProjectConfiguration,
    )

    handlers: list[Any] = []
    if not torch.cuda.is_available() and has_process_group():
        # DeepSpeed on CPU otherwise initialises a backend that fails its batch-size check; gloo works.
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    if batching.forwards_vary(config.padding):
        # DDP broadcasts the model's buffers (GPT-J's: constant rotary and mask tables) in every forward, a
        # collective: processes running different numbers of sub-batch forwards would wait on each other.
        handlers.append(DistributedDataParallelKwargs(broadcast_buffers=False))
    trackers = [name for name, on in (("wandb", config.wandb), ("tensorboard", config.tensorboard)) if on]
    return Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        # The schedule is stepped once per optimizer step, as DeepSpeed does (see optim.py).
        step_scheduler_with_optimizer=False,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=config.output_dir, logging_dir=config.output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=handlers,
    )


def load_model(path: Path, config: TrainConfig, device_type: str = "cpu") -> Any:
    from transformers import AutoModelForCausalLM

    attention = batching.attention_for(config.padding, device_type)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        trust_remote_code=config.trust_remote_code,
        use_cache=not config.gradient_checkpointing,
        dtype="float32",  # master weights in fp32; mixed precision comes from the launcher
        **({"attn_implementation": attention} if attention else {}),
    )
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if config.lora:
        from peft import get_peft_model

        if config.gradient_checkpointing:
            model.enable_input_require_grads()
        model = get_peft_model(model, lora_config())
    return model


def lora_config() -> Any:
    """Upstream's LoRA settings: what a `lora: true` run trains (and what `export` rebuilds it with)."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.CAUSAL_LM, inference_mode=False, r=8, lora_alpha=32, lora_dropout=0.1
    )


def make_loaders(splits: Any, config: TrainConfig, pad_token_id: int) -> tuple[Any, Any]:
    """The training and validation loaders; training rows carry their row number for the trace (the loop
    pops it before the model sees the batch)."""
    from torch.utils.data import DataLoader

    from gpt4allj_kit.trace.capture import RowNumbered, with_row_column

    collate = batching.collator_for(config.padding, pad_token_id, config.max_length)
    train = DataLoader(
        RowNumbered(splits.train, splits.train_rows),
        batch_size=config.batch_size,
        shuffle=config.shuffle,
        collate_fn=with_row_column(collate),
    )
    val = DataLoader(splits.validation, batch_size=config.batch_size, collate_fn=collate)
    return train, val


def deepspeed_config(accelerator: Any) -> dict[str, Any] | None:
    plugin = accelerator.state.deepspeed_plugin
    return plugin.deepspeed_config if plugin is not None else None


# --- progress, metrics ----------------------------------------------------------------------------------


@dataclass
class StepMeter:
    """Losses and tokens of the micro-batches of one optimizer step (this process)."""

    losses: list[Any] = field(default_factory=list)
    tokens: int = 0
    nonpad_tokens: int = 0

    def add(self, loss: Any, batch: dict[str, Any]) -> None:
        self.losses.append(loss.detach().float())
        cells, real = batching.token_counts(batch)
        self.tokens += cells
        self.nonpad_tokens += real


class MetricsLog:
    """metrics.jsonl (main process only), kept consistent with the state a run resumes from; the same for
    trace.jsonl (`name`), whose lines are also fsynced one by one (`durable`), so a kill loses at most the
    line being written."""

    def __init__(
        self,
        output_dir: Path,
        enabled: bool,
        resumed: TrainerState | None,
        batches_per_epoch: int,
        *,
        name: str = paths.METRICS,
        durable: bool = False,
    ) -> None:
        self.path = output_dir / name
        self.enabled = enabled
        self.durable = durable
        if enabled and resumed is not None and self.path.exists():
            # What came after the resumed state was lost with the killed run; it is about to be redone.
            consumed = resumed.epoch * batches_per_epoch + resumed.batches_done
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:  # a line torn by the kill
                    continue
                if isinstance(record, dict) and written_before(record, resumed.step, consumed):
                    kept.append(line)
            self.path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
                if self.durable:
                    fh.flush()
                    os.fsync(fh.fileno())


def written_before(record: dict[str, Any], step: int, batches: int) -> bool:
    """Whether a metrics record belongs to the part of a run that a state (`step` optimizer steps and
    `batches` batches done, counted over epochs) already holds.

    A validation is placed by its batch: one may follow a batch inside an accumulation window, before the
    window's optimizer step, so it shares its `step` with the state saved at the previous window's end.
    """
    if "batch" in record:
        return int(record["batch"]) < batches
    return int(record.get("step", 0)) <= step


def tracker_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics record for W&B / TensorBoard; a nested mapping becomes `key/name`."""
    scalars = {k: v for k, v in record.items() if isinstance(v, int | float)}
    for key, value in record.items():
        if isinstance(value, dict):
            scalars.update({f"{key}/{name}": v for name, v in value.items() if isinstance(v, int | float)})
    return scalars


def logs_grads(config: TrainConfig, step: int) -> bool:
    """Whether optimizer step `step` (1-based) writes each parameter's gradient norm (`log_grads_every`)."""
    return config.log_grads_every is not None and step % config.log_grads_every == 0


def evaluate(accelerator: Any, model: Any, loader: Any) -> float:
    """Mean validation loss over the whole validation loader (upstream's definition)."""
    import torch

    model.eval()
    losses = []
    with torch.no_grad():
        for batch in loader:
            loss = batching.micro_batch_loss(model, batch)
            losses.append(accelerator.gather(loss.detach().float().reshape(1)))
    model.train()
    return float(torch.cat(losses).mean()) if losses else float("nan")


def parameter_grad_norms(accelerator: Any, model: Any) -> dict[str, float]:
    """Each trainable parameter's gradient norm in the step about to be taken (before clipping).

    Under DeepSpeed ZeRO a gradient is partitioned over the processes; `safe_get_full_grad` assembles it
    with a collective, so every process calls this, parameters in the same order. With fp16 the gradients
    still carry the loss scale here, which is divided out (bf16 and fp32 have none).
    """
    if accelerator.state.deepspeed_plugin is not None:
        from deepspeed.utils import safe_get_full_grad as full_grad

        scale = float(getattr(model.optimizer, "loss_scale", 1.0))
    else:

        def full_grad(param: Any) -> Any:
            return param.grad

        scale = float(accelerator.scaler.get_scale()) if accelerator.scaler is not None else 1.0
    norms = {}
    for name, param in accelerator.unwrap_model(model).named_parameters():
        grad = full_grad(param) if param.requires_grad else None
        if grad is not None:
            norms[name] = float(grad.detach().float().norm()) / scale
    return norms


def backward(accelerator: Any, model: Any, loss: Any, *, grad_norms: bool) -> dict[str, float] | None:
    """`accelerator.backward(loss)`; with `grad_norms` (at a step boundary), also each gradient's norm.

    accelerate runs DeepSpeed's `engine.step()` inside `backward()` at a boundary, after which ZeRO's
    gradients are gone, so for that step the engine's backward and step are called here with the norms
    taken in between (what accelerate's DeepSpeed wrapper does, in the same order).
    """
    if not grad_norms:
        accelerator.backward(loss)
        return None
    if accelerator.state.deepspeed_plugin is None:
        accelerator.backward(loss)
        return parameter_grad_norms(accelerator, model)
    engine = accelerator.deepspeed_engine_wrapped.engine
    engine.set_gradient_accumulation_boundary(is_boundary=True)
    engine.backward(loss)
    norms = parameter_grad_norms(accelerator, model)
    engine.step()
    return norms


def current_lr(optimizer: Any) -> float:
    return float(optimizer.param_groups[0]["lr"])


def grad_norm_of(accelerator: Any, model: Any, clipped: Any) -> float | None:
    """The global gradient norm of the step just taken (DeepSpeed computes it while clipping)."""
    if accelerator.state.deepspeed_plugin is not None:
        value = model.get_global_grad_norm()
        return float(value) if value is not None else None
    return float(clipped) if clipped is not None else None


# --- the trace's launch record ---------------------------------------------------------------------------


def launch_record(
    accelerator: Any,
    optimizer: Any,
    config: TrainConfig,
    state: TrainerState,
    info: RunInfo,
    splits: Any,
    *,
    ds_config: dict[str, Any] | None,
    loader: tuple[int, int, int],
) -> dict[str, Any]:
    """What trace.jsonl says of this launch (a start or a resume) before its steps: the layout, the data's
    row counts and the settings that decide which rows each step reads (see trace/records.py)."""
    from gpt4allj_kit import __version__, manifest
    from gpt4allj_kit.trace import layout

    batches, per_epoch, total = loader
    planned = layout.Layout(
        accelerator.num_processes, config.batch_size, accelerator.gradient_accumulation_steps
    )
    return {
        "launch": True,
        "step": state.step,
        "epoch": state.epoch,
        "batches_done": state.batches_done,
        "resumed_from": info.resumed_from,
        "time": manifest.now_iso(),
        "kit_version": __version__,
        "lock_sha256": manifest.lock_sha256(),
        "num_processes": accelerator.num_processes,
        "batch_size": config.batch_size,
        "gradient_accumulation_steps": accelerator.gradient_accumulation_steps,
        "distributed_type": str(accelerator.state.distributed_type),
        "mixed_precision": accelerator.mixed_precision,
        "zero_stage": ((ds_config or {}).get("zero_optimization") or {}).get("stage"),
        "optimizer": {
            **optim.describe_optimizer(optimizer),
            # The DeepSpeed JSON's type (its FusedAdam runs "AdamW" in AdamW mode); torch's: its class.
            "type": ((ds_config or {}).get("optimizer") or {}).get("type"),
        },
        "seed": config.seed,
        "shuffle": config.shuffle,
        "padding": config.padding,
        "data_rows": info.assets["data"].get("rows"),
        "train_rows": len(splits.train),
        "validation_rows": len(splits.validation),
        "dropped_rows": encode_rows(splits.dropped.rows),
        "batches_per_epoch": batches,
        "steps_per_epoch": per_epoch,
        "total_steps": total,
        "assets": info.assets,
        "fetch_lock": fetch_lock(config),
        "data_layout": layout.recorded_comparison(
            Path(config.output_dir),
            len(splits.train),
            planned,
            epochs=config.num_epochs,
            max_steps=config.max_steps,
        ),
    }


# --- the run ---------------------------------------------------------------------------------------------


@dataclass
class RunInfo:
    """What the manifest records besides the config."""

    assets: dict[str, Any] = field(default_factory=dict)
    saved: dict[str, str] = field(default_factory=dict)  # directory -> weight dtype
    resumed_from: str | None = None


def train(
    config: TrainConfig,
    *,
    resume: str | None = None,
    command: list[str] | None = None,
    burn_in: int | None = None,
) -> TrainerState:
    """The run; with `burn_in`, its first `burnin.steps_to_run(burn_in)` steps only, with no validation
    or save inside the loop, then `burnin.finish` (burn_in.json) instead of the final weights."""
    import torch
    from accelerate.utils import set_seed

    from gpt4allj_kit import data, manifest

    started = manifest.now_iso()
    dynamo_from_launcher = apply_launcher_dynamo_backend()
    accelerator = make_accelerator(config)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    info = RunInfo()

    with accelerator.main_process_first():
        tokenizer_path, info.assets["tokenizer"] = sources.resolve_source(
            config.tokenizer_name, config.model_revision, key="tokenizer_name"
        )
        model_path, info.assets["model"] = sources.resolve_source(config.model_name, config.model_revision)
        sources.model_config(model_path, config)  # the checks before launch call the same functions
        tokenizer = sources.load_tokenizer(tokenizer_path, config)
        raw, info.assets["data"] = data.load_raw_dataset(config.dataset_path, revision=config.revision)
        splits = data.split_and_tokenize(raw, tokenizer, config)
        info.assets["data"]["dropped"] = splits.dropped.as_json()
    model = load_model(model_path, config, accelerator.device.type)
    train_loader, val_loader = make_loaders(splits, config, data.pad_token_id(tokenizer))

    ds_config = deepspeed_config(accelerator)
    optim.fill_weight_decay(ds_config)
    optim.use_torch_adam_on_cpu(ds_config)
    optimizer = optim.build_optimizer(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
        ds_config=ds_config,
    )
    scheduler = optim.build_scheduler(
        optimizer, lr=config.lr, min_lr=config.min_lr, warmup_steps=config.warmup_steps, ds_config=ds_config
    )
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )
    uses_deepspeed = ds_config is not None

    state = TrainerState()
    resumed_step = None
    given_as = "--resume"
    if resume is None and config.checkpoint is not None:
        resume, given_as = config.checkpoint, "checkpoint"
    if resume:
        resume_path = checkpoint.resolve_resume(resume, output_dir, given_as=given_as)
        accelerator.load_state(str(resume_path))
        state = checkpoint.read_state(resume_path)
        resumed_step = state.step
        info.resumed_from = str(resume_path)
    if config.wandb or config.tensorboard:
        accelerator.init_trackers(
            config.wandb_project_name or "gpt4allj-kit",
            config=config.model_dump(mode="json"),
            init_kwargs={"wandb": {"entity": config.wandb_entity}} if config.wandb else {},
        )

    steps_per_epoch = math.ceil(len(train_loader) / accelerator.gradient_accumulation_steps)
    total_steps = steps_per_epoch * config.num_epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    metrics = MetricsLog(
        output_dir,
        accelerator.is_main_process,
        state if resumed_step is not None else None,
        len(train_loader),
    )
    trace = MetricsLog(
        output_dir,
        accelerator.is_main_process,
        state if resumed_step is not None else None,
        len(train_loader),
        name=paths.TRACE,
        durable=True,
    )
    # Only the main process writes the trace and the manifest: the others skip the layout comparison.
    launch = (
        launch_record(
            accelerator,
            optimizer,
            config,
            state,
            info,
            splits,
            ds_config=ds_config,
            loader=(len(train_loader), steps_per_epoch, total_steps),
        )
        if accelerator.is_main_process
        else None
    )
    if launch is not None:
        trace.write(launch)
    if burn_in is not None:  # after the launch record, which keeps the whole run's count
        total_steps = min(total_steps, burnin.steps_to_run(burn_in))
    kill_after = int(os.environ.get(KILL_AFTER_STEP_ENV, "0") or 0)
    clock = time.perf_counter()
    elapsed_before = state.train_seconds

    def log(record: dict[str, Any]) -> None:
        record["time"] = round(elapsed_before + time.perf_counter() - clock, 3)
        metrics.write(record)
        accelerator.log(tracker_scalars(record), step=state.step)

    model.train()
    cadence = (burnin.Unscheduled if burn_in is not None else Cadence).of(config, len(train_loader))

    def validate(epoch: int, index: int, *, epoch_end: bool = False) -> None:
        # `epoch` of a record: the epoch in progress; at an epoch's end, the epochs done.
        log(
            {
                "step": state.step,
                "epoch": epoch + 1 if epoch_end else epoch,
                "batch": cadence.batch_number(epoch, index),
                "val_loss": evaluate(accelerator, model, val_loader),
            }
        )

    while state.epoch < config.num_epochs and state.step < total_steps:
        epoch = state.epoch
        train_loader.set_epoch(epoch)
        skip = state.batches_done
        batches = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
        meter, step_clock, step_rows = StepMeter(), time.perf_counter(), StepRows()
        window = skip  # the first batch of the accumulation window in progress
        epoch_end_state: str | None = None
        for index, batch in enumerate(batches, start=skip):
            step_rows.take(batch)  # the model never sees the row numbers and digests
            with accelerator.accumulate(model):
                loss = batching.micro_batch_loss(model, batch)
                meter.add(loss, batch)
                lr = current_lr(optimizer)  # the rate this step uses; DeepSpeed steps inside backward
                # accelerate divides by the accumulation steps (DeepSpeed's engine itself): never here.
                grad_norms = backward(
                    accelerator,
                    model,
                    loss,
                    grad_norms=accelerator.sync_gradients and logs_grads(config, state.step + 1),
                )
                clipped = None
                if accelerator.sync_gradients and not uses_deepspeed:
                    clipped = accelerator.clip_grad_norm_(model.parameters(), optim.GRADIENT_CLIPPING)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            synced = accelerator.sync_gradients
            if synced:
                state.step += 1
                state.batches_done = index + 1
                step_loss = accelerator.reduce(torch.stack(meter.losses).mean(), "mean")
                counts = accelerator.reduce(
                    torch.tensor([meter.tokens, meter.nonpad_tokens], device=loss.device), "sum"
                )
                seconds = max(time.perf_counter() - step_clock, 1e-9)
                state.tokens += int(counts[0])
                state.nonpad_tokens += int(counts[1])
                state.train_seconds = elapsed_before + time.perf_counter() - clock
                grad_norm = grad_norm_of(accelerator, model, clipped)
                log(
                    {
                        "step": state.step,
                        "epoch": epoch + state.batches_done / len(train_loader),
                        "train_loss": float(step_loss),
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "tokens_per_s": float(counts[0]) / seconds,
                        "nonpad_tokens_per_s": float(counts[1]) / seconds,
                    }
                )
                entries = gathered(accelerator, step_rows)  # every process: a collective
                trace.write(
                    {
                        "step": state.step,
                        "epoch": epoch,
                        "window": [window, index],
                        "rows": encode_rows(row for row, _ in entries),
                        "n_rows": len(entries),
                        "batch_sha256": batch_hash(digest for _, digest in entries),
                        "lr": lr,
                        "loss": float(step_loss),
                        "grad_norm": grad_norm,
                        "tokens": int(counts[0]),
                        "nonpad_tokens": int(counts[1]),
                    }
                )
                if grad_norms is not None:
                    log({"step": state.step, "grad_norms": grad_norms})
            if cadence.validates_mid_epoch(index, state.step, synced=synced):
                validate(epoch, index)
            if not synced:
                continue
            if (name := cadence.state_name(epoch, window, index, state.step)) is not None:
                if index < len(train_loader) - 1:
                    checkpoint.save_state(accelerator, output_dir / name, state)
                else:
                    # Taken after the epoch's validation and weights (which change no state), so that a
                    # resume starts the next epoch instead of redoing (and re-logging) the epoch's end.
                    epoch_end_state = name
            window = index + 1
            if kill_after and state.step == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            meter, step_clock, step_rows = StepMeter(), time.perf_counter(), StepRows()
            if state.step >= total_steps:
                break

        epoch_finished = state.batches_done >= len(train_loader)
        if epoch_finished:
            state.epoch, state.batches_done = epoch + 1, 0
            if cadence.validates_at_epoch_end():
                validate(epoch, len(train_loader) - 1, epoch_end=True)
            target = output_dir / f"epoch_{epoch + 1}"
            if burn_in is None:
                info.saved[target.name] = checkpoint.save_weights(accelerator, model, tokenizer, target)
            if epoch_end_state is not None:
                checkpoint.save_state(accelerator, output_dir / epoch_end_state, state)
        elif state.step >= total_steps:
            break

    if burn_in is not None:
        burnin.finish(
            accelerator,
            model,
            tokenizer,
            val_loader,
            state,
            config,
            burn_in=burn_in,
            train_rows=len(splits.train),
            started=started,
            command=command or sys.argv,
            assets=info.assets,
        )
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return state
    final = output_dir / "final"
    info.saved[final.name] = checkpoint.save_weights(accelerator, model, tokenizer, final)
    if accelerator.is_main_process:
        write_run_manifest(
            output_dir,
            accelerator=accelerator,
            model=model,
            optimizer=optimizer,
            config=config,
            state=state,
            info=info,
            started=started,
            command=command or sys.argv,
            steps={"steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "completed": state.step},
            dynamo_from_launcher=dynamo_from_launcher,
            data_layout=launch["data_layout"] if launch is not None else None,
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return state


def compiled(model: Any) -> bool:
    """Whether torch.compile applies to the prepared model (DeepSpeed compiles inside its engine)."""
    return bool(getattr(model, "is_compiled", False)) or type(model).__name__ == "OptimizedModule"


def attention_of(model: Any) -> str | None:
    """The attention implementation the model ran (the padding mode chooses it: `batching.attention_for`)."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None)


def fetch_lock(config: TrainConfig) -> dict[str, Any] | None:
    """The run's fetch lock (`asset_lock`, else the checkout's), when there is one: its sha256 and assets."""
    from gpt4allj_kit.fetch.lock import read_lock
    from gpt4allj_kit.files import sha256_file

    lock = sources.lock_path(config)
    if not lock.is_file():
        return None
    return {
        "path": str(lock),
        "sha256": sha256_file(lock),
        "assets": [
            {"repo_id": a.repo_id, "repo_type": a.repo_type, "revision": a.revision, "sha": a.sha}
            for a in read_lock(lock).assets
        ],
    }


def write_run_manifest(
    output_dir: Path,
    *,
    accelerator: Any,
    model: Any,
    optimizer: Any,
    config: TrainConfig,
    state: TrainerState,
    info: RunInfo,
    started: str,
    command: list[str],
    steps: dict[str, int],
    dynamo_from_launcher: str | None,
    data_layout: dict[str, Any] | None = None,
) -> None:
    from gpt4allj_kit import manifest

    acc_state = accelerator.state
    settings = {
        "distributed_type": str(acc_state.distributed_type),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "gradient_accumulation_steps": accelerator.gradient_accumulation_steps,
        "dynamo_backend": str(acc_state.dynamo_plugin.backend.value),
        "dynamo_backend_from_launcher_argv": dynamo_from_launcher,
        "compiled": compiled(model),
        # DeepSpeed's own count of optimizer steps: equals the kit's when accumulation is handled right.
        "deepspeed_global_steps": getattr(model, "global_steps", None),
        "launcher_env": {k: v for k, v in os.environ.items() if k.startswith("ACCELERATE_")},
    }
    seconds = max(state.train_seconds, 1e-9)
    manifest.write_manifest(
        output_dir / paths.MANIFEST,
        stage="train",
        command=shlex.join(command),
        config=config,
        started=started,
        accelerate=settings,
        deepspeed=deepspeed_config(accelerator),
        optimizer=optim.describe_optimizer(optimizer),
        assets=info.assets,
        fetch_lock=fetch_lock(config),
        resumed_from=info.resumed_from,
        steps=steps,
        trainer_state=asdict(state),
        throughput={
            "train_seconds": round(state.train_seconds, 3),
            "tokens_per_s": state.tokens / seconds,
            "nonpad_tokens_per_s": state.nonpad_tokens / seconds,
        },
        saved_weights=info.saved,
        saved_weights_dtype=next(iter(info.saved.values()), None),
        trace=paths.TRACE,
        data_layout=data_layout,
        attention=attention_of(accelerator.unwrap_model(model)),
    )
