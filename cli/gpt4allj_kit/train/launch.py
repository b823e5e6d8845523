"""The `accelerate launch ... train.py` command of a run and the hyperparameters it implies.

`plan()` turns CLI options (profile, config, --set, GPU count, --keep-global-batch, ...) into a `LaunchPlan`:
the argv and environment to run from the repository root, the `train.py` arguments, and the effective
hyperparameters that `--dry-run` prints. Nothing here loads a model or starts a process.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt4allj_kit import paths
from gpt4allj_kit.config import LaunchConfig, Profile, TrainConfig, load_profile, load_train_config
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.recipe import REFERENCE_GLOBAL_BATCH, VALIDATION_FRACTION
from gpt4allj_kit.train import optim

TRAIN_SCRIPT = "train.py"


def accelerate_command(
    launch: LaunchConfig,
    train_args: list[str],
    *,
    num_processes: int,
    num_machines: int = 1,
    machine_rank: int | str = 0,
    main_process_ip: str | None = None,
    main_process_port: int | None = None,
) -> list[str]:
    """The `accelerate launch ... train.py <train_args>` argv, flags in the documented order.

    On a CPU (`launch.cpu`) without DeepSpeed, `--multi_gpu` is what starts several gloo processes
    (`--cpu` would start one); `launch_env` adds ACCELERATE_USE_CPU=1. DeepSpeed needs neither: it falls
    back to its CPU accelerator by itself, and ACCELERATE_USE_CPU would silently turn it off.
    """
    argv = ["accelerate", "launch"]
    if launch.dynamo_backend != "no":
        argv.append(f"--dynamo_backend={launch.dynamo_backend}")
    if launch.cpu and not launch.use_deepspeed and num_processes * num_machines > 1:
        argv.append("--multi_gpu")
    argv += [
        f"--num_processes={num_processes}",
        f"--num_machines={num_machines}",
        f"--machine_rank={machine_rank}",
    ]
    if main_process_ip:
        argv.append(f"--main_process_ip={main_process_ip}")
    if main_process_port:
        argv.append(f"--main_process_port={main_process_port}")
    if launch.use_deepspeed:
        argv += ["--deepspeed_multinode_launcher", launch.deepspeed_multinode_launcher]
    argv.append(f"--mixed_precision={launch.mixed_precision}")
    if launch.use_deepspeed:
        argv += ["--use_deepspeed", f"--deepspeed_config_file={launch.deepspeed_config_file}"]
    return [*argv, TRAIN_SCRIPT, *train_args]


def launch_env(launch: LaunchConfig) -> dict[str, str]:
    """Environment the command needs besides its argv (shown in front of it when printed)."""
    env: dict[str, str] = {}
    if launch.cpu and not launch.use_deepspeed:
        env["ACCELERATE_USE_CPU"] = "1"
    if launch.cpu and launch.use_deepspeed:
        env["CUDA_VISIBLE_DEVICES"] = ""  # DeepSpeed's CPU accelerator even where GPUs exist
    if launch.use_deepspeed and launch.dynamo_backend != "no":
        # accelerate's DeepSpeed launcher drops --dynamo_backend; train.py also recovers it (loop.py).
        env["ACCELERATE_DYNAMO_BACKEND"] = launch.dynamo_backend.upper()
    return env


def shell_line(argv: list[str], env: dict[str, str]) -> str:
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv)])


# --- effective hyperparameters -----------------------------------------------------------------------


def load_deepspeed_config(launch: LaunchConfig) -> dict[str, Any] | None:
    """The DeepSpeed JSON of the launch (None without DeepSpeed); one-line ConfigError when unusable."""
    if not launch.use_deepspeed:
        return None
    path = Path(launch.deepspeed_config_file)
    path = path if path.is_absolute() else paths.project_root() / path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"deepspeed_config_file {path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def count_rows(dataset_path: str) -> int | None:
    """Rows of a local jsonl/parquet file or folder, without loading it; None when not local."""
    path = Path(dataset_path).expanduser()
    if not path.exists():
        return None
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    total = 0
    for file in files:
        if file.suffix == ".jsonl":
            with file.open("rb") as fh:
                total += sum(1 for line in fh if line.strip())
        elif file.suffix == ".parquet":
            import pyarrow.parquet as pq

            total += pq.ParquetFile(file).metadata.num_rows
    return total


@dataclass(frozen=True)
class Hyperparameters:
    num_processes: int
    micro_batch: int
    accumulation: int
    global_batch: int
    optimizer: str
    schedule: str
    precision: str
    zero_stage: str
    compile: str
    train_rows: int | None
    steps_per_epoch: int | None
    total_steps: int | None

    def rows(self) -> list[tuple[str, str]]:
        unknown = "unknown until the dataset is fetched (`gpt4allj-kit fetch`)"
        return [
            ("processes", str(self.num_processes)),
            ("micro batch per process", str(self.micro_batch)),
            ("gradient accumulation", str(self.accumulation)),
            ("global batch", str(self.global_batch)),
            ("optimizer", self.optimizer),
            ("schedule", self.schedule),
            ("precision", self.precision),
            ("ZeRO stage", self.zero_stage),
            ("torch.compile", self.compile),
            ("training rows", str(self.train_rows) if self.train_rows is not None else unknown),
            ("steps per epoch", str(self.steps_per_epoch) if self.steps_per_epoch is not None else unknown),
            ("total optimizer steps", str(self.total_steps) if self.total_steps is not None else unknown),
        ]


def hyperparameters(
    config: TrainConfig, launch: LaunchConfig, ds_config: dict[str, Any] | None, num_processes: int
) -> Hyperparameters:
    accumulation = config.gradient_accumulation_steps
    rows = count_rows(config.dataset_path)
    train_rows = rows - math.ceil(rows * VALIDATION_FRACTION) if rows is not None else None
    steps_per_epoch = total = None
    if train_rows is not None:
        # accelerate gives every process ceil(rows / (batch x processes)) batches (the last one wraps).
        batches = math.ceil(train_rows / (config.batch_size * num_processes))
        steps_per_epoch = math.ceil(batches / accumulation)
        total = steps_per_epoch * config.num_epochs
        if config.max_steps is not None:
            total = min(total, config.max_steps)
    betas, eps = optim.adam_settings(ds_config)
    who = "DeepSpeed" if optim.uses_deepspeed_optimizer(ds_config) else "torch"
    optimizer = (
        f"{who} AdamW (lr {config.lr:g}, betas {betas}, eps {eps:g}, weight decay {config.weight_decay:g})"
    )
    sched_who = (
        "DeepSpeed WarmupLR" if optim.uses_deepspeed_scheduler(ds_config) else "torch LambdaLR = WarmupLR"
    )
    schedule = (
        f"linear warmup {config.min_lr:g} -> {config.lr:g} over {config.warmup_steps} optimizer steps, then "
        f"constant ({sched_who}); grad clipping {optim.GRADIENT_CLIPPING:g}"
    )
    zero = (ds_config or {}).get("zero_optimization", {}).get("stage")
    return Hyperparameters(
        num_processes=num_processes,
        micro_batch=config.batch_size,
        accumulation=accumulation,
        global_batch=config.batch_size * num_processes * accumulation,
        optimizer=optimizer,
        schedule=schedule,
        precision=launch.mixed_precision,
        zero_stage=str(zero) if launch.use_deepspeed else "none (DDP)",
        compile=launch.dynamo_backend,
        train_rows=train_rows,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
    )


# --- the plan of one `gpt4allj-kit train` ------------------------------------------------------------


@dataclass(frozen=True)
class TrainRequest:
    """What the user asked for on the command line."""

    revision: str | None = None
    config: Path | None = None
    profile: str = "full"
    num_processes: int | None = None
    keep_global_batch: bool = False
    resume: str | None = None
    lora: bool = False
    padding: str | None = None
    sets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LaunchPlan:
    profile: Profile
    launch: LaunchConfig
    config: TrainConfig
    config_path: Path
    train_args: list[str]
    argv: list[str]
    env: dict[str, str]
    hyper: Hyperparameters
    notes: list[str]

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    def shell(self) -> str:
        return shell_line(self.argv, self.env)


def detected_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _tiny_overrides(profile: Profile) -> dict[str, str]:
    from gpt4allj_kit import assets

    tiny = assets.tiny_assets(paths.kit_cache_dir(), seed=profile.seed)
    return {
        "model_name": str(tiny.model_dir),
        "tokenizer_name": str(tiny.tokenizer_dir),
        "dataset_path": str(tiny.jsonl),
    }


def _set_items(values: dict[str, Any]) -> list[str]:
    """`key=value` items that `config.parse_overrides` reads back to the same values."""
    items = []
    for key, value in values.items():
        text = json.dumps(value) if not isinstance(value, str) else value
        if isinstance(value, str):
            import yaml

            # Quote strings YAML would read as something else ("no", "1e-5", "null").
            if yaml.safe_load(value) != value:
                text = json.dumps(value)
        items.append(f"{key}={text}")
    return items


def _num_processes(request: TrainRequest, launch: LaunchConfig, notes: list[str]) -> int:
    if request.num_processes is not None:
        return request.num_processes
    if launch.cpu:
        return int(launch.num_processes) if launch.num_processes != "auto" else 1
    gpus = detected_gpus()
    wanted = launch.num_processes
    if gpus and (wanted == "auto" or gpus != wanted):
        if wanted != "auto":
            notes.append(f"{gpus} GPU(s) detected, the profile names {wanted}: launching {gpus} processes")
        return gpus
    return int(wanted) if wanted != "auto" else 1


def plan(request: TrainRequest, *, cwd: Path | None = None) -> LaunchPlan:
    """The validated command for `request`; every config problem is a one-line ConfigError here."""
    from gpt4allj_kit.config import parse_overrides

    profile = load_profile(request.profile)
    launch = profile.launch
    notes: list[str] = []
    overrides: dict[str, Any] = dict(profile.train)
    if profile.assets == "tiny":
        overrides.update(_tiny_overrides(profile))
    if request.revision:
        overrides["revision"] = request.revision
    if request.lora:
        overrides["lora"] = True
    if request.padding:
        overrides["padding"] = request.padding
    config_path = request.config or Path(profile.train_config)
    user_sets = parse_overrides(request.sets)
    # Validate before anything runs: placeholders and bad keys stop here with one line.
    config = load_train_config(config_path, user_sets, base_overrides=overrides)
    num_processes = _num_processes(request, launch, notes)
    if num_processes < 1:
        raise ConfigError(f"--num-processes {num_processes}: must be at least 1")

    if request.keep_global_batch:
        per_step = config.batch_size * num_processes
        if REFERENCE_GLOBAL_BATCH % per_step:
            raise ConfigError(
                f"--keep-global-batch: {REFERENCE_GLOBAL_BATCH} is not a multiple of batch_size "
                f"{config.batch_size} x {num_processes} processes; set batch_size so that it is"
            )
        accumulation = REFERENCE_GLOBAL_BATCH // per_step
        if accumulation != config.gradient_accumulation_steps:
            notes.append(
                f"--keep-global-batch: gradient accumulation {config.gradient_accumulation_steps} -> "
                f"{accumulation}, so the global batch stays {REFERENCE_GLOBAL_BATCH} "
                f"({config.batch_size} x {num_processes} x {accumulation})"
            )
        user_sets["gradient_accumulation_steps"] = accumulation
        config = load_train_config(config_path, user_sets, base_overrides=overrides)

    # output_dir is relative to where the user runs the kit, not to the repository root the command runs in.
    output_dir = Path(config.output_dir)
    if not output_dir.is_absolute():
        output_dir = (cwd or Path.cwd()) / output_dir
    final_sets = {**overrides, **user_sets, "output_dir": str(output_dir)}
    config = load_train_config(config_path, final_sets)
    ds_config = load_deepspeed_config(launch)
    if optim.uses_deepspeed_scheduler(ds_config) and config.warmup_steps < 1:
        raise ConfigError(
            "warmup_steps 0: DeepSpeed's WarmupLR needs at least 1 (it warms up over >= 2 steps)"
        )

    train_args = ["--config", _display_path(config_path)]
    for item in _set_items(final_sets):
        train_args += ["--set", item]
    if request.resume:
        from gpt4allj_kit.train.checkpoint import resolve_resume

        resolve_resume(request.resume, output_dir)  # a missing state stops here, not in every process
        train_args += ["--resume", request.resume]
    argv = accelerate_command(launch, train_args, num_processes=num_processes)
    hyper = hyperparameters(config, launch, ds_config, num_processes)
    if (
        hyper.global_batch != REFERENCE_GLOBAL_BATCH
        and profile.assets == "hub"
        and not request.keep_global_batch
    ):
        notes.append(
            f"global batch {hyper.global_batch} differs from the published {REFERENCE_GLOBAL_BATCH}; "
            "--keep-global-batch raises gradient accumulation to keep it"
        )
    return LaunchPlan(
        profile=profile,
        launch=launch,
        config=config,
        config_path=config_path,
        train_args=train_args,
        argv=argv,
        env=launch_env(launch),
        hyper=hyper,
        notes=notes,
    )


def _display_path(path: Path) -> str:
    """`path` relative to the repository root when inside it (the command runs there), else absolute."""
    root = paths.project_root()
    candidate = path if path.is_absolute() else (Path.cwd() / path)
    if not candidate.exists():
        candidate = root / path
    try:
        return str(candidate.resolve().relative_to(root))
    except ValueError:
        return str(candidate.resolve())


# --- running ------------------------------------------------------------------------------------------


def executable_argv(argv: list[str]) -> list[str]:
    """`argv` with `accelerate` resolved to the one beside this Python (no venv activation needed)."""
    import shutil
    import sys

    if argv and argv[0] == "accelerate":
        beside = Path(sys.executable).parent / "accelerate"
        found = str(beside) if beside.exists() else shutil.which("accelerate")
        if found is None:
            from gpt4allj_kit.errors import EnvironmentNotReady

            raise EnvironmentNotReady(
                "accelerate is not installed in this environment (see requirements/lock.txt)"
            )
        return [found, *argv[1:]]
    return argv


def start(plan_: LaunchPlan, *, log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """Starts the planned command from the repository root in its own process group.

    Output goes to `log_file` (appended) when given, else to this process's stdout/stderr (streamed).
    """
    env = {**os.environ, **plan_.env}
    argv = executable_argv(plan_.argv)
    if log_file is None:
        return subprocess.Popen(argv, cwd=paths.project_root(), env=env, start_new_session=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            argv,
            cwd=paths.project_root(),
            env=env,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes], *, grace_s: float = 30.0) -> int:
    """Stops a started launch: SIGINT to its group (the launcher forwards it), SIGKILL after `grace_s`."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def run(plan_: LaunchPlan) -> int:
    """Runs the planned command with its output streamed; its exit code (Ctrl-C stops the whole launch)."""
    proc = start(plan_)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop(proc)
        raise
