"""`gpt4allj-kit reproduce` and `status`: every stage in one resumable run directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gpt4allj_kit import paths
from gpt4allj_kit.commands.options import (
    AgainstOption,
    JsonOption,
    OutputOption,
    ProfileOption,
    RevisionOption,
    SetOption,
    console,
    err_console,
)
from gpt4allj_kit.errors import ExitCode
from gpt4allj_kit.recipe import DEFAULT_REVISION


def reproduce_cmd(
    revision: RevisionOption = None,
    profile: ProfileOption = paths.DEFAULT_PROFILE,
    skip_train: Annotated[
        bool, typer.Option("--skip-train", help="Evaluate the published checkpoint of the revision only.")
    ] = False,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="Also evaluate base GPT-J and the published checkpoint.")
    ] = False,
    output: OutputOption = None,
    against: AgainstOption = None,
    fail_on_diff: Annotated[
        bool, typer.Option("--fail-on-diff", help="Exit 1 when a comparable cell differs beyond 2 stderr.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Run even when the doctor says it cannot.")] = False,
    set_: SetOption = None,
    json_out: JsonOption = False,
) -> None:
    """doctor → fetch → train → eval → compare → report, in one resumable run directory.

    The run directory is --output, by default outputs/reproduce/PROFILE-REVISION.
    """
    from gpt4allj_kit import reproduce as pipeline

    request = pipeline.ReproduceRequest(
        revision=revision or DEFAULT_REVISION,
        profile=profile,
        output=output,
        skip_train=skip_train,
        baseline=baseline,
        force=force,
        against=against,
        sets=tuple(set_ or ()),
        command=" ".join(["gpt4allj-kit", *sys.argv[1:]]),
    )
    run_dir = request.run_dir()
    if not json_out:
        err_console.print(f"run directory: {run_dir}", highlight=False, soft_wrap=True)
    try:
        state = _run_with_progress(pipeline, request, quiet=json_out)
    finally:
        if not json_out and pipeline.state_path(run_dir).exists():
            console.print(_stage_table(pipeline.load_state(run_dir), run_dir))
    if json_out:
        console.print_json(state.model_dump_json())
    else:
        console.print(f"report: {run_dir / paths.REPORT_DIR / 'report.html'}", highlight=False)
    if fail_on_diff and pipeline.differs(run_dir):
        raise typer.Exit(int(ExitCode.RESULTS_DIFFER))


def _run_with_progress(pipeline: Any, request: Any, *, quiet: bool) -> Any:
    """Runs the pipeline with a live progress bar per stage on a terminal, plain lines otherwise."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if quiet:
        return pipeline.reproduce(request)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[stage]:<8}[/]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    tasks: dict[str, Any] = {}

    def started(name: str) -> None:
        tasks[name] = progress.add_task("", stage=name, total=None)
        if not err_console.is_terminal:
            err_console.print(f"[{name}] started", highlight=False, markup=False)

    def ended(name: str, state: Any) -> None:
        record = state.stage(name)
        progress.remove_task(tasks.pop(name))
        err_console.print(
            f"[{name}] {record.status} in {record.seconds or 0:.0f}s"
            + (f": {record.key}" if record.key else "")
            + (f" ({record.detail})" if record.detail and record.status == "failed" else ""),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

    def advance(message: str, done: float | None, total: float | None) -> None:
        if not tasks:
            return
        task = next(reversed(tasks.values()))
        progress.update(task, description=message[-60:], completed=done or 0, total=total)

    with progress:
        return pipeline.reproduce(
            request, pipeline.Hooks(stage_started=started, stage_ended=ended, progress=advance)
        )


def _stage_table(state: Any, run_dir: Path) -> Any:
    from rich.table import Table

    table = Table(title=f"{state.profile} reproduction of {state.revision}")
    for column in ("stage", "status", "time", "key number", "path"):
        table.add_column(column)
    colours = {"done": "green", "skipped": "cyan", "failed": "red", "interrupted": "red", "running": "yellow"}
    for record in state.stages.values():
        colour = colours.get(record.status, "white")
        seconds = f"{record.seconds:.0f}s" if record.seconds is not None else ""
        where = record.path or ""
        with_root = Path(where)
        shown = str(with_root.relative_to(run_dir)) if where and with_root.is_relative_to(run_dir) else where
        table.add_row(record.name, f"[{colour}]{record.status}[/]", seconds, record.key or "", shown)
    return table


def status_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A reproduction run directory.")],
    json_out: JsonOption = False,
) -> None:
    """Show each stage of a reproduction run: status, time, key number, path."""
    from gpt4allj_kit.runstate import load_state

    state = load_state(run_dir.resolve())
    if json_out:
        console.print_json(state.model_dump_json())
        return
    console.print(_stage_table(state, run_dir.resolve()))
    for record in state.stages.values():
        if record.status in ("failed", "interrupted") and record.detail:
            err_console.print(f"[red]{record.name}:[/] {record.detail}", highlight=False, soft_wrap=True)
