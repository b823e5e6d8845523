"""One view model, three layouts: the terminal table, Markdown and HTML show the same cells and verdicts."""

from __future__ import annotations

import re

import pytest
from gpt4allj_kit.compare import Comparison, Measured, Score, compare
from gpt4allj_kit.published import PublishedTable, load_published_table
from gpt4allj_kit.report import render
from gpt4allj_kit.report.view import comparison_view


@pytest.fixture(scope="module")
def table() -> PublishedTable:
    return load_published_table()


def _comparison(table: PublishedTable, shift: dict[str, float], note: str | None = None) -> Comparison:
    row = table.row("v1.2-jazzy")
    scores = {
        c.key: Score(
            task=c.task, metric=c.metric, value=(row.values[c.key] + shift.get(c.key, 0)) / 100, stderr=0.01
        )
        for c in table.columns
    }
    measured = Measured(
        source="results.json",
        layout="lm-eval 0.4",
        label="final",
        notes=(note,) if note else (),
        scores=scores,
    )
    return compare(measured, row, table)


def test_every_layout_shows_the_view_models_cells(table: PublishedTable) -> None:
    c = _comparison(table, {"piqa": 5.0})
    view = comparison_view(c)
    md = render.comparison_markdown(c)
    page = render.comparison_html(c)
    text = render.plain_text(render.comparison_renderable(c), width=200)
    for row in view.grid.rows:
        texts = [cell.text for cell in row.cells]
        assert re.search(r"\s*│\s*".join(map(re.escape, texts)), text), texts
        if row.kind != "total":
            assert "| " + " | ".join(texts) + " |" in md
        assert all(t in page for t in texts)
    assert view.summary == "1 of 7 cells differ (PIQA); average reproduced"
    assert view.summary in md and view.summary in page and view.summary in text
    assert '<td><span class="differs">differs</span></td>' in page and "| **Avg** | mean |" in md


def test_html_is_escaped_markdown_is_not(table: PublishedTable) -> None:
    c = _comparison(table, {}, note='a <b>bold</b> & "quoted" note')
    page = render.comparison_html(c)
    assert "<b>bold</b>" not in page and "a &lt;b&gt;bold&lt;/b&gt; &amp; &#34;quoted&#34; note" in page
    assert '> Note: a <b>bold</b> & "quoted" note.' in render.comparison_markdown(c)


def test_bare_published_table_has_no_mark_column(table: PublishedTable) -> None:
    text = render.plain_text(render.published_table_renderable(table), width=200)
    assert "◀" not in text and "Sources:\n" in text
    flat = " ".join(text.split())
    assert all(" ".join(citation.split()) in flat for citation in table.citations)
    assert "plain mean of the 7 cells" in text
    for row in table.rows:
        assert row.name in text


def test_templates_ship_with_the_package() -> None:
    names = {p.name for p in render.TEMPLATES.iterdir()}
    assert {"page.html.j2", "style.css", "comparison.md.j2", "report.md.j2", "report.html.j2"} <= names
