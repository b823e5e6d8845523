"""The view model (`view`) laid out: rich renderables for the terminal, Jinja2 templates for Markdown and
self-contained HTML (inline CSS, no scripts, fonts or remote resources; autoescaped).

Renderers return strings or renderables; they never print.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import jinja2
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from gpt4allj_kit.compare.attribution import Attribution
from gpt4allj_kit.compare.comparison import Comparison, regenerated_table
from gpt4allj_kit.compare.paired import PairedComparison
from gpt4allj_kit.published import EvalStack, PublishedTable
from gpt4allj_kit.report.view import (
    AttributionView,
    Cell,
    ComparisonView,
    ComplianceView,
    Grid,
    PairedView,
    PublishedView,
    ReportView,
    attribution_view,
    comparison_view,
    compliance_view,
    paired_view,
    table_view,
)

if TYPE_CHECKING:
    from gpt4allj_kit.verify.run import Verification

Format = Literal["table", "markdown", "json", "html"]
FORMATS: tuple[Format, ...] = ("table", "markdown", "json", "html")
TEMPLATES = Path(__file__).with_name("templates")

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)

_VERDICT_STYLE = {
    "reproduced": "green",
    "same": "green",
    "pass": "green",
    "not significant": "yellow",
    "cannot tell": "yellow",
    "differs": "red",
}
_ROW_STYLE = {"ours": "bold yellow", "compared": "cyan"}


def _template(name: str, **context: object) -> str:
    return _ENV.get_template(name).render(**context)


# --- Markdown and HTML -------------------------------------------------------------------------------


def comparison_markdown(c: Comparison, *, heading_level: int = 2, with_table: bool = True) -> str:
    return _template("comparison.md.j2", v=comparison_view(c), level=heading_level, with_table=with_table)


def comparison_html(c: Comparison) -> str:
    """A complete, self-contained page about one comparison."""
    view = comparison_view(c)
    return _template("comparison.html.j2", v=view, title=f"gpt4allj-kit: {c.ours_name} vs {c.against}")


def report_markdown(view: ReportView) -> str:
    return _template("report.md.j2", r=view)


def report_html(view: ReportView) -> str:
    return _template("report.html.j2", r=view, title=view.title)


def attribution_markdown(a: Attribution, *, heading_level: int = 2, origin: str = "") -> str:
    return _template("attribution.md.j2", v=attribution_view(a, origin), level=heading_level)


def attribution_html(a: Attribution, *, origin: str = "") -> str:
    """A complete, self-contained page about where a run's gap comes from."""
    view = attribution_view(a, origin)
    return _template("attribution.html.j2", v=view, title=f"gpt4allj-kit: {view.title}")


def attribution_text(a: Attribution, fmt: Format) -> str:
    """`a` as the text of a file in `fmt` (the terminal tables uncoloured)."""
    if fmt == "table":
        return plain_text(attribution_renderable(a))
    if fmt == "markdown":
        return attribution_markdown(a)
    if fmt == "json":
        return a.to_json()
    return attribution_html(a)


def comparison_text(c: Comparison, fmt: Format) -> str:
    """`c` as the text of a file in `fmt` (the terminal table uncoloured)."""
    if fmt == "table":
        return plain_text(comparison_renderable(c))
    if fmt == "markdown":
        return comparison_markdown(c)
    if fmt == "json":
        return c.to_json()
    return comparison_html(c)


def paired_markdown(pairs: Sequence[PairedComparison], *, heading_level: int = 2) -> str:
    return _template("paired.md.j2", views=[paired_view(p) for p in pairs], level=heading_level)


def paired_html(pairs: Sequence[PairedComparison]) -> str:
    views = [paired_view(p) for p in pairs]
    return _template("paired.html.j2", views=views, title="gpt4allj-kit: paired comparison")


def paired_json(pairs: Sequence[PairedComparison]) -> str:
    data = [{**p.model_dump(mode="json"), "differing": p.differing, "same": p.same} for p in pairs]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def paired_text(pairs: Sequence[PairedComparison], fmt: Format) -> str:
    """`pairs` as the text of a file in `fmt` (the terminal table uncoloured)."""
    if fmt == "table":
        return plain_text(paired_renderable(pairs))
    if fmt == "markdown":
        return paired_markdown(pairs)
    if fmt == "json":
        return paired_json(pairs)
    return paired_html(pairs)


# --- rich (terminal) ---------------------------------------------------------------------------------


def _rich_cell(cell: Cell) -> Text:
    style = _VERDICT_STYLE.get(cell.verdict, "") if cell.verdict else ("bold" if cell.strong else "")
    return Text(cell.text, style=style)


def _rich_table(grid: Grid, table: Table) -> Table:
    for name, numeric in zip(grid.header, grid.numeric, strict=True):
        table.add_column(name, justify="right" if numeric else "left")
    for row in grid.rows:
        table.add_row(
            *(_rich_cell(c) for c in row.cells),
            style=_ROW_STYLE.get(row.kind),
            end_section=row.kind == "total",
        )
    return table


def published_renderable(view: PublishedView) -> RenderableType:
    legend = " Bold yellow: ours; cyan: the row compared with." if view.has_ours else ""
    table = Table(
        title=f"{view.title} (percent)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        caption=Text(view.note + legend),  # a Text: "[source-id]" is not rich markup
        caption_justify="left",
    )
    sources = [Text(f"  {s}", style="dim") for s in view.sources]
    return Group(_rich_table(view.grid, table), Text("Sources:", style="dim"), *sources)


def published_table_renderable(table: PublishedTable, bands: EvalStack | None = None) -> RenderableType:
    """The published table alone, every row with its computed Avg (and a printed one that differs)."""
    return published_renderable(table_view(regenerated_table(table), table, bands))


def comparison_view_renderable(view: ComparisonView) -> RenderableType:
    parts: list[RenderableType] = [
        Text(f"Note: {n.text}.", style="bold red" if n.strong else "yellow") for n in view.notes
    ]
    parts += [
        Text(f"Ours: {view.provenance}", style="dim"),
        _rich_table(view.grid, Table(title=view.title, title_justify="left")),
        Text(f"Rule: {view.rule}. (*) independence assumed.", style="dim"),
        Text(view.summary, style="bold green" if view.reproduced else "bold red"),
        Text(f"Band: {view.band_summary}", style="bold"),
        Text(f"Band rule: {view.band_rule}.", style="dim"),
        *([Text(f"Band source: {view.band_source}.", style="dim")] if view.band_source else []),
        published_renderable(view.published),
    ]
    return Group(*parts)


def comparison_renderable(c: Comparison) -> RenderableType:
    return comparison_view_renderable(comparison_view(c))


def paired_view_renderable(view: PairedView) -> RenderableType:
    return Group(
        *(Text(line, style="dim") for line in view.sources),
        *(Text(f"Note: {n.text}.", style="yellow") for n in view.notes),
        _rich_table(view.grid, Table(title=view.title, title_justify="left", box=box.SIMPLE_HEAD)),
        Text(f"Rule: {view.rule}.", style="dim"),
        Text(view.summary, style="bold red" if view.differs else "bold green"),
    )


def paired_renderable(pairs: Sequence[PairedComparison]) -> RenderableType:
    return Group(*(paired_view_renderable(paired_view(p)) for p in pairs))


def compliance_renderable(view: ComplianceView) -> RenderableType:
    return Group(
        Text(view.recipe, style="dim"),
        Text(view.run, style="dim"),
        _rich_table(view.grid, Table(title=view.title, title_justify="left", box=box.SIMPLE_HEAD)),
        Text(view.summary, style="bold red" if view.differs else "bold green"),
        *(Text(line, style="yellow") for line in view.also),
        Text(f"Verdicts: {view.rule}.", style="dim"),
    )


def verification_renderable(v: Verification) -> RenderableType:
    return compliance_renderable(compliance_view(v))


def plain_text(renderable: RenderableType, width: int = 140) -> str:
    """`renderable` as uncoloured text (for --format table --output FILE)."""
    buffer = StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(renderable)
    return buffer.getvalue()


def attribution_view_renderable(view: AttributionView) -> RenderableType:
    parts: list[RenderableType] = [Text(view.title, style="bold")]
    if view.origin:
        parts.append(Text(view.origin, style="dim"))
    parts += [Text(f"Note: {n.text}.", style="bold red" if n.strong else "yellow") for n in view.notes]
    parts += [Text(f"Missing: {item}", style="yellow") for item in view.missing]
    parts += [Text(f"• {line}") for line in view.summary]
    for grid, title in (
        (view.values, "Published, re-evaluated, retrained (percent ± stderr)"),
        (view.split, "The split of the gap"),
        (view.base, view.base_title),
    ):
        if grid is not None:
            parts.append(_rich_table(grid, Table(title=title, title_justify="left")))
    parts += [Text(f"{line}.", style="dim") for line in view.legend]
    return Group(*parts)


def attribution_renderable(a: Attribution, origin: str = "") -> RenderableType:
    """Where a run's gap comes from, for the terminal."""
    return attribution_view_renderable(attribution_view(a, origin))
