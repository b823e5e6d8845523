"""The `accelerate launch ... train.py --config FILE` command of a run, checked, then run and tracked.

`plan()` turns CLI options (profile, config, --set, GPU count, --keep-global-batch, --resume, ...) into a
`LaunchPlan`: the resolved training config, the argv and environment to run from the repository root, and
the effective hyperparameters that `--dry-run` prints; it writes nothing. `preflight()` asks the doctor
whether this machine can run the plan; `check_inputs()` checks its model, tokenizer and data rows with the
functions the training uses. `write_config()` writes the resolved config to
`<output_dir>/train_config.yaml` (what `train.py --config` reads); `lifecycle` starts, follows and stops
the launch.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt4allj_kit import paths
from gpt4allj_kit.config import (
    LaunchConfig,
    Profile,
    Requirements,
    TrainConfig,
    load_profile,
    load_train_config,
    merged,
    parse_overrides,
    profile_file,
    train_config_changes,
    train_config_yaml,
)
from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady
from gpt4allj_kit.files import atomic_write_text, read_json_object
from gpt4allj_kit.recipe import REFERENCE_GLOBAL_BATCH, VALIDATION_FRACTION
from gpt4allj_kit.trace.layout import LAYOUT_FILE, Layout, LayoutComparison, compare_layouts
from gpt4allj_kit.trace.layout import steps_per_epoch as layout_steps_per_epoch
from gpt4allj_kit.train import burnin, cadence, optim
from gpt4allj_kit.train.checkpoint import resolve_resume

if TYPE_CHECKING:
    from gpt4allj_kit.doctor import Readiness
    from gpt4allj_kit.train.inputs import InputsChecked

TRAIN_SCRIPT = "train.py"
# What a launch leaves in its output dir: the config train.py reads (lifecycle.py names the rest).
CONFIG_FILE = "train_config.yaml"


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
    return read_json_object(path, f"deepspeed_config_file {path}", "DeepSpeed config")


def count_rows(config: TrainConfig) -> int | None:
    """Rows of the run's data without loading it: a local file or folder, or the hub snapshot an earlier
    fetch left in the cache (found as the checks before launch find it); None when not fetched yet.

    The files are those the training reads (`data.dataset_files`); jsonl lines that are not blank, parquet
    rows from the footer. A count for the dry run only: a problem with the data is `check_inputs`'s to say.
    """
    from gpt4allj_kit import data
    from gpt4allj_kit.train import sources

    try:
        found = sources.cached_source(
            config.dataset_path, config.revision, "dataset", key="dataset_path", config=config
        )
        files = data.dataset_files(found[0]) if found is not None else []
    except ConfigError:
        return None
    if found is None:
        return None
    total = 0
    for file in files:
        suffix = file.suffix.lower()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                total += pq.ParquetFile(file).metadata.num_rows
            except Exception:  # a damaged file: the checks before launch name it
                return None
        elif suffix == ".json":  # possibly one JSON array: counted by reading its rows
            try:
                total += data.check_rows([file]).rows
            except ConfigError:
                return None
        else:
            with file.open("rb") as fh:
                total += sum(1 for line in fh if line.strip())
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
    validation: str
    checkpoints: str

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
            ("validation", self.validation),
            ("checkpoints", self.checkpoints),
        ]


def hyperparameters(
    config: TrainConfig, launch: LaunchConfig, ds_config: dict[str, Any] | None, num_processes: int
) -> Hyperparameters:
    accumulation = config.gradient_accumulation_steps
    rows = count_rows(config)
    train_rows = rows - math.ceil(rows * VALIDATION_FRACTION) if rows is not None else None
    steps_per_epoch = total = None
    if train_rows is not None:
        steps_per_epoch = layout_steps_per_epoch(
            train_rows, Layout(num_processes, config.batch_size, accumulation)
        )
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
    validation, checkpoints = cadence.describe(config)
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
        validation=validation,
        checkpoints=checkpoints,
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
    # `--burn-in N`: N timed optimizer steps of this launch into OUTPUT_DIR/burn-in/ (train/burnin.py).
    burn_in: int | None = None
    # Typed overrides from a caller (reproduce's run dir), applied over `sets`.
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LaunchPlan:
    profile: Profile
    launch: LaunchConfig
    config: TrainConfig  # resolved: what `start()` writes to `config_file`
    config_path: Path  # the file it was resolved from
    changes: dict[str, Any]  # the resolved values that differ from `config_path`'s
    train_args: list[str]
    argv: list[str]
    env: dict[str, str]
    hyper: Hyperparameters
    notes: list[str]
    # The recipe's layout (its profile's processes, batch and accumulation), and where this launch's steps
    # read other rows than the recipe's would (None: the rows are not counted yet, or no fixed layout).
    reference_layout: Layout | None = None
    layout_check: LayoutComparison | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def config_file(self) -> Path:
        return self.output_dir / CONFIG_FILE

    def shell(self) -> str:
        return shell_line(self.argv, self.env)


def detected_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _tiny_assets_config(profile: Profile) -> dict[str, str]:
    from gpt4allj_kit import assets

    tiny = assets.tiny_assets(paths.kit_cache_dir(), seed=profile.seed)
    return {
        "model_name": str(tiny.model_dir),
        "tokenizer_name": str(tiny.tokenizer_dir),
        "dataset_path": str(tiny.jsonl),
    }


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


def recipe_layout(profile: Profile) -> Layout | None:
    """The layout the profile's recipe trains with (its processes, its config's batch and accumulation,
    before any command-line change); None when the profile leaves the process count to the machine."""
    if not isinstance(profile.launch.num_processes, int):
        return None
    config = load_train_config(profile.train_config, base_overrides=profile.train)
    return Layout(profile.launch.num_processes, config.batch_size, config.gradient_accumulation_steps)


def _layout_check(
    reference: Layout | None, config: TrainConfig, hyper: Hyperparameters, notes: list[str]
) -> LayoutComparison | None:
    """Whether the planned layout's steps read the recipe's rows, said before the launch (a note)."""
    planned = Layout(hyper.num_processes, config.batch_size, config.gradient_accumulation_steps)
    if reference is None or planned == reference:
        return None
    if hyper.train_rows is None:
        notes.append(
            f"data order: {planned.describe()} instead of the recipe's {reference.describe()}; which steps "
            "read other rows than the recipe's is known once the data is fetched (`gpt4allj-kit trace`)"
        )
        return None
    check = compare_layouts(
        hyper.train_rows, reference, planned, epochs=config.num_epochs, max_steps=config.max_steps
    )
    estimate = " (rows counted before dropping those with nothing to learn)"
    notes.append(f"data order: {check.summary()}{'' if check.same else estimate}")
    return check


def _check_burn_in_length(burn_in: int, hyper: Hyperparameters, notes: list[str]) -> None:
    steps = burnin.steps_to_run(burn_in)
    if hyper.total_steps is not None and hyper.total_steps < steps:
        raise ConfigError(
            f"--burn-in {burn_in}: the run has {hyper.total_steps} optimizer steps, fewer than the "
            f"{burnin.WARMUP_STEPS} warm-up and {burn_in} timed ones: give at most "
            f"{hyper.total_steps - burnin.WARMUP_STEPS}"
        )
    notes.append(
        f"burn-in: {burnin.WARMUP_STEPS} untimed warm-up and {burn_in} timed optimizer steps of this launch, "
        "then one validation pass and one save of each kind timed; no validation or save inside the steps"
    )


def _accumulation_for_global_batch(config: TrainConfig, num_processes: int, notes: list[str]) -> int:
    """The gradient accumulation that keeps the published global batch (`--keep-global-batch`)."""
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
    return accumulation


def _resume_state(request: TrainRequest, config: TrainConfig, output_dir: Path, cwd: Path) -> str | None:
    """The absolute `step_N/` to resume from (`--resume` over the config's `checkpoint`), checked now so
    that a missing state stops here rather than in every process."""
    resume = request.resume or config.checkpoint
    if resume is None:
        return None
    given_as = "--resume" if request.resume else "checkpoint"
    target = resume if resume == "latest" else str(cwd / Path(resume).expanduser())
    return str(resolve_resume(target, output_dir, given_as=given_as).resolve())


def _burn_in_profile(profile: Profile, burn_in: int | None, notes: list[str]) -> Profile:
    """The profile a burn-in runs: without CUDA, the kit's tiny assets on CPU processes (GPT-J's steps on a
    CPU would take hours and predict nothing), with the tiny run's needs instead of the GPU run's."""
    if burn_in is None:
        return profile
    if burn_in < 1:
        raise ConfigError(f"--burn-in {burn_in}: must be at least 1 (timed optimizer steps)")
    if profile.assets == "tiny" or detected_gpus():
        return profile
    notes.append(
        "--burn-in without a GPU: the kit's tiny GPT-J, tokenizer and data on CPU processes, in the "
        f"profile's launch otherwise ({burnin.CPU_NOTE})"
    )
    return profile.model_copy(
        update={
            "assets": "tiny",
            "launch": profile.launch.model_copy(update={"cpu": True}),
            "requirements": Requirements(),
        }
    )


def _burn_in_sets(request: TrainRequest, config: TrainConfig, output_dir: Path, sets: dict[str, Any]) -> Path:
    """A burn-in's changes to the run's config (`sets`, in place): its own folder, no resume, no W&B run;
    returns that folder."""
    if request.resume or config.checkpoint:
        given_as = "--resume" if request.resume else "the config's checkpoint"
        raise ConfigError(f"--burn-in measures a fresh start of the run: not with {given_as}")
    folder = burnin.folder_of(output_dir)
    sets["output_dir"] = str(folder)
    sets["checkpoint"] = None
    sets["wandb"] = False  # a burn-in would otherwise open a run in the user's W&B project
    return folder


def plan(request: TrainRequest, *, cwd: Path | None = None) -> LaunchPlan:
    """The validated command for `request`; every config problem is a one-line ConfigError here."""
    notes: list[str] = []
    profile = _burn_in_profile(load_profile(request.profile), request.burn_in, notes)
    launch = profile.launch
    base: dict[str, Any] = dict(profile.train)
    base_source = str(profile_file(request.profile))
    if profile.assets == "tiny":
        # The user's layers are checked before the tiny assets are made (seconds on a cold cache).
        load_train_config(
            request.config or Path(profile.train_config),
            merged(parse_overrides(request.sets), request.overrides),
            base_overrides=base,
            base_source=base_source,
        )
        base.update(_tiny_assets_config(profile))
    if request.revision:
        base["revision"] = request.revision
    if request.lora:
        base["lora"] = True
    if request.padding:
        base["padding"] = request.padding
    config_path = request.config or Path(profile.train_config)
    sets = merged(parse_overrides(request.sets), request.overrides)
    # Validate before anything runs: placeholders and bad keys stop here with one line.
    config = load_train_config(config_path, sets, base_overrides=base, base_source=base_source)
    ds_config = load_deepspeed_config(launch)
    num_processes = _num_processes(request, launch, notes)
    if num_processes < 1:
        raise ConfigError(f"--num-processes {num_processes}: must be at least 1")
    if request.keep_global_batch:
        sets["gradient_accumulation_steps"] = _accumulation_for_global_batch(config, num_processes, notes)

    # Paths are relative to where the user runs the kit, not to the repository root the command runs in.
    cwd = cwd or Path.cwd()
    output_dir = cwd / Path(config.output_dir).expanduser()
    sets["output_dir"] = str(output_dir)
    if request.burn_in is not None:
        output_dir = _burn_in_sets(request, config, output_dir, sets)
    else:
        sets["checkpoint"] = _resume_state(request, config, output_dir, cwd)
    config = load_train_config(config_path, sets, base_overrides=base, base_source=base_source)
    if optim.uses_deepspeed_scheduler(ds_config) and config.warmup_steps < 1:
        raise ConfigError(
            "warmup_steps 0: DeepSpeed's WarmupLR needs at least 1 (it warms up over >= 2 steps)"
        )

    train_args = ["--config", str(output_dir / CONFIG_FILE)]
    hyper = hyperparameters(config, launch, ds_config, num_processes)
    if request.burn_in is not None:
        train_args += ["--burn-in", str(request.burn_in)]
        _check_burn_in_length(request.burn_in, hyper, notes)
    reference = recipe_layout(profile)
    layout_check = _layout_check(reference, config, hyper, notes)
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
        changes=train_config_changes(config_path, config),
        train_args=train_args,
        argv=accelerate_command(launch, train_args, num_processes=num_processes),
        env=launch_env(launch),
        hyper=hyper,
        notes=notes,
        reference_layout=reference,
        layout_check=layout_check,
    )


# --- can this machine run it ------------------------------------------------------------------------


def planned_profile(plan_: LaunchPlan) -> Profile:
    """The plan's profile with the GPU count, config file and overrides that will actually run.

    The doctor judges a profile; the plan may differ from it (another GPU count, more accumulation, --set
    overrides), so the profile is first adjusted to what will run.
    """
    profile = plan_.profile
    gpus = 0 if plan_.launch.cpu else plan_.hyper.num_processes
    return profile.model_copy(
        update={
            "train_config": str(plan_.config_path),
            "train": merged(profile.train, plan_.config.model_dump()),
            "launch": plan_.launch.model_copy(update={"num_processes": plan_.hyper.num_processes}),
            "requirements": profile.requirements.model_copy(update={"gpus": gpus}),
        }
    )


def preflight(plan_: LaunchPlan, *, force: bool = False) -> Readiness:
    """The doctor's readiness for the planned run; one-line EnvironmentNotReady (exit 3) when it cannot
    run, unless `force`."""
    from gpt4allj_kit import doctor

    return doctor.preflight(planned_profile(plan_), force=force)


def check_inputs(plan_: LaunchPlan) -> InputsChecked:
    """The plan's model, tokenizer and data rows, checked as the training will load them, before anything
    is launched (see `inputs`): one line naming the file, row and column, exit 2 (3: missing offline)."""
    from gpt4allj_kit.train import inputs

    return inputs.check_inputs(plan_.config)


# --- what a launch writes and runs (lifecycle.py starts, follows and stops it) ----------------------


def write_config(plan_: LaunchPlan) -> Path:
    """The resolved config, written (atomically) where the planned command reads it."""
    header = (
        f"Resolved by gpt4allj-kit from {plan_.config_path} (profile {plan_.profile.name}) "
        "for the train.py --config of this directory's launch."
    )
    atomic_write_text(plan_.config_file, train_config_yaml(plan_.config, header))
    write_layout(plan_)
    return plan_.config_file


def write_layout(plan_: LaunchPlan) -> None:
    """The recipe's layout beside the config: the training compares itself with it on its exact rows and
    records where its steps read other rows (manifest and trace); what the plan foresaw is kept too."""
    from gpt4allj_kit.files import atomic_write_json
    from gpt4allj_kit.trace.layout import layout_json

    target = plan_.output_dir / LAYOUT_FILE
    if plan_.reference_layout is None:
        target.unlink(missing_ok=True)
        return
    atomic_write_json(
        target,
        {
            "reference": layout_json(plan_.reference_layout),
            "planned": plan_.layout_check.as_json() if plan_.layout_check else None,
        },
    )


def executable_argv(argv: list[str]) -> list[str]:
    """`argv` with `accelerate` resolved to the one beside this Python (no venv activation needed)."""
    import shutil
    import sys

    if argv and argv[0] == "accelerate":
        beside = Path(sys.executable).parent / "accelerate"
        found = str(beside) if beside.exists() else shutil.which("accelerate")
        if found is None:
            raise EnvironmentNotReady(
                "accelerate is not installed in this environment (see requirements/lock.txt)"
            )
        return [found, *argv[1:]]
    return argv
