"""One view model of what the kit shows: a comparison, the published table and the report's sections.

Every number is formatted here, once, into rows of text cells with their verdict and emphasis; the
renderers (`render`: rich for the terminal, Jinja2 templates for Markdown and HTML) only lay them out.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gpt4allj_kit.compare.attribution import Attribution, CheckpointGap, Closest, GapCell, GapRow
from gpt4allj_kit.compare.comparison import BAND_RULE, NO_BAND, Comparison, TableRow, Verdict
from gpt4allj_kit.compare.paired import PairedComparison, PairedVerdict
from gpt4allj_kit.published import ROUNDING, Column, EvalStack, PublishedTable, printed_average_differs

if TYPE_CHECKING:
    from gpt4allj_kit.verify.run import Verification

OURS_MARK = "◀ ours"
COMPARED_MARK = "◀ compared"
# A note that says the numbers are not comparable is shown louder than the others.
_LOUD = "not comparable"

RowKind = Literal["", "ours", "compared", "total"]
# A recipe-compliance rule's verdict (verify-run).
RuleVerdictText = Literal["pass", "differs", "cannot tell"]


@dataclass(frozen=True)
class Cell:
    text: str
    strong: bool = False
    verdict: Verdict | PairedVerdict | RuleVerdictText | None = None


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
    sources: tuple[str, ...]
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
    # The second verdict, with the row's evaluation-stack band, said apart from the first.
    band_summary: str
    band_rule: str
    band_source: str | None


@dataclass(frozen=True)
class PairedView:
    title: str
    sources: tuple[str, ...]
    notes: tuple[Note, ...]
    summary: str
    differs: bool
    grid: Grid
    rule: str


def pct(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def interval(low: float, high: float) -> str:
    """A confidence interval in percent points."""
    return f"[{signed(low)}, {signed(high)}]"


def signed(value: float) -> str:
    return f"{value:+.2f}"


def notes_view(notes: Sequence[str]) -> tuple[Note, ...]:
    return tuple(Note(text=n, strong=_LOUD in n) for n in notes)


def _mark(row: TableRow) -> str:
    return OURS_MARK if row.ours else (COMPARED_MARK if row.compared else "")


def average_text(row: TableRow, digits: int) -> str:
    """The computed Avg; where the source printed another one (beyond rounding), that one beside it."""
    text = pct(row.average, digits)
    if printed_average_differs(row.average, row.printed_average):
        return f"{text} (printed {pct(row.printed_average or 0.0, 1)})"
    return text


def _average_note(rows: Sequence[TableRow], cells: int) -> str:
    flagged = [r.name for r in rows if printed_average_differs(r.average, r.printed_average)]
    base = f"Avg is computed as the plain mean of the {cells} cells (never copied)"
    if flagged:
        return (
            f"{base}; 'X (printed Y)': the source prints Y, which is not the mean of the row's cells "
            f"(more than the {ROUNDING} of rounding apart): {', '.join(flagged)}."
        )
    if any(r.printed_average is not None for r in rows):
        return f"{base}; every printed Avg agrees with it to rounding ({ROUNDING})."
    return f"{base}."


def _rows_by_source(rows: Sequence[TableRow]) -> str:
    published = [r for r in rows if not r.ours]
    ids = list(dict.fromkeys(r.source for r in published if r.source))
    if not ids:
        return ""
    if len(ids) == 1 and all(r.source for r in published):
        return f" Rows: all {len(published)} from [{ids[0]}]."
    groups = "; ".join(f"[{i}] {', '.join(r.name for r in published if r.source == i)}" for i in ids)
    return f" Rows by source: {groups}."


def published_view(
    rows: Sequence[TableRow],
    columns: Sequence[Column],
    title: str,
    sources: Sequence[str],
    *,
    convention: str | None = None,
    bands: str | None = None,
) -> PublishedView:
    """The published table (with our rows, if any): published numbers to their one decimal, ours to two."""
    # The last column marks our rows and the rows compared with; the bare published table has none.
    marked = any(r.ours or r.compared for r in rows)
    body = []
    for row in rows:
        digits = 2 if row.ours else 1
        values = [pct(row.values[c.key], digits) for c in columns] + [average_text(row, digits)]
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
        note=f"{_average_note(rows, len(columns))} Metrics: {metrics}; zero-shot."
        + (f" Metric convention: {convention}" if convention else "")
        + _rows_by_source(rows)
        + (f" {bands}" if bands else ""),
        sources=tuple(sources),
        has_ours=any(r.ours for r in rows),
    )


def bands_note(bands: EvalStack) -> str:
    """Which rows have a documented evaluation-stack band, with its range and source."""
    if not bands.bands:
        return "No row has a documented evaluation-stack band."
    parts = [
        f"{b.row} (±{pct(min(b.cells.values()))} to ±{pct(max(b.cells.values()))} per cell, "
        f"±{pct(b.average)} Avg; [{b.source.id}])"
        for b in bands.bands.values()
    ]
    return f"Evaluation-stack bands (shown apart from the verdict; other rows have none): {'; '.join(parts)}."


def table_view(
    rows: Sequence[TableRow], table: PublishedTable, bands: EvalStack | None = None
) -> PublishedView:
    """`published_view` of `rows` with what the table file says of itself (sources, metric convention) and,
    given `bands`, which rows have an evaluation-stack band."""
    convention = f"{table.metric_convention.established_by} [{table.metric_convention.source}]."
    return published_view(
        rows,
        table.columns,
        table.title,
        table.citations,
        convention=convention,
        bands=bands_note(bands) if bands is not None else None,
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


def _verdicts_line(differing: Sequence[str], cells: int, average: str | None) -> str:
    if not differing:
        return f"all {cells} cells reproduced; average {average}"
    return f"{len(differing)} of {cells} cells differ ({', '.join(differing)}); average {average}"


def summary(c: Comparison) -> str:
    return _verdicts_line(c.differing, len(c.cells), c.average.verdict)


def band_summary(c: Comparison) -> str:
    """The second verdict in a line: with the row's band, or that the row has none."""
    if c.band is None:
        return c.band_note or NO_BAND
    line = _verdicts_line(c.differing_with_band or [], len(c.cells), c.average.band_verdict)
    return f"with the evaluation-stack band of {c.band.row}: {line}"


def _band_cells(band: float | None, verdict: Verdict | None) -> tuple[Cell, Cell]:
    if band is None:
        return Cell("—"), Cell(NO_BAND)
    return Cell(f"±{pct(band)}"), Cell(verdict or "", verdict=verdict)


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
                *_band_cells(cell.band, cell.band_verdict),
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
        *_band_cells(a.band, a.band_verdict),
    )
    return Grid(
        header=("Task", "Metric", "Report", "Ours", "Δ", "Our stderr", "n", "Verdict", "Band", "With band"),
        numeric=(False, False, True, True, True, True, True, False, True, False),
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
        band_summary=band_summary(c),
        band_rule=c.band_rule,
        band_source=(f"band of {c.band.row} from {c.band.source}; {c.band.derivation}" if c.band else None),
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
            NO_BAND
            if c.differing_with_band is None
            else f"{len(c.cells) - len(c.differing_with_band)}/{len(c.cells)}",
        )
        for c in comparisons
    ]
    return text_grid(
        (
            "Evaluated",
            "Compared with",
            "Cells reproduced",
            "Avg ours",
            "Avg report",
            "Δ Avg ± stderr",
            "With band",
        ),
        rows,
        numeric=(False, False, True, True, True, True, False),
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
    sources: tuple[str, ...]
    attribution: AttributionView | None = None
    compliance: ComplianceView | None = None

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


def paired_summary(p: PairedComparison) -> str:
    if p.same:
        return f"the same on every document of all {len(p.tasks)} tasks"
    if p.differing:
        differing = ", ".join(p.differing)
        return f"{len(p.differing)} of {len(p.tasks)} tasks differ ({differing}); average {p.average.verdict}"
    return f"no task differs significantly; average {p.average.verdict}"


def paired_grid(p: PairedComparison) -> Grid:
    rows = [
        Row(
            cells=(
                Cell(t.label),
                Cell(t.metric),
                Cell(str(t.n)),
                Cell(pct(t.a)),
                Cell(pct(t.b)),
                Cell(signed(t.delta)),
                Cell(interval(t.ci_low, t.ci_high)),
                Cell(f"{t.only_a}/{t.only_b}"),
                Cell(f"{t.p_value:.3g}"),
                Cell(t.verdict, verdict=t.verdict),
            )
        )
        for t in p.tasks
    ]
    a = p.average
    total = (
        Cell("Avg", strong=True),
        Cell("mean"),
        Cell(""),
        Cell(pct(a.a)),
        Cell(pct(a.b)),
        Cell(signed(a.delta)),
        Cell(interval(a.ci_low, a.ci_high)),
        Cell(""),
        Cell(""),
        Cell(a.verdict, verdict=a.verdict),
    )
    return Grid(
        header=(
            "Task",
            "Metric",
            "n",
            "A",
            "B",
            "Δ A-B",
            "paired CI",
            "A/B only",
            "McNemar p",
            "Verdict",
        ),
        numeric=(False, False, True, True, True, True, True, True, True, False),
        rows=(*rows, Row(cells=total, kind="total")),
    )


def paired_view(p: PairedComparison) -> PairedView:
    s = p.settings
    confidence = f"{100 * (1 - s.alpha):g}%"
    return PairedView(
        title=f"A: {p.a_label} vs B: {p.b_label} (paired, same documents)",
        sources=(f"A: {p.a_source}", f"B: {p.b_source}"),
        notes=notes_view(p.notes),
        summary=paired_summary(p),
        differs=bool(p.differing) or p.average.verdict == "differs",
        grid=paired_grid(p),
        rule=(
            f"per task: {s.per_task_test}, differs when p < {s.alpha:g}; 'same' when every document scores "
            f"alike; CI: {confidence} {s.interval} ({s.resamples} resamples, seed {s.seed}); "
            "the average weighs each task the same and differs when its CI excludes 0"
        ),
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


def _training_cell(gap: CheckpointGap) -> Cell:
    t = gap.training
    if t is None:
        return Cell("—")
    return Cell(f"{signed(t.delta)} {interval(t.ci_low, t.ci_high)} {t.verdict}", verdict=t.verdict)


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
    said = drift.verdict
    if drift.band is not None:
        said += f"; with band {pct(drift.band)}: {drift.band_verdict}"
    return Cell(f"{signed(drift.delta)} ± {pct(drift.stderr)}"), Cell(said, verdict=drift.verdict)


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
    ci = interval(training.ci_low, training.ci_high)
    return line + f" + training {signed(training.delta)} (paired, 95% CI {ci}, {training.verdict})"


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
        band = "" if drift.band is None else f"; with band {pct(drift.band)}: {drift.band_verdict}"
        lines.append(
            f"base model ({a.base.row}): eval-stack drift on Avg {signed(drift.delta)} "
            f"(unpaired, ± {pct(drift.stderr)}, {drift.verdict}{band})"
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
    legend += [
        f"Band of {row.row}: {BAND_RULE}; source: {row.band_source}"
        for row in (a.released, a.base)
        if row is not None and row.band_source
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


# --- recipe compliance (verify-run) -----------------------------------------------------------------


@dataclass(frozen=True)
class ComplianceView:
    title: str
    recipe: str  # which recipe the verdicts are against, and why that one
    run: str
    summary: str
    differs: bool
    grid: Grid
    also: tuple[str, ...]  # how the run stands against other recipes (a tiny run: the documented one)
    rule: str


def compliance_summary(counts: dict[str, int]) -> str:
    return f"{counts['pass']} pass, {counts['differs']} differ, {counts['cannot tell']} cannot tell"


def compliance_view(v: Verification) -> ComplianceView:
    rows = [
        Row(
            cells=(
                Cell(r.id, strong=r.verdict == "differs"),
                Cell(r.expected),
                Cell(r.found),
                Cell(
                    f"{r.verdict} ({r.severity})" if r.verdict == "differs" else r.verdict, verdict=r.verdict
                ),
            )
        )
        for r in v.verdicts
    ]
    state = "finished" if v.finished else "not finished (checked as far as it got)"
    also = tuple(
        f"against recipe '{a.recipe}': {compliance_summary(a.counts)}"
        + (f" ({', '.join(a.differing)})" if a.differing else "")
        + " - a tiny run differs from the documented recipe by design"
        for a in v.also
    )
    return ComplianceView(
        title=f"Recipe compliance: against recipe '{v.recipe}'",
        recipe=f"{v.recipe_description} ({v.recipe_file}; {v.chosen})",
        run=f"{v.kind} {v.train_dir}: {state}, {v.steps} optimizer steps traced"
        + (f"; data trace compared with {v.against}" if v.against else ""),
        summary=compliance_summary(v.counts),
        differs=v.differs,
        grid=Grid(
            header=("Rule", "Expected", "Found", "Verdict"),
            numeric=(False,) * 4,
            rows=tuple(rows),
        ),
        also=also,
        rule="pass: the run meets the rule; differs: it does not; cannot tell: the run does not record what "
        "the rule needs. Any 'differs' makes verify-run exit 1",
    )
