"""One view model of what the kit shows: a comparison, the published table and the report's sections.

Every number is formatted here, once, into rows of text cells with their verdict and emphasis; the
renderers (`render`: rich for the terminal, Jinja2 templates for Markdown and HTML) only lay them out.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gpt4allj_kit.compare.attribution import Attribution, CheckpointGap, Closest, GapCell, GapRow
from gpt4allj_kit.compare.comparison import Comparison, TableRow, Verdict
from gpt4allj_kit.compare.paired import PairedVerdict
from gpt4allj_kit.published import Column

OURS_MARK = "◀ ours"
COMPARED_MARK = "◀ compared"
# A note that says the numbers are not comparable is shown louder than the others.
_LOUD = "not comparable"

RowKind = Literal["", "ours", "compared", "total"]


@dataclass(frozen=True)
class Cell:
    text: str
    strong: bool = False
    verdict: Verdict | PairedVerdict | None = None


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...]
    kind: RowKind = ""


@dataclass(frozen=True)
class Grid:
    """A table of formatted cells; `numeric` says which columns are right-aligned numbers."""

    header: tuple[str, ...]
    numeric: tuple[bool, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Note:
    text: str
    strong: bool


@dataclass(frozen=True)
class PublishedView:
    title: str
    grid: Grid
    note: str
    sources: str
    has_ours: bool


@dataclass(frozen=True)
class ComparisonView:
    title: str
    notes: tuple[Note, ...]
    provenance: str
    summary: str
    reproduced: bool
    grid: Grid
    rule: str
    published: PublishedView


def pct(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def signed(value: float) -> str:
    return f"{value:+.2f}"


def notes_view(notes: Sequence[str]) -> tuple[Note, ...]:
    return tuple(Note(text=n, strong=_LOUD in n) for n in notes)


def _mark(row: TableRow) -> str:
    return OURS_MARK if row.ours else (COMPARED_MARK if row.compared else "")


def published_view(
    rows: Sequence[TableRow], columns: Sequence[Column], title: str, sources: Sequence[str]
) -> PublishedView:
    """The published table (with our rows, if any): published numbers to their one decimal, ours to two."""
    # The last column marks our rows and the rows compared with; the bare published table has none.
    marked = any(r.ours or r.compared for r in rows)
    body = []
    for row in rows:
        digits = 2 if row.ours else 1
        values = [pct(row.values[c.key], digits) for c in columns] + [pct(row.average, digits)]
        cells = tuple(Cell(v, strong=row.ours) for v in [row.name, *values])
        kind: RowKind = "ours" if row.ours else ("compared" if row.compared else "")
        body.append(Row(cells=(*cells, Cell(_mark(row))) if marked else cells, kind=kind))
    metrics = ", ".join(f"{c.label} {c.metric}" for c in columns)
    return PublishedView(
        title=title,
        grid=Grid(
            header=("Model", *(c.label for c in columns), "Avg", *([""] if marked else [])),
            numeric=(False, *[True] * (len(columns) + 1), *([False] if marked else [])),
            rows=tuple(body),
        ),
        note=f"Avg is computed as the plain mean of the {len(columns)} cells (never copied). "
        f"Metrics: {metrics}; zero-shot.",
        sources="; ".join(sources),
        has_ours=any(r.ours for r in rows),
    )


def provenance(c: Comparison) -> str:
    m = c.measured
    parts = [f"model {m.model or '?'}"]
    if m.revision:
        parts.append(f"revision {m.revision}")
    if m.sha:
        parts.append(f"sha {m.sha}")
    parts.append(
        f"from {m.source} ({m.layout} layout"
        + (f", lm-eval {m.lm_eval_version})" if m.lm_eval_version else ")")
    )
    return "; ".join(parts)


def summary(c: Comparison) -> str:
    cells = len(c.cells)
    if c.reproduced:
        return f"all {cells} cells reproduced; average {c.average.verdict}"
    return (
        f"{len(c.differing)} of {cells} cells differ ({', '.join(c.differing)}); average {c.average.verdict}"
    )


def comparison_grid(c: Comparison) -> Grid:
    rows = [
        Row(
            cells=(
                Cell(cell.label),
                Cell(cell.metric),
                Cell(pct(cell.reported, 1)),
                Cell(pct(cell.ours)),
                Cell(signed(cell.delta)),
                Cell(pct(cell.stderr)),
                Cell("—" if cell.n is None else str(cell.n)),
                Cell(cell.verdict, verdict=cell.verdict),
            )
        )
        for cell in c.cells
    ]
    a = c.average
    total = (
        Cell("Avg", strong=True),
        Cell("mean"),
        Cell(pct(a.reported)),
        Cell(pct(a.ours)),
        Cell(signed(a.delta)),
        Cell(pct(a.stderr) + "*"),
        Cell(""),
        Cell(a.verdict, verdict=a.verdict),
    )
    return Grid(
        header=("Task", "Metric", "Report", "Ours", "Δ", "Our stderr", "n", "Verdict"),
        numeric=(False, False, True, True, True, True, True, False),
        rows=(*rows, Row(cells=total, kind="total")),
    )


def comparison_view(c: Comparison) -> ComparisonView:
    return ComparisonView(
        title=f"{c.ours_name} vs {c.against} (published)",
        notes=notes_view(c.notes),
        provenance=provenance(c),
        summary=summary(c),
        reproduced=c.reproduced,
        grid=comparison_grid(c),
        rule=c.rule,
        published=published_view(c.table, c.columns, c.table_title, c.sources),
    )


def overview_grid(comparisons: Sequence[Comparison]) -> Grid:
    """One line per comparison: what was compared with what, and how many cells were reproduced."""
    rows = [
        (
            c.measured.label,
            c.against,
            f"{len(c.cells) - len(c.differing)}/{len(c.cells)}",
            pct(c.average.ours),
            pct(c.average.reported),
            f"{signed(c.average.delta)} ± {pct(c.average.stderr)}",
        )
        for c in comparisons
    ]
    return text_grid(
        ("Evaluated", "Compared with", "Cells reproduced", "Avg ours", "Avg report", "Δ Avg ± stderr"),
        rows,
        numeric=(False, False, True, True, True, True),
    )


# --- the report's sections --------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A PNG chart: a side file beside report.md, a data URI inside report.html."""

    name: str
    alt: str
    png: bytes

    @property
    def base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


Facts = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ComparisonSection:
    view: ComparisonView
    figure: Figure


@dataclass(frozen=True)
class TrainingSection:
    source: str
    facts: Facts
    figure: Figure | None


@dataclass(frozen=True)
class ManifestSection:
    path: str
    facts: Facts
    full: str


@dataclass(frozen=True)
class ReportView:
    title: str
    kind: str
    root: str
    generated: str
    missing: tuple[str, ...]
    overview: Grid | None
    overview_notes: tuple[Note, ...]
    comparisons: tuple[ComparisonSection, ...]
    published: PublishedView | None
    training: TrainingSection | None
    commands: tuple[tuple[str, str], ...]
    assets: Grid | None
    manifests: tuple[ManifestSection, ...]
    sources: str
    attribution: AttributionView | None = None

    @property
    def figures(self) -> tuple[Figure, ...]:
        found = [s.figure for s in self.comparisons]
        if self.training and self.training.figure:
            found.append(self.training.figure)
        return tuple(found)


def text_grid(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> Grid:
    return Grid(
        header=tuple(header),
        numeric=tuple(numeric),
        rows=tuple(Row(cells=tuple(Cell(v) for v in r)) for r in rows),
    )


# --- where the gap comes from -----------------------------------------------------------------------


@dataclass(frozen=True)
class AttributionView:
    """The gap of a run's checkpoints to the published row, split; the parts it lacks in `missing`."""

    title: str
    origin: str
    notes: tuple[Note, ...]
    missing: tuple[str, ...]
    summary: tuple[str, ...]
    values: Grid | None
    split: Grid | None
    base_title: str
    base: Grid | None
    legend: tuple[str, ...]


GAP_TITLE = "Where the gap comes from"


def _pm(value: float | None, stderr: float | None) -> str:
    return "—" if value is None or stderr is None else f"{pct(value)} ± {pct(stderr)}"


def _interval(low: float, high: float) -> str:
    return f"[{signed(low)}, {signed(high)}]"


def _training_cell(gap: CheckpointGap) -> Cell:
    t = gap.training
    if t is None:
        return Cell("—")
    return Cell(f"{signed(t.delta)} {_interval(t.ci_low, t.ci_high)} {t.verdict}", verdict=t.verdict)


def closest_text(closest: Closest | None) -> str:
    """The closest checkpoint(s) with the paired verdict; a tie and `same` said in words."""
    if closest is None:
        return "—"
    names = " = ".join(closest.labels) + (" (tie)" if closest.tie else "")
    verdicts = set(closest.verdicts.values())
    if verdicts == {"same"}:
        return f"{names}: same on every document"
    said = (
        next(iter(verdicts))
        if len(verdicts) == 1
        else ", ".join(f"{label} {v}" for label, v in closest.verdicts.items())
    )
    # No "|" here: it would split a Markdown table's cell.
    return f"{names}: {pct(closest.distance)} points from R, {said}"


def _row_label(cell: GapCell) -> Cell:
    return Cell(cell.label, strong=cell.key == "average")


def _kind(cell: GapCell) -> RowKind:
    return "total" if cell.key == "average" else ""


def _values_grid(row: GapRow, checkpoints: Sequence[str]) -> Grid:
    body = [
        Row(
            cells=(
                _row_label(cell),
                Cell(cell.metric),
                Cell(pct(cell.published, 1 if cell.key != "average" else 2)),
                Cell(_pm(cell.ours, cell.ours_stderr)),
                *(Cell(_pm(g.value, g.stderr)) for g in cell.checkpoints),
            ),
            kind=_kind(cell),
        )
        for cell in row.all_cells
    ]
    return Grid(
        header=("Task", "Metric", f"Published ({row.row})", "Re-evaluated published", *checkpoints),
        numeric=(False, False, True, True, *[True] * len(checkpoints)),
        rows=tuple(body),
    )


def _drift_cells(cell: GapCell) -> tuple[Cell, Cell]:
    drift = cell.eval_stack
    if drift is None:
        return Cell("—"), Cell("—")
    return Cell(f"{signed(drift.delta)} ± {pct(drift.stderr)}"), Cell(drift.verdict, verdict=drift.verdict)


def _split_grid(row: GapRow, checkpoints: Sequence[str]) -> Grid:
    body = [
        Row(
            cells=(
                _row_label(cell),
                *_drift_cells(cell),
                *(_training_cell(g) for g in cell.checkpoints),
                Cell(closest_text(cell.closest)),
            ),
            kind=_kind(cell),
        )
        for cell in row.all_cells
    ]
    return Grid(
        header=(
            "Task",
            "Eval-stack drift R - P (± R's stderr)",
            "Eval-stack verdict",
            *(f"Training drift {label} - R [95% CI]" for label in checkpoints),
            "Closest to the released checkpoint",
        ),
        numeric=(False, True, False, *[True] * len(checkpoints), False),
        rows=tuple(body),
    )


def _base_grid(row: GapRow) -> Grid:
    body = [
        Row(
            cells=(
                _row_label(cell),
                Cell(cell.metric),
                Cell(pct(cell.published, 1 if cell.key != "average" else 2)),
                Cell(_pm(cell.ours, cell.ours_stderr)),
                *_drift_cells(cell),
            ),
            kind=_kind(cell),
        )
        for cell in row.all_cells
    ]
    return Grid(
        header=(
            "Task",
            "Metric",
            "Published",
            f"Ours ({row.label})",
            "Eval-stack drift (± our stderr)",
            "Eval-stack verdict",
        ),
        numeric=(False, False, True, True, True, False),
        rows=tuple(body),
    )


def _split_line(cell: GapCell, gap: CheckpointGap) -> str:
    """One checkpoint's total gap on `cell` as the sum of its two parts."""
    drift, training = cell.eval_stack, gap.training
    line = f"{gap.label}: total gap on {cell.label} {signed(gap.total)}"
    if drift is None:
        return line + " (not split: no re-evaluation of the published checkpoint)"
    line += f" = eval-stack {signed(drift.delta)} (unpaired, ± {pct(drift.stderr)}, {drift.verdict})"
    if training is None:
        return line + f" + training {signed(gap.value - (cell.ours or 0.0))} (no paired test)"
    interval = _interval(training.ci_low, training.ci_high)
    return line + f" + training {signed(training.delta)} (paired, 95% CI {interval}, {training.verdict})"


def _closest_counts(row: GapRow) -> str | None:
    counts: dict[str, int] = {}
    for cell in row.cells:
        for label in cell.closest.labels if cell.closest else ():
            counts[label] = counts.get(label, 0) + 1
    if not counts:
        return None
    listed = ", ".join(f"{label} on {n}" for label, n in counts.items())
    return (
        f"closest to the released checkpoint per task: {listed} of {len(row.cells)} tasks "
        "(a tie counts for each)"
    )


def _gap_summary(a: Attribution) -> tuple[str, ...]:
    avg = a.released.average
    lines = [_split_line(avg, gap) for gap in avg.checkpoints]
    if avg.closest:
        lines.append(f"closest to the released checkpoint on Avg: {closest_text(avg.closest)}")
    if counts := _closest_counts(a.released):
        lines.append(counts)
    if a.base and (drift := a.base.average.eval_stack):
        lines.append(
            f"base model ({a.base.row}): eval-stack drift on Avg {signed(drift.delta)} "
            f"(unpaired, ± {pct(drift.stderr)}, {drift.verdict})"
        )
    return tuple(lines)


def attribution_view(a: Attribution, origin: str = "") -> AttributionView:
    return AttributionView(
        title=f"{GAP_TITLE}: {a.row}",
        origin=origin,
        notes=notes_view(a.notes),
        missing=a.missing,
        summary=_gap_summary(a),
        values=_values_grid(a.released, a.checkpoints),
        split=_split_grid(a.released, a.checkpoints) if a.split else None,
        base_title=f"Base model: {a.base.row} (published) vs our evaluation" if a.base else "",
        base=_base_grid(a.base) if a.base else None,
        legend=_legend(a),
    )


def _legend(a: Attribution) -> tuple[str, ...]:
    s = a.settings
    legend = [
        "P: the published number; R: our evaluation of the published checkpoint; T: a retrained "
        "checkpoint. Total gap T - P = eval-stack drift (R - P) + training drift (T - R)",
        f"Eval-stack drift: {a.eval_stack_uncertainty}",
    ]
    if a.split and a.checkpoints:
        legend += [
            f"Training drift: {a.training_uncertainty}; bootstrap seed {s.seed}, {s.resamples} resamples, "
            f"alpha {s.alpha:g}; same: every document scores alike",
            "Closest: the smallest distance |T - R|; a tie lists every checkpoint, and a checkpoint that is "
            "the same on every document beats one whose mean merely equals R's",
        ]
    return tuple(legend)


def attribution_unavailable(reason: str, origin: str = "") -> AttributionView:
    """The section when no attribution could be made: what is missing, nothing else."""
    return AttributionView(
        title=GAP_TITLE,
        origin=origin,
        notes=(),
        missing=(reason,),
        summary=(),
        values=None,
        split=None,
        base_title="",
        base=None,
        legend=(),
    )
