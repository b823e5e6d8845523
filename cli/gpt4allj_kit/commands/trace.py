"""`gpt4allj-kit trace`: the expected data trace of a config, computed without training or a GPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gpt4allj_kit import paths
from gpt4allj_kit.commands.options import (
    JsonOption,
    OutputOption,
    ProfileOption,
    RevisionOption,
    SetOption,
    console,
    err_console,
)

if TYPE_CHECKING:  # the command module stays light to import; the trace code is loaded when it runs
    from gpt4allj_kit.trace.expected import ExpectedTrace

_SHOWN_STEPS = 3


def trace_cmd(
    config: Annotated[Path | None, typer.Option("--config", help="Training config YAML.")] = None,
    revision: RevisionOption = None,
    profile: ProfileOption = paths.DEFAULT_PROFILE,
    num_processes: Annotated[
        int | None,
        typer.Option("--num-processes", min=1, help="Processes (default: the profile's, 8 for full)."),
    ] = None,
    accumulation: Annotated[
        int | None,
        typer.Option("--gradient-accumulation-steps", min=1, help="Accumulation (default: the config's)."),
    ] = None,
    rows: Annotated[
        int | None,
        typer.Option(
            "--rows",
            min=1,
            help="The data's row count, when it is not fetched: row numbers only, no content hashes.",
        ),
    ] = None,
    set_: SetOption = None,
    output: OutputOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which rows every optimizer step of a training will read (its split, sampler order, shards and
    accumulation), and a hash of their tokens when the data is at hand. --output writes it as JSON lines,
    in the shape of the trace.jsonl a training writes, with a manifest beside it."""
    from gpt4allj_kit.manifest import check_output, now_iso, write_output
    from gpt4allj_kit.trace.expected import TraceRequest, expected_trace

    started = now_iso()
    if output is not None:
        check_output(output)
    request = TraceRequest(
        config=config,
        revision=revision,
        profile=profile,
        num_processes=num_processes,
        accumulation=accumulation,
        sets=tuple(set_ or []),
        rows=rows,
    )
    trace = expected_trace(request)
    summary = _summary(trace, output)
    if output is not None:
        write_output(
            output,
            trace.text(),
            stage="trace",
            command=sys.argv,
            started=started,
            config=trace.config.model_dump(mode="json"),
            expected_trace={k: v for k, v in summary.items() if k not in ("config", "output")},
        )
    if as_json:
        console.print_json(json.dumps(summary))
        return
    _render(summary, trace)


def _summary(trace: ExpectedTrace, output: Path | None) -> dict[str, object]:
    header = trace.header()
    return {
        "config": {
            "dataset_path": trace.config.dataset_path,
            "revision": trace.config.revision,
            "seed": trace.config.seed,
            "shuffle": trace.config.shuffle,
            "epochs": trace.config.num_epochs,
        },
        "layout": trace.layout.describe(),
        "global_batch": trace.layout.global_batch,
        "data_rows": header["data_rows"],
        "train_rows": header["train_rows"],
        "dropped_rows": None if trace.train.dropped is None else len(trace.train.dropped),
        "steps_per_epoch": header["steps_per_epoch"],
        "total_steps": header["total_steps"],
        "content_hashes": trace.train.content,
        "source": trace.train.source,
        "recipe_layout": trace.reference.describe() if trace.reference else None,
        "against_recipe": trace.comparison.as_json() if trace.comparison else None,
        "seconds": {k: round(v, 3) for k, v in trace.seconds.items()},
        "output": str(output) if output else None,
    }


def _render(summary: dict[str, object], trace: ExpectedTrace) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="expected data trace", title_justify="left")
    table.add_column("")
    table.add_column("")
    dropped = summary["dropped_rows"]
    order = "shuffled, seed + epoch" if trace.config.shuffle else "the split's (unshuffled, as the recipe)"
    dropped_text = "rows with nothing to learn not known" if dropped is None else f"{dropped} dropped"
    content = "token hashes of every step" if trace.train.content else "row numbers only (data not at hand)"
    rows = [
        ("data", f"{trace.config.dataset_path}@{trace.config.revision}"),
        ("layout", f"{summary['layout']} = global batch {summary['global_batch']}"),
        ("order", order),
        ("rows", f"{summary['data_rows']} loaded, {summary['train_rows']} training ({dropped_text})"),
        ("steps", f"{summary['steps_per_epoch']} per epoch, {summary['total_steps']} in all"),
        ("content", content),
    ]
    if trace.comparison is not None:
        rows.append(("against the recipe", trace.comparison.summary()))
    elif trace.reference is not None:
        rows.append(("against the recipe", f"the recipe's layout ({trace.reference.describe()})"))
    seconds = trace.seconds
    rows.append(
        ("time", ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()) + f"; {sum(seconds.values()):.2f} s")
    )
    for key, value in rows:
        table.add_row(key, escape(value))
    console.print(table)
    for step in trace.steps[:_SHOWN_STEPS]:
        short = step.rows if len(step.rows) <= 80 else step.rows[:77] + "..."
        content = f" {step.batch_sha256[:16]}" if step.batch_sha256 else ""
        console.print(f"step {step.step}: {step.n_rows} rows {short}{content}", highlight=False, markup=False)
    if summary["output"]:
        err_console.print(f"written: {escape(str(summary['output']))}", highlight=False)
