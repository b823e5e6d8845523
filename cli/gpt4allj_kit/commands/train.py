"""`gpt4allj-kit train`: the documented launch, here or on a cluster."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from gpt4allj_kit import paths
from gpt4allj_kit.commands.options import ProfileOption, RevisionOption, SetOption, console, err_console
from gpt4allj_kit.errors import ExitCode
from gpt4allj_kit.recipe import REFERENCE_GLOBAL_BATCH


def train_cmd(
    revision: RevisionOption = None,
    config: Annotated[Path | None, typer.Option("--config", help="Training config YAML.")] = None,
    profile: ProfileOption = paths.DEFAULT_PROFILE,
    num_processes: Annotated[
        int | None,
        typer.Option("--num-processes", min=1, help="Processes (GPUs); default: detected GPUs."),
    ] = None,
    keep_global_batch: Annotated[
        bool,
        typer.Option(
            "--keep-global-batch",
            help=f"Raise gradient accumulation to keep the global batch {REFERENCE_GLOBAL_BATCH}.",
        ),
    ] = False,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Resume: 'latest' or a step_N directory.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the command and hyperparameters only.")
    ] = False,
    lora: Annotated[
        bool, typer.Option("--lora", help="Train a LoRA adapter (peft) instead of all weights.")
    ] = False,
    padding: Annotated[
        str | None,
        typer.Option(
            "--padding",
            help="faithful (pad to max_length, default), dynamic, bucketed or packed (same losses, "
            "fewer padding cells; see README).",
        ),
    ] = None,
    set_: SetOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Launch even when the preflight says it cannot run.")
    ] = False,
    launcher: Annotated[
        str,
        typer.Option("--launcher", help="local (run here), slurm (sbatch script), accelerate (per host)."),
    ] = "local",
    nodes: Annotated[
        int, typer.Option("--nodes", min=1, help="Machines (slurm / accelerate launchers).")
    ] = 1,
    gpus_per_node: Annotated[
        int | None, typer.Option("--gpus-per-node", help="Processes per machine.")
    ] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="Slurm partition.")] = None,
    container_image: Annotated[
        str | None, typer.Option("--container-image", help="Run inside this image (Slurm pyxis).")
    ] = None,
    hostfile: Annotated[
        Path | None, typer.Option("--hostfile", help="Hosts, one per line (first is main).")
    ] = None,
    main_process_ip: Annotated[
        str | None, typer.Option("--main-process-ip", help="Address of machine rank 0.")
    ] = None,
    submit: Annotated[bool, typer.Option("--submit", help="Submit the written sbatch script.")] = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", help="Run in the background (output: OUTPUT_DIR/launch.log); re-run to follow it."
        ),
    ] = False,
    force_new: Annotated[
        bool,
        typer.Option(
            "--force-new", help="Start afresh over an earlier training: it is moved to OUTPUT_DIR.previous-N."
        ),
    ] = False,
    burn_in: Annotated[
        int | None,
        typer.Option(
            "--burn-in",
            metavar="N",
            help="Time N optimizer steps of this launch (OUTPUT_DIR/burn-in/) and project the run's time.",
        ),
    ] = None,
) -> None:
    """Build the documented `accelerate launch ... train.py` command, check this machine, and run it.

    The training stops when this command ends (Ctrl-C, a closed terminal, kill), resumable with
    --resume latest; --detach runs it in the background instead.
    """
    from gpt4allj_kit.config import PADDING_MODES
    from gpt4allj_kit.errors import ConfigError

    if launcher not in ("local", "slurm", "accelerate"):
        raise ConfigError(f"--launcher {launcher!r}: expected local, slurm or accelerate")
    if launcher != "local" and detach:
        raise ConfigError(f"--detach runs a training here: not with --launcher {launcher}")
    if padding is not None and padding not in PADDING_MODES:
        raise ConfigError(f"--padding {padding!r}: expected {', '.join(PADDING_MODES)}")
    if burn_in is not None:
        _check_burn_in_options(launcher=launcher, dry_run=dry_run, detach=detach, force_new=force_new)
    from rich.table import Table

    from gpt4allj_kit.train import launch as train_launch

    request = train_launch.TrainRequest(
        revision=revision,
        config=config,
        profile=profile,
        num_processes=gpus_per_node if launcher != "local" and gpus_per_node else num_processes,
        keep_global_batch=keep_global_batch,
        resume=resume,
        lora=lora,
        padding=padding,
        sets=list(set_ or []),
        burn_in=burn_in,
    )
    plan = train_launch.plan(request)
    if burn_in is not None:
        _burn_in_here(plan, force=force)
        return
    if launcher != "local":
        _train_on_cluster(
            plan, launcher, nodes, partition, container_image, hostfile, main_process_ip, submit, force_new
        )
        return
    attach = False
    if not dry_run:
        from gpt4allj_kit.train import lifecycle

        live = lifecycle.live_launch(plan.output_dir)
        attach = live is not None and live.detached
        if not attach:
            lifecycle.check_output_dir(plan, force_new=force_new)  # refused before anything is printed
    _show_notes(plan.notes)
    if not attach:
        # Model, tokenizer and data rows, checked before anything is launched (one line when one is bad).
        _show_notes(train_launch.check_inputs(plan).notes)
    console.print(plan.shell(), highlight=False, soft_wrap=True, markup=False)
    if dry_run:
        import yaml

        header = f"{plan.config_file} (written at launch) = {plan.config_path} with:"
        console.print(header, highlight=False, soft_wrap=True)
        changes = yaml.safe_dump(plan.changes, sort_keys=False, width=1_000_000) if plan.changes else "{}\n"
        for line in changes.splitlines():
            console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
        table = Table(title=f"effective hyperparameters (profile {plan.profile.name})")
        table.add_column("setting")
        table.add_column("value")
        for key, value in plan.hyper.rows():
            table.add_row(key, value)
        console.print(table)
        return
    if not attach:  # a training running in the background already passed its preflight
        readiness = train_launch.preflight(plan, force=force)
        for reason in readiness.reasons:
            err_console.print(f"[yellow]preflight (forced):[/] {reason}", highlight=False, soft_wrap=True)
    _run_here(plan, detach=detach, force_new=force_new)


def _check_burn_in_options(*, launcher: str, dry_run: bool, detach: bool, force_new: bool) -> None:
    """The options a burn-in cannot take: it runs here, now, into a folder of its own."""
    from gpt4allj_kit.errors import ConfigError

    refused = [
        name
        for name, given in (
            (f"--launcher {launcher}", launcher != "local"),
            ("--dry-run", dry_run),
            ("--detach", detach),
            ("--force-new", force_new),
        )
        if given
    ]
    if refused:
        raise ConfigError(f"--burn-in runs timed steps here, into a folder of its own: not with {refused[0]}")


def _burn_in_here(plan: Any, *, force: bool) -> None:
    """Runs the burn-in's launch (checked as a training's) and renders what it measured."""

    from gpt4allj_kit.errors import EnvironmentNotReady
    from gpt4allj_kit.train import burnin, lifecycle
    from gpt4allj_kit.train import launch as train_launch

    if (live := lifecycle.live_launch(plan.output_dir)) is not None:
        raise EnvironmentNotReady(f"a burn-in into {plan.output_dir} is still running (pid {live.pid})")
    _show_notes(plan.notes)
    _show_notes(train_launch.check_inputs(plan).notes)
    console.print(plan.shell(), highlight=False, soft_wrap=True, markup=False)
    for reason in train_launch.preflight(plan, force=force).reasons:
        err_console.print(f"[yellow]preflight (forced):[/] {reason}", highlight=False, soft_wrap=True)
    burnin.prepare_folder(plan.output_dir)
    result = lifecycle.follow(lifecycle.start(plan), _write_output)
    if result.interrupted:
        err_console.print("burn-in interrupted; nothing to resume: run it again", highlight=False)
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    _exit_if_failed(result, "the burn-in")
    _render_burn_in(burnin.read_result(plan.output_dir), plan.output_dir)


def _render_burn_in(result: dict[str, Any], folder: Path) -> None:
    """The burn-in's measurements as a table, then the run's projected time in one line."""
    from rich.table import Table

    throughput, steps, run = result["throughput"], result["step_seconds"], result["run"]
    layout, mfu, evaluation, saves = result["layout"], result["mfu"], result["evaluation"], result["saves"]
    table = Table(
        title=f"burn-in: {result['timed_steps']} timed steps after {result['warmup_steps']} warm-up"
    )
    table.add_column("measure")
    table.add_column("value")
    rows = [
        ("model", f"{result['model']['name']} ({result['model']['parameters']:,} parameters)"),
        (
            "layout",
            f"{layout['num_processes']} processes x batch {layout['batch_size']} x accumulation "
            f"{layout['gradient_accumulation_steps']}, max_length {layout['max_length']}, "
            f"{layout['padding']} padding, precision {layout['mixed_precision']}",
        ),
        ("step time", f"mean {steps['mean']:.3f} s, median {steps['median']:.3f} s"),
        ("tokens/s per device", f"{throughput['tokens_per_s_per_device']:,.0f}"),
        ("non-pad tokens/s per device", f"{throughput['nonpad_tokens_per_s_per_device']:,.0f}"),
        *((f"peak memory, process {d['process']} ({d['device']})", _memory(d)) for d in result["devices"]),
        ("MFU (tokens computed)", _percent(mfu["tokens"], mfu)),
        ("MFU (non-pad tokens)", _percent(mfu["nonpad_tokens"], mfu)),
        ("validation pass", f"{evaluation['seconds_per_pass']:.2f} s ({evaluation['method']})"),
        (
            "one save",
            f"state {saves['state_seconds']:.2f} s, weights {saves['weights_seconds']:.2f} s",
        ),
        (
            "the run",
            f"{run['steps']} optimizer steps, {run['evaluations']} validation passes, {run['state_saves']} "
            f"step_N/ states, {run['weight_saves']} weight saves",
        ),
    ]
    for measure, value in rows:
        table.add_row(measure, value)
    console.print(table)
    if result.get("note"):
        console.print(result["note"], highlight=False, markup=False)
    projected = {key: _duration(value) for key, value in result["projection"].items() if key != "formula"}
    console.print(
        f"projected run: {projected['total_seconds']} = steps {projected['steps_seconds']} + validation "
        f"{projected['evaluations_seconds']} + saves {projected['saves_seconds']} "
        f"({folder / paths.BURN_IN})",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


def _memory(device: dict[str, Any]) -> str:
    peak = device["peak_with_evaluation_and_saves"]
    if "allocated_bytes" in peak:
        allocated, reserved = peak["allocated_bytes"] / 2**30, peak["reserved_bytes"] / 2**30
        return f"{allocated:.1f} GiB allocated, {reserved:.1f} GiB reserved"
    return f"{peak['rss_bytes'] / 2**30:.2f} GiB resident (process peak)"


def _percent(value: Any, mfu: dict[str, Any]) -> str:
    if not isinstance(value, int | float):
        return f"unknown ({mfu['device']} has no peak in the table)"
    return f"{value:.1%} of {mfu['peak_tflops']:g} TFLOP/s ({mfu['device']})"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 60 else f"{int(minutes // 60)} h {int(minutes % 60):02d} min"


def _run_here(plan: Any, *, detach: bool, force_new: bool) -> None:
    """Starts the launch (or attaches to the detached one running into its output dir) and follows it."""
    from rich.markup import escape

    from gpt4allj_kit.train import lifecycle

    training = lifecycle.start(plan, detach=detach, force_new=force_new)
    if training.moved_aside is not None:
        err_console.print(
            f"[yellow]note:[/] the earlier training was moved to {escape(str(training.moved_aside))}",
            highlight=False,
            soft_wrap=True,
        )
    if training.attached:
        err_console.print(
            f"attached to the training running in the background into {plan.output_dir} (pid "
            f"{training.pid}); Ctrl-C stops following it, not the training",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    elif training.detached:
        console.print(
            f"training in the background (pid {training.pid}), output in {training.log_file}: re-run this "
            f"command to follow it; `kill {training.pid}` stops it (resumable)",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        return
    progress = _StepLines(plan.hyper.total_steps) if training.attached else None
    result = lifecycle.follow(training, _write_output, progress)
    _render(result, attached=training.attached)


def _write_output(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


class _StepLines:
    """Progress of a followed background training, from its metrics: a line at most every 10 s."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.shown_at: float | None = None

    def __call__(self, step: int | None) -> None:
        if step is None or (self.shown_at is not None and time.monotonic() - self.shown_at < 10):
            return
        self.shown_at = time.monotonic()
        of = f" of {self.total}" if self.total else ""
        err_console.print(f"step {step}{of}", highlight=False)


def resume_command(argv: list[str], *, fresh: bool = False) -> str:
    """The command line that continues this one (`--resume latest`), or restarts it (`--force-new`)."""
    import shlex

    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not (arg.startswith("--resume=") or arg in ("--force-new", "--detach")):
            kept.append(arg)
    return shlex.join(["gpt4allj-kit", *kept, *(["--force-new"] if fresh else ["--resume", "latest"])])


def _render(result: Any, *, attached: bool) -> None:
    """The one line that ends a followed training, and its exit code."""

    at = f"at step {result.last_step}" if result.last_step is not None else "before its first step"
    if result.interrupted and attached:
        err_console.print(
            f"stopped following {at}; the training goes on in the background (pid {result.pid}): re-run "
            f"this command to follow it, `kill {result.pid}` to stop it",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    if result.interrupted:
        saved = result.saved
        then = (
            f"resume with: {resume_command(sys.argv[1:])}"
            if saved
            else f"nothing saved yet; start again with: {resume_command(sys.argv[1:], fresh=True)}"
        )
        err_console.print(f"interrupted {at}; {then}", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    _exit_if_failed(result, "training")
    console.print(f"training done: {result.output_dir} (last step {result.last_step})")


def _show_notes(notes: list[str]) -> None:
    from rich.markup import escape

    for note in notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


def _train_on_cluster(
    plan: Any,
    launcher: str,
    nodes: int,
    partition: str | None,
    container_image: str | None,
    hostfile: Path | None,
    main_process_ip: str | None,
    submit: bool,
    force_new: bool,
) -> None:
    """Writes (and with --submit, submits) the multi-node launch; the cluster module builds it."""
    from rich.markup import escape

    from gpt4allj_kit import cluster
    from gpt4allj_kit.train import lifecycle

    # The job would append to an earlier training's metrics and overwrite its states, as a local one would.
    if (moved := lifecycle.make_room(plan, force_new=force_new)) is not None:
        err_console.print(
            f"[yellow]note:[/] the earlier training was moved to {escape(str(moved))}",
            highlight=False,
            soft_wrap=True,
        )

    request = cluster.ClusterRequest(
        launcher=launcher,  # type: ignore[arg-type]
        nodes=nodes,
        gpus_per_node=plan.hyper.num_processes,
        partition=partition,
        container_image=container_image,
        hostfile=hostfile,
        main_process_ip=main_process_ip,
        main_process_port=29500,
        job_name=f"gpt4allj-{plan.profile.name}",
        output_dir=plan.output_dir,
        cpu=plan.launch.cpu,
    )
    written = cluster.write_launch(request, plan)
    console.print(f"training config: {written.config_file}", highlight=False, soft_wrap=True)
    if launcher == "slurm":
        console.print(f"sbatch script: {written.script}")
        if submit:
            console.print(f"submitted Slurm job {cluster.submit(written.script)}")
        return
    for argv in written.host_commands:
        console.print(cluster.shell_command(argv), highlight=False, soft_wrap=True, markup=False)
    console.print(f"per-host script: {written.script}")


def _exit_if_failed(result: Any, what: str) -> None:
    """A launch that ended with a non-zero code: one line naming its log, and the same exit code."""
    from rich.markup import escape

    if code := result.returncode:
        err_console.print(
            f"[bold red]error:[/] {what} exited with code {code} (log: {escape(str(result.log_file))})",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code)
