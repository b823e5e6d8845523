"""`gpt4allj-kit`: a thin Typer layer over the stage modules; it parses, calls, and renders with rich.

Exit codes, shared by every command: 0 ok, 1 results differ (only when asked to fail on it), 2 usage or
config error, 3 this environment cannot run it, 4 internal error (a bug), 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gpt4allj_kit import __version__
from gpt4allj_kit.errors import ExitCode, KitError

app = typer.Typer(
    name="gpt4allj-kit",
    help="Reproduce GPT4All-J training and evaluation, pinned and proven.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

INTERNAL_ERROR = 4
DEBUG_ENV = "GPT4ALLJ_KIT_DEBUG"

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set key=value (repeatable, validated)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _version(value: bool) -> None:
    if value:
        console.print(f"gpt4allj-kit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Reproduce GPT4All-J training and evaluation, pinned and proven."""


# --- config -----------------------------------------------------------------------------------------


@app.command("config")
def config_cmd(
    config: Annotated[Path | None, typer.Option("--config", help="Training config YAML.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Apply a profile's overrides.")] = None,
    set_: SetOption = None,
    json_out: JsonOption = False,
) -> None:
    """Validate a training config (with profile and --set overrides) and print it resolved."""
    from gpt4allj_kit.config import load_profile, load_train_config

    base = load_profile(profile).train if profile else None
    resolved = load_train_config(config, set_, base_overrides=base)
    if json_out:
        console.print_json(resolved.model_dump_json())
        return
    from rich.table import Table

    table = Table(title=f"resolved training config ({config or 'configs/train/finetune_gptj.yaml'})")
    table.add_column("key")
    table.add_column("value")
    for key, value in resolved.model_dump().items():
        table.add_row(key, repr(value))
    console.print(table)


# --- doctor -----------------------------------------------------------------------------------------

# --- assets -----------------------------------------------------------------------------------------

# --- fetch ------------------------------------------------------------------------------------------

# --- train ------------------------------------------------------------------------------------------

# --- eval -------------------------------------------------------------------------------------------

# --- compare / report -------------------------------------------------------------------------------

# --- reproduce / status -----------------------------------------------------------------------------


def main() -> None:
    """Console-script entry: expected failures become one line and their exit code."""
    try:
        # Without standalone mode click returns the code of typer.Exit instead of exiting itself.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except KitError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(int(exc.exit_code))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("[bold red]aborted[/]")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(ExitCode.USAGE)
        if os.environ.get(DEBUG_ENV):
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(INTERNAL_ERROR)


if __name__ == "__main__":
    main()
