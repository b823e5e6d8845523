"""`gpt4allj-kit verify-run RUN_DIR`: a training checked against its recipe, rule by rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gpt4allj_kit.commands.options import JsonOption, console
from gpt4allj_kit.errors import ExitCode


def verify_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A reproduce run dir or a training's output dir.")],
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            help="auto (tiny runs: smoke, else gpt4all-j, the documented recipe of the run's revision), "
            "a recipe in configs/verify/, or a rules YAML.",
        ),
    ] = "auto",
    against: Annotated[
        Path | None,
        typer.Option("--against", help="Another run: compare the data trace with its trace, step by step."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a finished or running training against its recipe: pass / differs / cannot tell per rule.
    Exit 1 when a rule differs."""
    from gpt4allj_kit.report.render import verification_renderable
    from gpt4allj_kit.verify.run import verify_run

    result = verify_run(run_dir, recipe=recipe, against=against)
    if as_json:
        console.print_json(json.dumps(result.as_json()))
    else:
        console.print(verification_renderable(result))
    if result.differs:
        raise typer.Exit(int(ExitCode.RESULTS_DIFFER))
