"""`gpt4allj-kit compare` and `report`: our numbers against the published table."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gpt4allj_kit import paths
from gpt4allj_kit.commands.options import AgainstOption, OutputOption, console
from gpt4allj_kit.errors import ExitCode

if TYPE_CHECKING:  # the command module stays light to import
    from gpt4allj_kit.compare.paired import Settings


class CompareFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"
    html = "html"


def compare_cmd(
    results: Annotated[
        Path,
        typer.Argument(
            help="lm-eval results JSON (0.4 or 0.3 layout), the kit's summary.json, an eval dir, "
            "or a run dir (its eval/: where the gap comes from)."
        ),
    ],
    other: Annotated[
        Path | None,
        typer.Argument(
            help="A second eval folder or run dir: compare the two document by document (paired tests; "
            "two run dirs pair their evaluations by label).",
            show_default=False,
        ),
    ] = None,
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
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", min=0, help="Paired bootstrap seed (two evaluations; default: a fixed one, recorded)."
        ),
    ] = None,
) -> None:
    """Compare our zero-shot numbers with a row of the published table, cell by cell, by our stderr;
    given a run dir, split each checkpoint's gap into evaluation-stack and training drift; given two
    evaluations, compare them document by document (McNemar, paired bootstrap).

    Printed, or written to the file --output with a manifest beside it.
    """
    if other is not None:
        _refuse("not of two evaluations", against=against, note=note, not_comparable=not_comparable)
        _compare_paired(results, other, fmt, output, seed, fail_on_diff)
        return
    if (results / paths.EVAL_DIR).is_dir():
        _refuse(
            "not of a run dir (its gap)", note=note, not_comparable=not_comparable, fail_on_diff=fail_on_diff
        )
        _compare_run(results, against, fmt, output, seed)
        return
    if seed is not None:
        from gpt4allj_kit.errors import ConfigError

        raise ConfigError(
            "--seed applies to paired tests: of two evaluations (compare A B) or a run dir's gap"
        )
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


def _refuse(what: str, **options: object) -> None:
    """Options of the comparison with the published table that mean nothing for another kind."""
    from gpt4allj_kit.errors import ConfigError

    given = [f"--{name.replace('_', '-')}" for name, value in options.items() if value not in (None, False)]
    if given:
        raise ConfigError(f"{', '.join(given)}: only for a comparison with the published table, {what}")


def _paired_settings(seed: int | None) -> Settings:
    """The paired tests' settings: the default seed unless --seed gives one."""
    from gpt4allj_kit.compare.paired import Settings

    return Settings() if seed is None else Settings(seed=seed)


def _compare_run(
    run_dir: Path, against: str | None, fmt: CompareFormat, output: Path | None, seed: int | None
) -> None:
    from gpt4allj_kit.compare.attribution import attribute_run
    from gpt4allj_kit.compare.stage import write_run_attribution
    from gpt4allj_kit.report import render

    settings = _paired_settings(seed)
    if output is not None:
        written = write_run_attribution(
            run_dir, output, fmt=fmt.value, against=against, settings=settings, command=sys.argv
        )
        console.print(f"wrote {output} (manifest {written.manifest.name})", highlight=False)
        return
    with console.status("splitting the gap (paired tests against the re-evaluated release)"):
        attribution = attribute_run(run_dir, against=against, settings=settings)
    if fmt is CompareFormat.table:
        console.print(render.attribution_renderable(attribution))
    else:
        sys.stdout.write(render.attribution_text(attribution, fmt.value))


def _compare_paired(
    a: Path, b: Path, fmt: CompareFormat, output: Path | None, seed: int | None, fail_on_diff: bool
) -> None:
    from gpt4allj_kit.compare.paired import compare_runs
    from gpt4allj_kit.compare.stage import write_paired
    from gpt4allj_kit.report import render
    from gpt4allj_kit.report.view import paired_summary

    settings = _paired_settings(seed)
    if output is None:
        with console.status("comparing document by document"):
            pairs = compare_runs(a, b, settings=settings)
        if fmt is CompareFormat.table:
            console.print(render.paired_renderable(pairs))
        else:
            sys.stdout.write(render.paired_text(pairs, fmt.value))
    else:
        written = write_paired(a, b, output, fmt=fmt.value, settings=settings, command=sys.argv)
        pairs = written.pairs
        for p in pairs:
            console.print(f"A: {p.a_label} vs B: {p.b_label}: {paired_summary(p)}", highlight=False)
        console.print(f"wrote {output} (manifest {written.manifest.name})", highlight=False)
    if fail_on_diff and any(p.differing or p.average.verdict == "differs" for p in pairs):
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
