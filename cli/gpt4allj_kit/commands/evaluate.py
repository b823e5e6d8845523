"""`gpt4allj-kit eval`: zero-shot with lm-evaluation-harness, or Self-Instruct perplexity."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gpt4allj_kit import paths
from gpt4allj_kit.commands.options import JsonOption, OutputOption, RevisionOption, console, err_console


class EvalSuite(StrEnum):
    common_sense = "common-sense"
    self_instruct = "self-instruct"


def eval_cmd(
    model: Annotated[
        str, typer.Option("--model", help="Model folder, training dir (each epoch_N, final) or hub repo.")
    ],
    revision: RevisionOption = None,
    tasks: Annotated[str, typer.Option("--tasks", help="common-sense or t1,t2.")] = "common-sense",
    batch_size: Annotated[str, typer.Option("--batch-size", help="auto or a positive integer.")] = "auto",
    limit: Annotated[int | None, typer.Option("--limit", help="Documents per task (testing only).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto, float32, bfloat16, float16.")] = "auto",
    output: OutputOption = None,
    fixtures: Annotated[
        Path | None, typer.Option("--fixtures", help="lm-eval include_path of local task fixtures (offline).")
    ] = None,
    lock: Annotated[Path | None, typer.Option("--lock", help="Fetch lock pinning task datasets.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="Output folder name for one model.")] = None,
    suite: Annotated[EvalSuite, typer.Option("--suite", help="Which evaluation.")] = EvalSuite.common_sense,
    data: Annotated[
        Path | None, typer.Option("--data", help="self-instruct: user_oriented_instructions.jsonl")
    ] = None,
    conditioned: Annotated[
        bool,
        typer.Option("--conditioned", help="self-instruct: score the response with the prompt in context."),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Evaluate zero-shot with lm-evaluation-harness, or Self-Instruct ground-truth perplexity.

    Writes OUTPUT/<label>/ for each model (default OUTPUT: outputs/eval).
    """
    from gpt4allj_kit.errors import ConfigError
    from gpt4allj_kit.evaluate import harness

    output = output or paths.default_output("eval")
    dtype = harness.check_dtype(dtype)
    device = harness.check_device(device)
    if suite is EvalSuite.self_instruct:
        if data is None:
            raise ConfigError("--suite self-instruct needs --data user_oriented_instructions.jsonl")
        sources = harness.resolve_models(model, revision=revision, label=label)
        mode = "conditioned" if conditioned else "faithful"
        _eval_self_instruct(sources, data, output, mode, device, dtype, json_out)
        return
    # The options are checked before a hub model is fetched.
    options = harness.EvalOptions(
        tasks=harness.parse_tasks(tasks),
        batch_size=harness.parse_batch_size(batch_size),
        limit=harness.check_limit(limit),
        device=device,
        dtype=dtype,
        include_path=fixtures.resolve() if fixtures else None,
        lock=lock,
        command=["gpt4allj-kit", *sys.argv[1:]],
    )
    sources = harness.resolve_models(model, revision=revision, label=label)
    # Bound to the terminal now: lm-eval's own stderr output is sent to a log file while it runs.
    with Console(file=sys.stderr).status("starting") as status:
        outcomes = harness.evaluate(sources, options, output, progress=lambda msg: status.update(msg))
    if json_out:
        console.print_json(data=[{"out_dir": str(o.out_dir), **o.summary} for o in outcomes])
        return
    _print_eval_tables(outcomes)


def _print_eval_tables(outcomes: list[Any]) -> None:
    from rich.table import Table

    for outcome in outcomes:
        table = Table(title=f"{outcome.label}: zero-shot (fractions; ± stderr)")
        for column in ("task", "acc", "acc_norm", "n"):
            table.add_column(column)
        for task, metrics in outcome.summary["tasks"].items():
            cells = [_metric_cell(metrics, name) for name in ("acc", "acc_norm")]
            n = (outcome.summary["n_samples"].get(task) or {}).get("effective", "")
            table.add_row(task, *cells, str(n))
        console.print(table)
        console.print(
            f"results: {outcome.out_dir}/ (results.json, summary.json, manifest.json)", highlight=False
        )


def _metric_cell(metrics: dict[str, Any], name: str) -> str:
    value = metrics.get(name)
    if value is None:
        return "-"
    stderr = metrics.get(f"{name}_stderr")
    return f"{value:.4f} ± {stderr:.4f}" if isinstance(stderr, int | float) else f"{value:.4f}"


def _eval_self_instruct(
    sources: list[Any], data: Path, output: Path, mode: str, device: str, dtype: str, json_out: bool
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from gpt4allj_kit.evaluate import selfinstruct

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console) as progress:
        bars: dict[str, Any] = {}

        def advance(label: str, done: int, total: int) -> None:
            if label not in bars:
                bars[label] = progress.add_task(f"{label} ({mode})", total=total)
            progress.update(bars[label], completed=done, total=total)

        summaries = selfinstruct.evaluate_models(
            sources,
            data,
            output,
            mode=mode,  # type: ignore[arg-type]
            device=device,
            dtype=dtype,
            command=["gpt4allj-kit", *sys.argv[1:]],
            progress=advance,
        )
    if json_out:
        console.print_json(data=summaries)
        return
    for s in summaries:
        mean = "-" if s["mean"] is None else f"{s['mean']:.3f}"
        median = "-" if s["median"] is None else f"{s['median']:.3f}"
        console.print(
            f"{s['label']}: self-instruct ground-truth perplexity, {s['mode']} mode, {s['count']} examples: "
            f"median {median}, mean {mean}, {s['above_100']} above 100, {s['nan_count']} NaN "
            f"-> {s['out_dir']}",
            highlight=False,
        )
