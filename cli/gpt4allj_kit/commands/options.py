"""The consoles and the options several commands share, each declared once with one default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gpt4allj_kit.recipe import DEFAULT_REVISION, REVISIONS

console = Console()
err_console = Console(stderr=True)

# None means "the revision the config or the stage implies": DEFAULT_REVISION for the GPT4All-J data and
# training (unless a config names one), the repo's main branch for another model's evaluation.
RevisionOption = Annotated[
    str | None,
    typer.Option(
        "--revision",
        help=f"Hub revision: {', '.join(REVISIONS)} or a commit sha "
        f"(default: the config's, else {DEFAULT_REVISION}; eval of another repo: its main).",
    ),
]
ProfileOption = Annotated[
    str,
    typer.Option(
        "--profile", help="full (the published recipe), smoke (tiny, CPU, offline) or a profile YAML."
    ),
]
# None means the command's own place, named in its help.
OutputOption = Annotated[Path | None, typer.Option("--output", help="Where to write (default: see above).")]
AgainstOption = Annotated[
    str | None,
    typer.Option(
        "--against",
        help="Published row to compare with: its name, an alias or a revision (e.g. v1.2-jazzy, base). "
        f"Default: the row of the evaluated model (model+revision), else {DEFAULT_REVISION}. "
        "The report compares only a directory without compare/ results; it reads those.",
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set key=value (repeatable, validated)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
