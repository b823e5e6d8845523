"""Our zero-shot numbers against a row of the published table, cell by cell, judged by our stderr.

A cell is `reproduced` when |ours - report| <= 2 * our stderr (percent points), `differs` otherwise. The
report's metric is used per column (acc_norm for PIQA, HellaSwag, ARC-e, ARC-c, OBQA; acc for BoolQ and
WinoGrande). The average is computed, never copied; its stderr assumes the seven tasks' errors are
independent: sqrt(sum of squared stderrs) / 7.

Inputs: lm-eval's results JSON (0.4.x layout with "acc,none" keys, or the 0.3 layout with "acc" keys), the
kit's `summary.json`, or a directory holding one of them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.published import Column, PublishedTable, Row, average, load_published_table
from gpt4allj_kit.recipe import DEFAULT_REVISION

SUMMARY_NAME = "summary.json"
RESULTS_NAME = "results.json"
NOT_COMPARABLE_NOTE = "a tiny random model is not comparable with the published numbers"
SIGMAS = 2.0
RULE = (
    "reproduced when |Δ| ≤ 2·stderr (our stderr, percent points), differs otherwise; the average's stderr "
    "is sqrt(Σ stderr²)/7, assuming the seven tasks' errors are independent"
)
# Floating-point slack so that a difference of exactly 2·stderr still counts as reproduced.
_EPS = 1e-9

Layout = Literal["lm-eval 0.4", "lm-eval 0.3", "kit summary"]
Verdict = Literal["reproduced", "differs"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Score(_Model):
    """One task's number as lm-eval reported it (fractions)."""

    task: str
    metric: str
    value: float
    stderr: float
    n: int | None = None


class Measured(_Model):
    """Our numbers and where they came from."""

    source: str
    layout: Layout
    label: str
    model: str | None = None
    revision: str | None = None
    sha: str | None = None
    lm_eval_version: str | None = None
    limit: float | None = None
    comparable: bool = True
    notes: tuple[str, ...] = ()
    scores: dict[str, Score]


class Cell(_Model):
    """One column of the comparison, in percent points."""

    key: str
    label: str
    task: str
    metric: str
    reported: float
    ours: float
    delta: float
    stderr: float
    verdict: Verdict
    n: int | None = None


class AverageCell(_Model):
    reported: float
    ours: float
    delta: float
    stderr: float
    verdict: Verdict


class TableRow(_Model):
    """A row of the regenerated published table (percent); `ours` marks the inserted row."""

    name: str
    values: dict[str, float]
    average: float
    ours: bool = False
    compared: bool = False


class Comparison(_Model):
    against: str
    against_aliases: tuple[str, ...]
    ours_name: str
    measured: Measured
    columns: tuple[Column, ...]
    cells: tuple[Cell, ...]
    average: AverageCell
    table: tuple[TableRow, ...]
    table_title: str
    sources: tuple[str, ...]
    rule: str = RULE

    @property
    def differing(self) -> list[str]:
        return [c.label for c in self.cells if c.verdict == "differs"]

    @property
    def reproduced(self) -> bool:
        """Every one of the seven task cells is within 2·stderr (the average informs, it does not decide)."""
        return not self.differing

    @property
    def notes(self) -> tuple[str, ...]:
        return self.measured.notes


# --- reading results -----------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: malformed JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: not an lm-eval results file or kit summary (a JSON {type(data).__name__})"
        )
    return data


def result_candidates(folder: Path) -> list[Path]:
    """Result files directly in `folder`: the kit's summary, lm-eval's results.json or results_<date>.json."""
    found = [folder / SUMMARY_NAME, folder / RESULTS_NAME]
    found = [p for p in found if p.is_file()]
    return found or sorted(folder.glob("results*.json"))


def result_files(path: Path) -> tuple[Path, Path | None]:
    """(file holding the numbers, the kit summary beside it if any) for a file or a directory holding one.

    lm-eval's own results.json is preferred for the numbers (it is the unchanged source); the summary adds
    the label, model, revision, sha and whether the model is comparable.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if path.is_file():
        summary = path.parent / SUMMARY_NAME if path.name == RESULTS_NAME else None
        return path, summary if summary and summary.is_file() else None
    folders = (
        [path]
        if result_candidates(path)
        else sorted(d for d in path.iterdir() if d.is_dir() and result_candidates(d))
    )
    if not folders:
        raise ConfigError(f"{path}: holds no {SUMMARY_NAME}, {RESULTS_NAME} or lm-eval results_*.json")
    if len(folders) > 1:
        names = ", ".join(str(f) for f in folders)
        raise ConfigError(f"{path}: holds several results ({names}); pass one of them")
    files = result_candidates(folders[0])
    summary = next((f for f in files if f.name == SUMMARY_NAME), None)
    numbers = [f for f in files if f.name != SUMMARY_NAME]
    if len(numbers) > 1:
        raise ConfigError(
            f"{folders[0]}: holds several lm-eval results ({', '.join(f.name for f in numbers)})"
        )
    return (numbers[0] if numbers else summary), summary  # type: ignore[return-value]


def _task_entries(data: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    for key in ("results", "tasks"):
        block = data.get(key)
        if isinstance(block, dict) and block and all(isinstance(v, dict) for v in block.values()):
            return {
                name: (entry["metrics"] if isinstance(entry.get("metrics"), dict) else entry)
                for name, entry in block.items()
            }
    return None


def _layout(data: dict[str, Any], entries: dict[str, dict[str, Any]]) -> Layout:
    if "results" not in data:
        return "kit summary"
    return "lm-eval 0.4" if any("," in k for entry in entries.values() for k in entry) else "lm-eval 0.3"


def _number(entry: dict[str, Any], name: str) -> float | None:
    """`name` read as lm-eval 0.4 writes it ("name,none" or another filter) or as 0.3 does ("name")."""
    keys = [f"{name},none", *sorted(k for k in entry if k.startswith(f"{name},")), name]
    for key in keys:
        value = entry.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _entry_for(entries: dict[str, dict[str, Any]], task: str) -> dict[str, Any] | None:
    if task in entries:
        return entries[task]
    # lm-eval keeps the task's own name as `alias`, also for wrapper tasks that include the built-in YAML.
    return next((e for e in entries.values() if str(e.get("alias", "")).strip(" -") == task), None)


def _sample_count(data: dict[str, Any], task: str) -> int | None:
    counts = data.get("n-samples", {}).get(task)
    if isinstance(counts, dict) and isinstance(counts.get("effective"), int):
        return counts["effective"]
    return None


def _scores(path: Path, data: dict[str, Any], table: PublishedTable) -> tuple[Layout, dict[str, Score]]:
    entries = _task_entries(data)
    if entries is None:
        raise ConfigError(
            f"{path}: not an lm-eval results file or kit summary (no 'results' or 'tasks' mapping of tasks)"
        )
    present = {c.key: _entry_for(entries, c.task) for c in table.columns}
    if not any(present.values()):
        raise ConfigError(
            f"{path}: none of the tasks {', '.join(c.task for c in table.columns)} in it "
            f"(it has: {', '.join(sorted(entries)[:8])})"
        )
    missing = [c.task for c in table.columns if present[c.key] is None]
    if missing:
        raise ConfigError(f"{path}: missing tasks {', '.join(missing)} (all 7 are needed to compare)")
    scores: dict[str, Score] = {}
    for column in table.columns:
        entry = present[column.key] or {}
        value = _number(entry, column.metric)
        if value is None:
            raise ConfigError(f"{path}: task {column.task} has no '{column.metric}' (the report's metric)")
        stderr = _number(entry, f"{column.metric}_stderr")
        if stderr is None:
            raise ConfigError(
                f"{path}: task {column.task} has no {column.metric} stderr"
                " (lm-eval run with bootstrap_iters=0?) - a comparison needs it"
            )
        if not (0.0 <= value <= 1.0 and stderr >= 0.0):
            raise ConfigError(f"{path}: task {column.task} {column.metric}={value} is not a fraction")
        n = _sample_count(data, column.task)
        scores[column.key] = Score(task=column.task, metric=column.metric, value=value, stderr=stderr, n=n)
    return _layout(data, entries), scores


def _model_args(data: dict[str, Any]) -> dict[str, str]:
    args = data.get("config", {}).get("model_args") if isinstance(data.get("config"), dict) else None
    if isinstance(args, dict):
        return {str(k): str(v) for k, v in args.items()}
    if isinstance(args, str):
        return dict(part.split("=", 1) for part in args.split(",") if "=" in part)
    return {}


def _limit(data: dict[str, Any]) -> float | None:
    config = data.get("config")
    limit = config.get("limit") if isinstance(config, dict) else None
    return float(limit) if isinstance(limit, int | float) and not isinstance(limit, bool) else None


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def read_measured(
    path: Path,
    *,
    table: PublishedTable | None = None,
    note: str | None = None,
    comparable: bool | None = None,
) -> Measured:
    """Our scores from a results file, a kit summary or a directory holding one (ConfigError otherwise)."""
    table = table or load_published_table()
    numbers_file, summary_file = result_files(path)
    data = _read_json(numbers_file)
    layout, scores = _scores(numbers_file, data, table)
    summary = data if summary_file == numbers_file else (_read_json(summary_file) if summary_file else {})
    args = _model_args(data)
    limit = _limit(data) if _limit(data) is not None else _limit(summary)
    is_comparable = comparable if comparable is not None else summary.get("comparable", True) is not False
    notes = [n for n in (note, _text(summary.get("note"))) if n]
    if not is_comparable and not any("not comparable" in n for n in notes):
        notes.insert(0, NOT_COMPARABLE_NOTE)
    if limit is not None:
        notes.append(f"evaluated with limit={limit:g} examples per task: a subset, not the full test sets")
    label = _text(summary.get("label")) or numbers_file.parent.name or numbers_file.stem
    return Measured(
        source=str(numbers_file),
        layout=layout,
        label=label,
        model=_text(summary.get("model")) or args.get("pretrained") or _text(data.get("model_name")),
        revision=_text(summary.get("revision")) or args.get("revision"),
        sha=_text(summary.get("sha")),
        lm_eval_version=_text(summary.get("lm_eval_version")) or _text(data.get("lm_eval_version")),
        limit=limit,
        comparable=is_comparable,
        notes=tuple(dict.fromkeys(notes)),
        scores=scores,
    )


# --- comparing -----------------------------------------------------------------------------------------


def verdict(delta: float, stderr: float) -> Verdict:
    return "reproduced" if abs(delta) <= SIGMAS * stderr + _EPS else "differs"


def default_against(measured: Measured, table: PublishedTable, fallback: str | None = None) -> Row:
    """The row our model is: the one whose model and revision it was evaluated at, else `fallback`."""
    for row in table.rows:
        same_model = bool(row.model and measured.model and row.model.lower() == measured.model.lower())
        if same_model and (row.revision or "main") == (measured.revision or "main"):
            return row
    return table.row(fallback or DEFAULT_REVISION)


def regenerated_table(
    table: PublishedTable, ours: Sequence[tuple[str, dict[str, float], str]] = ()
) -> tuple[TableRow, ...]:
    """Every published row with its computed average; each of `ours` (name, values, row compared with)
    inserted right after the row it was compared with, and that row marked."""
    rows: list[TableRow] = []
    for row in table.rows:
        mine = [(name, values) for name, values, after in ours if after == row.name]
        rows.append(
            TableRow(name=row.name, values=dict(row.values), average=average(row.values), compared=bool(mine))
        )
        rows += [TableRow(name=n, values=v, average=average(v), ours=True) for n, v in mine]
    return tuple(rows)


def combined_table(comparisons: Sequence[Comparison], table: PublishedTable) -> tuple[TableRow, ...]:
    """The published table with the row of every comparison inserted (a run evaluates several epochs)."""
    return regenerated_table(
        table, [(c.ours_name, {x.key: x.ours for x in c.cells}, c.against) for c in comparisons]
    )


def _ours_name(measured: Measured) -> str:
    # The model and revision go in the provenance line; a local checkpoint path would drown the label.
    return f"ours: {measured.label}"


def compare(
    measured: Measured, against: str | Row | None = None, table: PublishedTable | None = None
) -> Comparison:
    """`measured` judged cell by cell against a published row (by name, alias or revision)."""
    table = table or load_published_table()
    row = (
        against
        if isinstance(against, Row)
        else (table.row(against) if against else default_against(measured, table))
    )
    cells = []
    for column in table.columns:
        score = measured.scores[column.key]
        ours, stderr = score.value * 100, score.stderr * 100
        delta = ours - row.values[column.key]
        cells.append(
            Cell(
                key=column.key,
                label=column.label,
                task=column.task,
                metric=column.metric,
                reported=row.values[column.key],
                ours=ours,
                delta=delta,
                stderr=stderr,
                verdict=verdict(delta, stderr),
                n=score.n,
            )
        )
    ours_avg = sum(c.ours for c in cells) / len(cells)
    avg_stderr = math.sqrt(sum(c.stderr**2 for c in cells)) / len(cells)
    reported_avg = average(row.values)
    avg = AverageCell(
        reported=reported_avg,
        ours=ours_avg,
        delta=ours_avg - reported_avg,
        stderr=avg_stderr,
        verdict=verdict(ours_avg - reported_avg, avg_stderr),
    )
    name = _ours_name(measured)
    return Comparison(
        against=row.name,
        against_aliases=row.names()[1:],
        ours_name=name,
        measured=measured,
        columns=table.columns,
        cells=tuple(cells),
        average=avg,
        table=regenerated_table(table, [(name, {c.key: c.ours for c in cells}, row.name)]),
        table_title=table.title,
        sources=table.sources,
    )


def compare_path(
    path: Path,
    against: str | None = None,
    *,
    note: str | None = None,
    comparable: bool | None = None,
    table: PublishedTable | None = None,
) -> Comparison:
    """`compare` for a results file, kit summary or directory; every bad input is a one-line ConfigError."""
    table = table or load_published_table()
    row = table.row(against) if against else None
    return compare(read_measured(path, table=table, note=note, comparable=comparable), row, table)


def slug(text: str) -> str:
    """A file-name-safe form of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "results"
