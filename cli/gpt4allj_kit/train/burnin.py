"""`gpt4allj-kit train --burn-in N`: N timed optimizer steps of the real launch, and what they predict.

The burn-in is the run's own launch (command, config, layout) into `OUTPUT_DIR/burn-in/`: `train.py
--burn-in N` runs `WARMUP_STEPS` untimed steps (compilation, allocator, DeepSpeed's first step) and N timed
ones, with no validation or save inside the loop, then `finish()` measures in every process what the loop
would add (one validation pass, one resumable state, one set of weights) and the peak memory of each
device, and the main process writes `burn_in.json` (with its manifest beside it).

Step times are the deltas of the `time` of consecutive steps in `metrics.jsonl`, tokens the `tokens` and
`nonpad_tokens` of `trace.jsonl` (both summed over the processes by the loop): what the loop already
records, nothing timed inside it. The projection replays the run's cadence over its real row count and
layout (`run_schedule`): steps x the mean step time + evaluations x one validation pass + saves x one save.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt4allj_kit import paths
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.trace.layout import Layout, batches_per_process, steps_per_epoch
from gpt4allj_kit.train.cadence import Cadence

if TYPE_CHECKING:
    from gpt4allj_kit.config import TrainConfig
    from gpt4allj_kit.train.checkpoint import TrainerState
    from gpt4allj_kit.train.peaks import PeakTable

# Untimed steps before the timed ones: the first compiles (inductor), sizes the allocator's pools and runs
# DeepSpeed's first step; the second catches what the first step's end changed (optimizer state allocated).
WARMUP_STEPS = 2
# Validation batches timed after one untimed batch (eval mode compiles anew); a loader with no more than
# this many after it is timed whole.
EVAL_TIMED_BATCHES = 8
CPU_NOTE = "CPU: tiny model; these numbers do not predict GPT-J on GPUs"
# Written first into the burn-in's folder: a folder holding it is a burn-in's, replaced by the next one.
MARKER = ".gpt4allj-kit-burn-in"
SCRATCH = "measured-save"  # where the one timed save is written, then removed
FLOPS_PER_PARAMETER_TOKEN = 6  # forward 2 + backward 4 multiply-adds per parameter and token


def steps_to_run(burn_in: int) -> int:
    """Optimizer steps a burn-in of `burn_in` timed steps runs."""
    return WARMUP_STEPS + burn_in


def folder_of(output_dir: Path) -> Path:
    """A run's burn-in folder: inside its output dir, apart from its step_N/, trace and metrics."""
    return output_dir / paths.BURN_IN_DIR


# --- the whole run it predicts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """What the real run does: optimizer steps, validation passes and saves, by the loop's cadence."""

    steps: int
    steps_per_epoch: int
    evaluations: int
    state_saves: int  # step_N/
    weight_saves: int  # epoch_N/ of every finished epoch, and final/


def run_schedule(config: TrainConfig, train_rows: int, layout: Layout) -> Schedule:
    """The loop's steps, validations and saves for `train_rows` rows in `layout`, replayed batch by batch
    with its cadence (`Cadence`) and accelerate's sync points (every K batches and at an epoch's end)."""
    batches = batches_per_process(train_rows, layout)
    per_epoch = steps_per_epoch(train_rows, layout)
    total = per_epoch * config.num_epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    cadence = Cadence.of(config, batches)
    step = evaluations = states = weights = 0
    for epoch in range(config.num_epochs):
        if step >= total:
            break
        window = 0  # first batch of the accumulation window in progress
        for index in range(batches):
            synced = (index + 1) % layout.accumulation == 0 or index == batches - 1
            step += synced
            evaluations += cadence.validates_mid_epoch(index, step, synced=synced)
            if not synced:
                continue
            states += cadence.state_name(epoch, window, index, step) is not None
            window = index + 1
            if step >= total:
                break
        if window == batches:  # the epoch finished: its validation and weights
            evaluations += cadence.validates_at_epoch_end()
            weights += 1
    return Schedule(total, per_epoch, evaluations, states, weights + 1)


# --- what was measured ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimedSteps:
    """The timed steps' durations and the tokens they computed (all processes together)."""

    seconds: tuple[float, ...]
    tokens: int
    nonpad_tokens: int

    @property
    def total(self) -> float:
        return sum(self.seconds)

    @property
    def mean(self) -> float:
        return self.total / len(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def tokens_per_s(self) -> float:
        return self.tokens / self.total

    def nonpad_tokens_per_s(self) -> float:
        return self.nonpad_tokens / self.total


def timed_steps(
    step_times: list[tuple[float, float]], step_tokens: dict[int, tuple[int, int]], warmup: int
) -> TimedSteps:
    """The steps after `warmup`: each one's time is its line's `time` minus the previous step's (the
    loop's clock starts at 0 before step 1); `step_tokens`: step -> (tokens, non-pad tokens)."""
    times = {int(step): seconds for step, seconds in step_times}
    steps = sorted(s for s in times if s > warmup)
    if not steps:
        raise ConfigError(f"burn-in: no optimizer step after the {warmup} warm-up steps was recorded")
    seconds = tuple(max(round(times[s] - times.get(s - 1, 0.0), 6), 1e-9) for s in steps)
    tokens = sum(step_tokens[s][0] for s in steps)
    nonpad = sum(step_tokens[s][1] for s in steps)
    return TimedSteps(seconds, tokens, nonpad)


@dataclass(frozen=True)
class EvalTiming:
    """One validation pass: `batches` per process; the first `timed` after the warm-up took `seconds`."""

    batches: int
    timed: int
    seconds: float
    warmup: int

    @property
    def per_pass(self) -> float:
        """Seconds of a whole pass: the timed batches' mean time x the pass's batches."""
        return self.seconds / self.timed * self.batches if self.timed else 0.0

    @property
    def method(self) -> str:
        if not self.batches:
            return "no validation batches"
        if not self.warmup:
            return "its single batch timed (compilation included)"
        if self.timed == self.batches - self.warmup:
            return f"whole pass timed after {self.warmup} warm-up batch (counted at the others' mean)"
        return f"{self.timed} of {self.batches} batches timed after {self.warmup} warm-up batch, extrapolated"


def eval_warmup(batches: int) -> int:
    return 1 if batches > 1 else 0


@dataclass(frozen=True)
class Projection:
    """The whole run's wall time, in seconds, by part (start-up and data tokenization not included)."""

    steps: float
    evaluations: float
    saves: float

    @property
    def total(self) -> float:
        return self.steps + self.evaluations + self.saves


def project(
    schedule: Schedule, step_seconds: float, eval_pass: float, state_save: float, weight_save: float
) -> Projection:
    return Projection(
        steps=schedule.steps * step_seconds,
        evaluations=schedule.evaluations * eval_pass,
        saves=schedule.state_saves * state_save + schedule.weight_saves * weight_save,
    )


def mfu(parameters: int, tokens_per_s_per_device: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: 6 x parameters x tokens per second (one device) over its peak FLOP/s."""
    return FLOPS_PER_PARAMETER_TOKEN * parameters * tokens_per_s_per_device / peak_flops


def utilisation(
    table: PeakTable, device: str, parameters: int, tokens_per_s: float, nonpad_tokens_per_s: float
) -> dict[str, Any]:
    """MFU of one device's throughputs against `device`'s peak, or "unknown" when the table lacks it."""
    peak = table.lookup(device)
    if peak is None:
        return {
            "device": device,
            "peak_tflops": None,
            "source": f"{device!r} is not in {paths.peak_flops_table().name}",
            "tokens": "unknown",
            "nonpad_tokens": "unknown",
        }
    return {
        "device": device,
        "matched": peak.name,
        "peak_tflops": peak.tflops,
        "source": peak.source,
        "tokens": mfu(parameters, tokens_per_s, peak.flops),
        "nonpad_tokens": mfu(parameters, nonpad_tokens_per_s, peak.flops),
    }


# --- measured in the training processes ----------------------------------------------------------------


class Unscheduled(Cadence):
    """The burn-in's cadence: no validation or save inside the timed loop (`finish` measures one each)."""

    def validates_mid_epoch(self, index: int, step: int, *, synced: bool) -> bool:
        return False

    def validates_at_epoch_end(self) -> bool:
        return False

    def state_name(self, epoch: int, first: int, index: int, step: int) -> str | None:
        return None


def _synchronize(accelerator: Any) -> None:
    """Waits for the device's queued work, so that a clock read after it counts that work."""
    import torch

    if accelerator.device.type == "cuda":
        torch.cuda.synchronize(accelerator.device)


def time_evaluation(accelerator: Any, model: Any, loader: Any) -> EvalTiming:
    """A validation pass as `loop.evaluate` runs it (eval mode, no grad, the loss gathered per batch),
    timed over up to EVAL_TIMED_BATCHES batches after one warm-up batch; later batches are drained
    without the model, so the loader ends its pass as in the run. Every process runs it (gathers)."""
    import torch

    batches = len(loader)
    warmup = eval_warmup(batches)
    timed, started = 0, 0.0
    model.eval()
    with torch.no_grad():
        for index, batch in enumerate(loader):
            if index >= warmup + EVAL_TIMED_BATCHES:
                continue
            if index == warmup:
                _synchronize(accelerator)
                started = time.perf_counter()
            accelerator.gather(model(**batch).loss.detach().float().reshape(1))
            timed += index >= warmup
    _synchronize(accelerator)
    seconds = time.perf_counter() - started if timed else 0.0
    model.train()
    slowest = accelerator.gather(torch.tensor([seconds], device=accelerator.device)).max()
    return EvalTiming(batches, timed, float(slowest), warmup)


def time_saves(
    accelerator: Any, model: Any, tokenizer: Any, state: TrainerState, folder: Path
) -> tuple[float, float]:
    """Seconds of one resumable state (as step_N/) and one set of weights (as epoch_N/, final/), each
    written as the run writes them into a scratch folder of the burn-in, then removed."""
    from gpt4allj_kit.train import checkpoint

    scratch = folder / SCRATCH
    accelerator.wait_for_everyone()
    started = time.perf_counter()
    checkpoint.save_state(accelerator, scratch / "state", state)  # ends when every process is done
    state_seconds = time.perf_counter() - started
    started = time.perf_counter()
    checkpoint.save_weights(accelerator, model, tokenizer, scratch / "weights")
    weight_seconds = time.perf_counter() - started
    if accelerator.is_main_process:
        shutil.rmtree(scratch, ignore_errors=True)
    accelerator.wait_for_everyone()
    return state_seconds, weight_seconds


def peak_memory(accelerator: Any) -> dict[str, int]:
    """This process's peak memory so far: on a GPU torch's allocated and reserved peaks on its device,
    on a CPU the process's peak resident set."""
    import torch

    if accelerator.device.type == "cuda":
        return {
            "allocated_bytes": int(torch.cuda.max_memory_allocated(accelerator.device)),
            "reserved_bytes": int(torch.cuda.max_memory_reserved(accelerator.device)),
        }
    import resource

    return {"rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024}  # Linux: KiB


def device_name(device: Any) -> str:
    """The device as torch names it (a GPU), or the CPU's model name."""
    if device.type == "cuda":
        import torch

        return str(torch.cuda.get_device_name(device))
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return f"CPU ({line.partition(':')[2].strip()})"
    except OSError:
        pass
    import platform

    return f"CPU ({platform.processor() or platform.machine()})"


def finish(
    accelerator: Any,
    model: Any,
    tokenizer: Any,
    val_loader: Any,
    state: TrainerState,
    config: TrainConfig,
    *,
    burn_in: int,
    train_rows: int,
    started: str,
    command: list[str],
    assets: dict[str, Any],
) -> None:
    """After the burn-in's steps, in every process: one validation pass and one save of each kind timed,
    each device's peak memory gathered; the main process writes burn_in.json and its manifest."""
    from accelerate.utils import gather_object

    if state.step < steps_to_run(burn_in):
        raise ConfigError(
            f"--burn-in {burn_in}: the run has only {state.step} optimizer steps, fewer than the "
            f"{WARMUP_STEPS} warm-up and {burn_in} timed ones"
        )
    folder = Path(config.output_dir)
    training_peak = peak_memory(accelerator)
    evaluation = time_evaluation(accelerator, model, val_loader)
    state_save, weight_save = time_saves(accelerator, model, tokenizer, state, folder)
    device = {
        "process": accelerator.process_index,
        "device": str(accelerator.device),
        "name": device_name(accelerator.device),
        "peak_training": training_peak,
        "peak_with_evaluation_and_saves": peak_memory(accelerator),
    }
    devices = gather_object([device])
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        result = burn_in_result(
            config,
            burn_in=burn_in,
            layout=Layout(
                accelerator.num_processes, config.batch_size, accelerator.gradient_accumulation_steps
            ),
            train_rows=train_rows,
            parameters=sum(p.numel() for p in unwrapped.parameters()),
            trainable=sum(p.numel() for p in unwrapped.parameters() if p.requires_grad),
            devices=sorted(devices, key=lambda d: d["process"]),
            evaluation=evaluation,
            saves=(state_save, weight_save),
            precision=str(accelerator.mixed_precision),
        )
        write_result(folder, result, config=config, started=started, command=command, assets=assets)
    accelerator.wait_for_everyone()


def burn_in_result(
    config: TrainConfig,
    *,
    burn_in: int,
    layout: Layout,
    train_rows: int,
    parameters: int,
    trainable: int,
    devices: list[dict[str, Any]],
    evaluation: EvalTiming,
    saves: tuple[float, float],
    precision: str,
    table: PeakTable | None = None,
) -> dict[str, Any]:
    """burn_in.json: the measurements of a burn-in in `config.output_dir` and the run they project."""
    from gpt4allj_kit.report.contents import read_metrics
    from gpt4allj_kit.trace.records import read_trace
    from gpt4allj_kit.train.peaks import load_peak_table

    folder = Path(config.output_dir)
    trace = read_trace(folder / paths.TRACE)
    tokens = {s.step: (s.tokens or 0, s.nonpad_tokens or 0) for s in trace.steps}
    steps = timed_steps(read_metrics(folder / paths.METRICS).step_times, tokens, WARMUP_STEPS)
    processes = layout.num_processes
    per_device = (steps.tokens_per_s() / processes, steps.nonpad_tokens_per_s() / processes)
    on_cpu = devices[0]["device"].startswith("cpu")
    schedule = run_schedule(config, train_rows, layout)
    state_save, weight_save = saves
    projection = project(schedule, steps.mean, evaluation.per_pass, state_save, weight_save)
    return {
        "note": CPU_NOTE if on_cpu else None,
        "burn_in_steps": burn_in,
        "warmup_steps": WARMUP_STEPS,
        "timed_steps": len(steps.seconds),
        "model": {"name": config.model_name, "parameters": parameters, "trainable_parameters": trainable},
        "layout": {
            "num_processes": processes,
            "batch_size": layout.batch_size,
            "gradient_accumulation_steps": layout.accumulation,
            "global_batch": layout.global_batch,
            "max_length": config.max_length,
            "padding": config.padding,
            "mixed_precision": precision,
        },
        "step_seconds": {
            "mean": steps.mean,
            "median": steps.median,
            "min": min(steps.seconds),
            "max": max(steps.seconds),
            "each": list(steps.seconds),
        },
        "throughput": {
            "seconds": steps.total,
            "tokens": steps.tokens,
            "nonpad_tokens": steps.nonpad_tokens,
            "tokens_per_s": steps.tokens_per_s(),
            "nonpad_tokens_per_s": steps.nonpad_tokens_per_s(),
            "tokens_per_s_per_device": per_device[0],
            "nonpad_tokens_per_s_per_device": per_device[1],
        },
        "devices": devices,
        "mfu": {
            "formula": "6 x parameters x tokens/s per device / the device's peak dense bf16 FLOP/s",
            **utilisation(table or load_peak_table(), devices[0]["name"], parameters, *per_device),
        },
        "evaluation": {
            "batches_per_pass": evaluation.batches,
            "batches_timed": evaluation.timed,
            "seconds_timed": evaluation.seconds,
            "seconds_per_pass": evaluation.per_pass,
            "method": evaluation.method,
        },
        "saves": {"state_seconds": state_save, "weights_seconds": weight_save},
        "run": {
            "output_dir": str(folder.parent),
            "train_rows": train_rows,
            "epochs": config.num_epochs,
            "max_steps": config.max_steps,
            **asdict(schedule),
        },
        "projection": {
            "steps_seconds": projection.steps,
            "evaluations_seconds": projection.evaluations,
            "saves_seconds": projection.saves,
            "total_seconds": projection.total,
            "formula": (
                "steps x mean step time + evaluations x one validation pass + state saves x one state save "
                "+ weight saves x one weights save (start-up and tokenization not included)"
            ),
        },
    }


def write_result(
    folder: Path,
    result: dict[str, Any],
    *,
    config: TrainConfig,
    started: str,
    command: list[str],
    assets: dict[str, Any],
) -> Path:
    """burn_in.json and its manifest (versions, config, hardware, the timings) beside it."""
    from gpt4allj_kit import manifest

    return manifest.write_output(
        folder / paths.BURN_IN,
        json.dumps(result, indent=2) + "\n",
        stage="burn-in",
        command=command,
        started=started,
        config=config.model_dump(mode="json"),
        assets=assets,
        timings={
            "step_seconds": result["step_seconds"],
            "evaluation": result["evaluation"],
            "saves": result["saves"],
            "projection": result["projection"],
        },
    )


# --- the folder, before and after ----------------------------------------------------------------------


def prepare_folder(folder: Path) -> None:
    """Makes `folder` ready for a new burn-in: an earlier burn-in there is removed (a measurement, never a
    resumable run); anything else there is refused (one line, nothing touched)."""
    if folder.exists():
        if not folder.is_dir():
            raise ConfigError(
                f"{folder}: is a file, not a burn-in folder; move it or choose another output_dir"
            )
        if any(folder.iterdir()) and not (folder / MARKER).is_file():
            raise ConfigError(
                f"{folder}: holds files that no burn-in wrote; move them or choose another output_dir"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("written by gpt4allj-kit train --burn-in; replaced by the next one\n")


def read_result(folder: Path) -> dict[str, Any]:
    """The burn_in.json a burn-in wrote into `folder`."""
    from gpt4allj_kit.files import read_json_object

    return read_json_object(folder / paths.BURN_IN)
