"""`gpt4allj-kit compare` and `report`: our numbers against the published table."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gpt4allj_kit.commands.options import AgainstOption, OutputOption, console
from gpt4allj_kit.errors import ExitCode


class CompareFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"
    html = "html"


def compare_cmd(
    results: Annotated[
        Path,
        typer.Argument(help="lm-eval results JSON (0.4 or 0.3 layout), the kit's summary.json, or a dir."),
    ],
    against: AgainstOption = None,
    fmt: Annotated[
        CompareFormat, typer.Option("--format", help="table (terminal), markdown, json or html.")
    ] = CompareFormat.table,
    output: OutputOption = None,
    fail_on_diff: Annotated[
        bool, typer.Option("--fail-on-diff", help="Exit 1 when a task cell differs.")
    ] = False,
    note: Annotated[str | None, typer.Option("--note", help="A note shown with the comparison.")] = None,
    not_comparable: Annotated[
        bool, typer.Option("--not-comparable", help="Mark the model as not comparable (a tiny/smoke model).")
    ] = False,
) -> None:
    """Compare our zero-shot numbers with a row of the published table, cell by cell, by our stderr.

    Printed, or written to the file --output with a manifest beside it.
    """
    from gpt4allj_kit.compare import compare_path
    from gpt4allj_kit.compare.stage import write_comparison
    from gpt4allj_kit.report import render
    from gpt4allj_kit.report.view import summary

    comparable = False if not_comparable else None
    if output is None:
        comparison = compare_path(results, against, note=note, comparable=comparable)
        if fmt is CompareFormat.table:
            console.print(render.comparison_renderable(comparison))
        else:
            sys.stdout.write(render.comparison_text(comparison, fmt.value))
    else:
        written = write_comparison(
            results,
            output,
            fmt=fmt.value,
            against=against,
            note=note,
            comparable=comparable,
            command=sys.argv,
        )
        comparison = written.comparison
        console.print(
            f"{comparison.ours_name} vs {comparison.against}: {summary(comparison)}"
            f"\nwrote {output} (manifest {written.manifest.name})",
            highlight=False,
        )
    if fail_on_diff and not comparison.reproduced:
        raise typer.Exit(int(ExitCode.RESULTS_DIFFER))


def report_cmd(
    run_dir: Annotated[
        Path | None, typer.Argument(help="A reproduce run dir, a training output dir or an eval dir.")
    ] = None,
    output: OutputOption = None,
    against: AgainstOption = None,
    published: Annotated[
        bool, typer.Option("--published", help="Print the published table (all rows, computed Avg) and exit.")
    ] = False,
) -> None:
    """Write a self-contained HTML report, a Markdown report and PNG charts about a run.

    They go to --output, by default RUN_DIR/report.
    """
    from gpt4allj_kit.errors import ConfigError
    from gpt4allj_kit.published import load_eval_stack, load_published_table
    from gpt4allj_kit.report import render

    if published:
        table = load_published_table()
        console.print(render.published_table_renderable(table, load_eval_stack(table)))
        return
    if run_dir is None:
        raise ConfigError("report needs RUN_DIR (or --published to print the published table)")
    from gpt4allj_kit.report.build import build_report
    from gpt4allj_kit.report.view import summary

    with console.status("building the report (charts, manifests)"):
        result = build_report(run_dir, output, against=against, command=sys.argv)
    console.print(f"{result.kind}: {run_dir}", highlight=False)
    for c in result.comparisons:
        console.print(f"  {c.ours_name} vs {c.against}: {summary(c)}", highlight=False)
    for item in result.missing:
        console.print(f"  missing: {item}", style="yellow", highlight=False)
    for path in (result.html, result.markdown, *result.pngs, result.manifest):
        console.print(f"wrote {path}", highlight=False)
