"""One view model of what the kit shows: a comparison, the published table and the report's sections.

Every number is formatted here, once, into rows of text cells with their verdict and emphasis; the
renderers (`render`: rich for the terminal, Jinja2 templates for Markdown and HTML) only lay them out.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gpt4allj_kit.compare.comparison import Comparison, TableRow, Verdict
from gpt4allj_kit.compare.paired import PairedComparison, PairedVerdict
from gpt4allj_kit.published import Column

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


def _interval(low: float, high: float) -> str:
    return f"{signed(low)}..{signed(high)}"


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
                Cell(_interval(t.ci_low, t.ci_high)),
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
        Cell(_interval(a.ci_low, a.ci_high)),
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
