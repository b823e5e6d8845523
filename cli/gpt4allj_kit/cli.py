"""`gpt4allj-kit`: the commands, registered in one place, and the one table of errors to exit codes.

The pipeline reads top to bottom: fetch → train → eval → compare → report, and `reproduce` runs them all.
Each command lives in `commands/`; it parses options, calls one library function and renders the result.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from gpt4allj_kit import __version__
from gpt4allj_kit.commands import assets, compare, config, doctor, evaluate, export, fetch, reproduce, train
from gpt4allj_kit.commands import trace as trace_command
from gpt4allj_kit.commands import verify as verify_command
from gpt4allj_kit.commands.options import console, err_console
from gpt4allj_kit.errors import ExitCode, KitError
from gpt4allj_kit.files import path_error
from gpt4allj_kit.redaction import redact

DEBUG_ENV = "GPT4ALLJ_KIT_DEBUG"

app = typer.Typer(
    name="gpt4allj-kit",
    help="Reproduce GPT4All-J training and evaluation, pinned and proven.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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


app.command("doctor")(doctor.doctor_cmd)
app.command("config")(config.config_cmd)
app.command("assets")(assets.assets_cmd)
app.command("fetch")(fetch.fetch_cmd)
app.command("train")(train.train_cmd)
app.command("export")(export.export_cmd)
app.command("trace")(trace_command.trace_cmd)
app.command("verify-run")(verify_command.verify_cmd)
app.command("eval")(evaluate.eval_cmd)
app.command("compare")(compare.compare_cmd)
app.command("report")(compare.report_cmd)
app.command("reproduce")(reproduce.reproduce_cmd)
app.command("status")(reproduce.status_cmd)


def _usage_message(exc: BaseException) -> str | None:
    """Click's own usage text (it prints itself, with the command's usage line)."""
    show = getattr(exc, "show", None)
    if callable(show):
        show()
        return None
    return f"[bold red]error:[/] {exc.format_message()}"  # type: ignore[attr-defined]


def _internal_message(exc: BaseException) -> str:
    detail = redact(f"{type(exc).__name__}: {exc}")
    return f"[bold red]internal error:[/] {detail} (set {DEBUG_ENV}=1 for the traceback)"


# Every way a command can end, most specific first: (exception, exit code, the line to print or None).
# Typer (0.29+) carries its own copy of click: its usage errors are TyperExceptions.
ERROR_EXITS: tuple[
    tuple[type[BaseException], Callable[[BaseException], int], Callable[..., str | None]], ...
] = (
    (KitError, lambda e: int(e.exit_code), lambda e: f"[bold red]error:[/] {redact(e.message)}"),
    (typer.Exit, lambda e: e.exit_code, lambda _e: None),
    (typer.Abort, lambda _e: ExitCode.INTERRUPTED, lambda _e: "[bold red]aborted[/]"),
    (KeyboardInterrupt, lambda _e: ExitCode.INTERRUPTED, lambda _e: "[bold red]interrupted[/]"),
    (typer.exceptions.TyperException, lambda _e: ExitCode.USAGE, _usage_message),
    (Exception, lambda _e: ExitCode.INTERNAL, _internal_message),
)


def exit_for(exc: BaseException) -> tuple[int, str | None]:
    """The exit code of `exc` and the one line that tells the user (None: already said)."""
    # An OSError on a path that no stage turned into a KitError (a file in the way, a read-only dir) is
    # still the user's to fix: the same mapping as the kit's own writes, naming the path.
    if isinstance(exc, OSError) and (known := path_error(exc)) is not None:
        exc = known
    for kind, code, message in ERROR_EXITS:
        if isinstance(exc, kind):
            return int(code(exc)), message(exc)
    raise exc


def _deepspeed_logs_to_stderr() -> None:
    """DeepSpeed's logger writes to stdout (imported by transformers too), which corrupts `--json` output.

    Its handler is made at import time, whenever that happens, so the logger's `addHandler` is wrapped
    to point a stdout handler at stderr instead.
    """
    logger = logging.getLogger("DeepSpeed")
    add = logger.addHandler

    def add_to_stderr(handler: logging.Handler) -> None:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
        add(handler)

    logger.addHandler = add_to_stderr  # type: ignore[method-assign]


def _interrupt_on_sigterm() -> None:
    """`docker stop` and schedulers send SIGTERM, a closed terminal SIGHUP: treat them as Ctrl-C, so that a
    launched training is stopped gracefully too (see train/lifecycle.py)."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)


def main() -> None:
    """Console-script entry: every ending becomes its exit code and at most one line."""
    _deepspeed_logs_to_stderr()
    _interrupt_on_sigterm()
    try:
        # Without standalone mode click returns the code of typer.Exit instead of exiting itself.
        code = app(standalone_mode=False)
    except SystemExit:
        raise
    except BaseException as exc:
        code, line = exit_for(exc)
        if code == ExitCode.INTERNAL and os.environ.get(DEBUG_ENV):
            raise
        if line:
            err_console.print(line, highlight=False, soft_wrap=True)
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
