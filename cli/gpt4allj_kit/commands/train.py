"""`gpt4allj-kit train`: the documented launch, here or on a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gpt4allj_kit import paths
from gpt4allj_kit.commands.options import ProfileOption, RevisionOption, SetOption, console, err_console
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
        str | None, typer.Option("--padding", help="faithful (pad to max_length, default) or dynamic.")
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
) -> None:
    """Build the documented `accelerate launch ... train.py` command, check this machine, and run it."""
    from gpt4allj_kit.errors import ConfigError

    if launcher not in ("local", "slurm", "accelerate"):
        raise ConfigError(f"--launcher {launcher!r}: expected local, slurm or accelerate")
    if padding is not None and padding not in ("faithful", "dynamic"):
        raise ConfigError(f"--padding {padding!r}: expected faithful or dynamic")
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
    )
    plan = train_launch.plan(request)
    if launcher != "local":
        _train_on_cluster(
            plan, launcher, nodes, partition, container_image, hostfile, main_process_ip, submit
        )
        return
    for note in plan.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
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
    readiness = train_launch.preflight(plan, force=force)
    for reason in readiness.reasons:
        err_console.print(f"[yellow]preflight (forced):[/] {reason}", highlight=False, soft_wrap=True)
    result = train_launch.run(plan)
    if code := result.returncode:
        err_console.print(f"[bold red]error:[/] training exited with code {code}", highlight=False)
        raise typer.Exit(code)
    console.print(f"training done: {result.output_dir} (last step {result.last_step})")


def _train_on_cluster(
    plan: Any,
    launcher: str,
    nodes: int,
    partition: str | None,
    container_image: str | None,
    hostfile: Path | None,
    main_process_ip: str | None,
    submit: bool,
) -> None:
    """Writes (and with --submit, submits) the multi-node launch; the cluster module builds it."""
    from gpt4allj_kit import cluster

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
