"""Comparisons and the published table as Markdown, JSON, self-contained HTML and rich renderables.

Renderers return strings or renderables; they never print. HTML needs nothing from the network: the CSS is
inline and the sources appear as plain text.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gpt4allj_kit.compare import Comparison, TableRow, regenerated_table
from gpt4allj_kit.published import Column, PublishedTable

OURS_MARK = "◀ ours"
COMPARED_MARK = "◀ compared"


def _pct(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _row_mark(row: TableRow) -> str:
    return OURS_MARK if row.ours else (COMPARED_MARK if row.compared else "")


def _provenance(c: Comparison) -> str:
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


def _summary_line(c: Comparison) -> str:
    if c.reproduced:
        return f"all 7 cells reproduced; average {c.average.verdict}"
    return f"{len(c.differing)} of 7 cells differ ({', '.join(c.differing)}); average {c.average.verdict}"


# --- Markdown ------------------------------------------------------------------------------------------


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_published(rows: Sequence[TableRow], columns: Sequence[Column], title: str) -> str:
    header = ["Model", *(c.label for c in columns), "Avg", ""]
    body = []
    for row in rows:
        digits = 2 if row.ours else 1
        cells = [_pct(row.values[c.key], digits) for c in columns] + [_pct(row.average, digits)]
        if row.ours:
            body.append([f"**{row.name}**", *(f"**{v}**" for v in cells), OURS_MARK])
        else:
            body.append([row.name, *cells, _row_mark(row)])
    note = (
        "Avg is computed as the plain mean of the seven cells (never copied). Metrics: "
        + ", ".join(f"{c.label} {c.metric}" for c in columns)
        + "; zero-shot."
    )
    return (
        f"**{title}** (percent)\n\n"
        + _md_table(header, body, ["l", *"r" * (len(columns) + 1), "l"])
        + f"\n\n{note}\n"
    )


COMPARISON_HEADER = ["Task", "Metric", "Report", "Ours", "Δ", "Our stderr", "n", "Verdict"]


def comparison_rows(
    c: Comparison, *, text: Callable[[str], str], avg_label: str, verdict: Callable[[str], str]
) -> list[list[str]]:
    """The seven cells and the average as table rows; `text` escapes names, `verdict` styles verdicts."""
    rows = [
        [
            text(cell.label),
            text(cell.metric),
            _pct(cell.reported, 1),
            _pct(cell.ours),
            _signed(cell.delta),
            _pct(cell.stderr),
            "—" if cell.n is None else str(cell.n),
            verdict(cell.verdict),
        ]
        for cell in c.cells
    ]
    a = c.average
    avg = [avg_label, "mean", _pct(a.reported), _pct(a.ours), _signed(a.delta), _pct(a.stderr) + "*", ""]
    return [*rows, [*avg, verdict(a.verdict)]]


def markdown(c: Comparison, *, heading_level: int = 2, with_table: bool = True) -> str:
    h = "#" * heading_level
    out = [f"{h} {c.ours_name} vs {c.against} (published)", ""]
    out += [f"> **Note: {n}.**" if "not comparable" in n else f"> Note: {n}." for n in c.notes]
    if c.notes:
        out.append("")
    out += [f"Ours: {_provenance(c)}.", "", f"Result: **{_summary_line(c)}**.", ""]
    rows = comparison_rows(c, text=str, avg_label="**Avg**", verdict=str)
    out.append(_md_table(COMPARISON_HEADER, rows, ["l", "l", "r", "r", "r", "r", "r", "l"]))
    out += ["", f"Rule: {c.rule}. (*) independence assumed.", ""]
    if with_table:
        out += [
            f"{h}# Published table with our row",
            "",
            markdown_published(c.table, c.columns, c.table_title),
        ]
        out += ["Sources: " + "; ".join(c.sources), ""]
    return "\n".join(out)


# --- JSON ----------------------------------------------------------------------------------------------


def json_text(c: Comparison) -> str:
    data = c.model_dump(mode="json")
    data["reproduced"] = c.reproduced
    data["differing"] = c.differing
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def json_published(rows: Sequence[TableRow], columns: Sequence[Column], title: str) -> str:
    data = {
        "title": title,
        "columns": [c.model_dump() for c in columns],
        "rows": [r.model_dump() for r in rows],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# --- HTML ----------------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:#1f2328;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.3rem;margin-top:2.2rem;border-bottom:1px solid #d0d7de;
padding-bottom:.3rem}h3{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.92rem}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem}th{background:#f6f8fa;text-align:left}
th[scope=row]{white-space:nowrap;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.ours td{background:#fff8c5;font-weight:600}tr.compared td{background:#ddf4ff}
.reproduced{color:#1a7f37;font-weight:600}.differs{color:#cf222e;font-weight:600}
.note{border-left:4px solid #bf8700;background:#fff8c5;padding:.5rem .8rem;margin:.8rem 0}
.note.strong{border-color:#cf222e;background:#ffebe9;font-weight:600}
.missing{border-left:4px solid #8c959f;background:#f6f8fa;padding:.5rem .8rem}
.muted{color:#59636e;font-size:.9rem}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:.85rem}pre{background:#f6f8fa;padding:.7rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
img{max-width:100%;height:auto;border:1px solid #d0d7de;margin:.5rem 0}
details{margin:.4rem 0}summary{cursor:pointer}
"""


def e(text: object) -> str:
    return html.escape(str(text), quote=True)


def html_table(
    header: Sequence[str] | None,
    rows: Sequence[Sequence[str]],
    *,
    numeric: Sequence[bool],
    row_classes: Sequence[str] | None = None,
) -> str:
    """A table from already-escaped cell HTML; without a header its first column names the rows."""
    head = f"<thead><tr>{''.join(f'<th>{h}</th>' for h in header)}</tr></thead>" if header else ""
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        tds = "".join(
            f'<td class="num">{v}</td>'
            if numeric[j]
            else (f'<th scope="row">{v}</th>' if j == 0 and not header else f"<td>{v}</td>")
            for j, v in enumerate(row)
        )
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def html_published(rows: Sequence[TableRow], columns: Sequence[Column], title: str) -> str:
    header = ["Model", *(e(c.label) for c in columns), "Avg", ""]
    body = []
    for row in rows:
        digits = 2 if row.ours else 1
        cells = [_pct(row.values[c.key], digits) for c in columns] + [_pct(row.average, digits)]
        body.append([e(row.name), *cells, e(_row_mark(row))])
    classes = ["ours" if r.ours else ("compared" if r.compared else "") for r in rows]
    metrics = ", ".join(f"{e(c.label)} {e(c.metric)}" for c in columns)
    return (
        f"<p><strong>{e(title)}</strong> (percent)</p>"
        + html_table(header, body, numeric=[False, *[True] * (len(columns) + 1), False], row_classes=classes)
        + '<p class="muted">Avg is the plain mean of the seven cells, computed. '
        + f"Metrics: {metrics}; zero-shot.</p>"
    )


def html_notes(notes: Sequence[str]) -> str:
    return "".join(
        f'<div class="note strong">Note: {e(n)}.</div>'
        if "not comparable" in n
        else f'<div class="note">Note: {e(n)}.</div>'
        for n in notes
    )


def html_fragment(c: Comparison, *, heading: str = "h2", with_table: bool = True) -> str:
    sub = "h3" if heading == "h2" else "h4"
    rows = comparison_rows(
        c, text=e, avg_label="<strong>Avg</strong>", verdict=lambda v: f'<span class="{v}">{v}</span>'
    )
    return (
        f"<{heading}>{e(c.ours_name)} vs {e(c.against)} (published)</{heading}>"
        + html_notes(c.notes)
        + f'<p class="muted">Ours: {e(_provenance(c))}.</p>'
        + f"<p>Result: <strong>{e(_summary_line(c))}</strong>.</p>"
        + html_table(COMPARISON_HEADER, rows, numeric=[False, False, True, True, True, True, True, False])
        + f'<p class="muted">Rule: {e(c.rule)}. (*) independence assumed.</p>'
        + (
            f"<{sub}>Published table with our row</{sub}>"
            + html_published(c.table, c.columns, c.table_title)
            + f'<p class="muted">Sources: {e("; ".join(c.sources))}</p>'
            if with_table
            else ""
        )
    )


def html_page(title: str, body: str) -> str:
    """A complete, self-contained page: inline CSS, no scripts, fonts or remote resources."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def html_document(c: Comparison) -> str:
    return html_page(f"gpt4allj-kit: {c.ours_name} vs {c.against}", html_fragment(c, heading="h1"))


# --- rich (terminal) -----------------------------------------------------------------------------------


def rich_published(rows: Sequence[TableRow], columns: Sequence[Column], title: str) -> Table:
    metrics = ", ".join(f"{c.label} {c.metric}" for c in columns)
    table = Table(
        title=f"{title} (percent)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        caption=f"Avg computed (mean of the 7). Metrics: {metrics}; zero-shot."
        + (" Bold yellow: ours; cyan: the row compared with." if any(r.ours for r in rows) else ""),
        caption_justify="left",
    )
    table.add_column("Model", min_width=14)
    for c in columns:
        table.add_column(c.label, justify="right")
    table.add_column("Avg", justify="right")
    for row in rows:
        digits = 2 if row.ours else 1
        style = "bold yellow" if row.ours else ("cyan" if row.compared else None)
        cells = [_pct(row.values[c.key], digits) for c in columns] + [_pct(row.average, digits)]
        name = f"{row.name} {_row_mark(row)}" if row.ours or row.compared else row.name
        table.add_row(name, *cells, style=style)
    return table


def rich_comparison(c: Comparison) -> RenderableType:
    parts: list[RenderableType] = []
    for note in c.notes:
        style = "bold red" if "not comparable" in note else "yellow"
        parts.append(Text(f"Note: {note}.", style=style))
    table = Table(title=f"{c.ours_name} vs {c.against} (published)", title_justify="left")
    for name, justify in [
        ("Task", "left"),
        ("Metric", "left"),
        ("Report", "right"),
        ("Ours", "right"),
        ("Δ", "right"),
        ("Our stderr", "right"),
        ("n", "right"),
        ("Verdict", "left"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for cell in c.cells:
        colour = "green" if cell.verdict == "reproduced" else "red"
        table.add_row(
            cell.label,
            cell.metric,
            _pct(cell.reported, 1),
            _pct(cell.ours),
            _signed(cell.delta),
            _pct(cell.stderr),
            "—" if cell.n is None else str(cell.n),
            Text(cell.verdict, style=colour),
        )
    a = c.average
    table.add_row(
        "Avg",
        "mean",
        _pct(a.reported),
        _pct(a.ours),
        _signed(a.delta),
        _pct(a.stderr) + "*",
        "",
        Text(a.verdict, style="green" if a.verdict == "reproduced" else "red"),
        end_section=True,
    )
    parts += [
        Text(f"Ours: {_provenance(c)}", style="dim"),
        table,
        Text(f"Rule: {c.rule}. (*) independence assumed.", style="dim"),
        Text(_summary_line(c), style="bold green" if c.reproduced else "bold red"),
        rich_published(c.table, c.columns, c.table_title),
    ]
    return Group(*parts)


def plain_text(renderable: RenderableType, width: int = 140) -> str:
    """`renderable` as uncoloured text (for --format table --output FILE)."""
    from io import StringIO

    from rich.console import Console

    buffer = StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(renderable)
    return buffer.getvalue()


def published_rows(table: PublishedTable) -> tuple[TableRow, ...]:
    return regenerated_table(table)
