"""`compare`: crafted lm-eval results judged against the published table, by stderr."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from gpt4allj_kit.compare import compare_path, read_measured
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.published import PublishedTable
from gpt4allj_kit.report import render

STDERR_PCT = 1.2


def jazzy(table: PublishedTable) -> dict[str, float]:
    return dict(table.row("v1.2-jazzy").values)


def one_line_error(proc, code: int) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_exactly_the_published_row_is_reproduced(write_results, table, kit_cli) -> None:
    path = write_results(jazzy(table))
    c = compare_path(path, "v1.2-jazzy", table=table)
    assert c.against == "GPT4All-J v1.2-jazzy"
    assert [cell.verdict for cell in c.cells] == ["reproduced"] * 7
    assert c.reproduced and c.average.verdict == "reproduced"
    for cell in c.cells:
        assert cell.ours == pytest.approx(cell.reported) and cell.delta == pytest.approx(0, abs=1e-9)
        assert cell.stderr == pytest.approx(STDERR_PCT)
        assert cell.n == 1000
    # The report's metric per column, not the other one written beside it.
    assert {cell.label: cell.metric for cell in c.cells}["PIQA"] == "acc_norm"
    assert {cell.label: cell.metric for cell in c.cells}["BoolQ"] == "acc"
    assert c.average.reported == pytest.approx(sum(jazzy(table).values()) / 7)
    assert c.average.stderr == pytest.approx((7 * STDERR_PCT**2) ** 0.5 / 7)

    proc = kit_cli("compare", path, "--against", "v1.2-jazzy", "--fail-on-diff")
    assert proc.returncode == 0, proc.stderr
    assert "all 7 cells reproduced; average reproduced" in proc.stdout


def test_cells_moved_by_three_stderrs_differ(write_results, table, kit_cli) -> None:
    values = jazzy(table)
    values["boolq"] += 3 * STDERR_PCT
    values["arc_challenge"] -= 3 * STDERR_PCT
    values["piqa"] += 1.9 * STDERR_PCT  # inside the 2-sigma band
    path = write_results(values)
    c = compare_path(path, "v1.2-jazzy", table=table)
    assert c.differing == ["BoolQ", "ARC-c"]
    assert {cell.label: cell.verdict for cell in c.cells}["PIQA"] == "reproduced"
    assert {cell.label: round(cell.delta, 6) for cell in c.cells}["BoolQ"] == pytest.approx(3 * STDERR_PCT)

    assert kit_cli("compare", path, "--against", "v1.2-jazzy").returncode == 0
    failing = kit_cli("compare", path, "--against", "v1.2-jazzy", "--fail-on-diff")
    assert failing.returncode == 1, failing.stderr
    assert "2 of 7 cells differ (BoolQ, ARC-c)" in failing.stdout


def test_missing_task_is_one_line_exit_2(write_results, table, kit_cli) -> None:
    path = write_results(jazzy(table), drop=("winogrande",))
    line = one_line_error(kit_cli("compare", path, "--against", "v1.2-jazzy"), 2)
    assert "missing tasks winogrande" in line


def test_malformed_json_is_one_line_exit_2(tmp_path: Path, kit_cli) -> None:
    path = tmp_path / "results.json"
    path.write_text('{"results": {"boolq": {"acc,none": 0.7,')
    assert "malformed JSON" in one_line_error(kit_cli("compare", path), 2)


def test_older_lm_eval_layout_is_parsed(write_results, table) -> None:
    new = read_measured(write_results(jazzy(table)), table=table)
    old = read_measured(write_results(jazzy(table), name="old/results.json", layout="0.3"), table=table)
    assert (new.layout, old.layout) == ("lm-eval 0.4", "lm-eval 0.3")
    assert {k: s.value for k, s in old.scores.items()} == {k: s.value for k, s in new.scores.items()}
    assert compare_path(Path(old.source), "v1.2-jazzy", table=table).reproduced


@pytest.mark.parametrize(
    "document",
    [
        {"name": "not lm-eval at all", "values": [1, 2, 3]},
        {"results": {"squad": {"exact,none": 0.5, "exact_stderr,none": 0.01}}},
        [1, 2, 3],
    ],
)
def test_foreign_json_is_exit_2(tmp_path: Path, document: object) -> None:
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=r"not an lm-eval results file|none of the tasks"):
        compare_path(path)


def test_foreign_json_cli(tmp_path: Path, kit_cli) -> None:
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps({"hello": "world"}))
    assert "not an lm-eval results file" in one_line_error(kit_cli("compare", path), 2)


def test_results_without_stderr_are_refused(write_results, table) -> None:
    path = write_results(jazzy(table), stderr="N/A")  # lm-eval with bootstrap_iters=0
    with pytest.raises(ConfigError, match="no acc stderr"):
        compare_path(path, table=table)


def test_unknown_row_lists_the_rows(write_results, table, kit_cli) -> None:
    line = one_line_error(kit_cli("compare", write_results(jazzy(table)), "--against", "v9-nope"), 2)
    assert "unknown row 'v9-nope'" in line
    for name in table.row_names:
        assert name in line


def test_against_takes_names_aliases_and_revisions_and_defaults_to_the_models_row(
    write_results, table
) -> None:
    path = write_results(jazzy(table))
    assert compare_path(path, "base", table=table).against == "GPT-J 6.7B"
    assert compare_path(path, "Dolly 6B", table=table).against == "Dolly 6B"
    assert compare_path(path, "V1.3-GROOVY", table=table).against == "GPT4All-J v1.3-groovy"
    # results.json says pretrained=nomic-ai/gpt4all-j,revision=v1.2-jazzy
    assert compare_path(path, table=table).against == "GPT4All-J v1.2-jazzy"


def test_regenerated_table_has_every_row_plus_ours_after_the_compared_one(write_results, table) -> None:
    c = compare_path(write_results(jazzy(table)), "v1.1-breezy", table=table)
    names = [r.name for r in c.table]
    assert [n for n in names if not n.startswith("ours")] == table.row_names
    ours = [r for r in c.table if r.ours]
    assert len(ours) == 1 and names.index(ours[0].name) == names.index("GPT4All-J v1.1-breezy") + 1
    assert [r.name for r in c.table if r.compared] == ["GPT4All-J v1.1-breezy"]
    for row in c.table:
        assert row.average == pytest.approx(sum(row.values.values()) / 7)
    # computed, not copied: v1.0's published 58.2 is 58.2 recomputed; breezy's 57.8 is 57.8
    assert round(next(r for r in c.table if r.name == "GPT4All-J 6B v1.0").average, 1) == 58.2


def test_markdown_json_html_renderings(write_results, table) -> None:
    values = jazzy(table)
    values["hellaswag"] += 3 * STDERR_PCT
    c = compare_path(write_results(values), "v1.2-jazzy", table=table)

    md = render.comparison_markdown(c)
    assert "| HellaSwag | acc_norm | 63.6 | 67.20 | +3.60 | 1.20 | 1000 | differs |" in md
    assert "| BoolQ | acc | 74.8 | 74.80 | +0.00 | 1.20 | 1000 | reproduced |" in md
    assert md.count("◀ ours") == 1 and "**ours: " in md
    assert all(name in md for name in table.row_names)

    data = json.loads(c.to_json())
    assert data["against"] == "GPT4All-J v1.2-jazzy" and data["differing"] == ["HellaSwag"]
    assert (
        data["reproduced"] is False and len(data["cells"]) == 7 and len(data["table"]) == len(table.rows) + 1
    )
    assert data["average"]["stderr"] == pytest.approx(STDERR_PCT / 7**0.5)

    page = render.comparison_html(c)
    assert page.startswith("<!DOCTYPE html>") and '<tr class="ours">' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and '<span class="differs">differs</span>' in page


def test_cli_formats_and_output_with_manifest(write_results, table, kit_cli, tmp_path: Path) -> None:
    path = write_results(jazzy(table))
    proc = kit_cli("compare", path, "--against", "v1.2-jazzy", "--format", "json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["reproduced"] is True
    out = tmp_path / "out" / "comparison.html"
    proc = kit_cli("compare", path, "--format", "html", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("<!DOCTYPE html>")
    manifest = json.loads((out.parent / "comparison.html.manifest.json").read_text())
    assert manifest["stage"] == "compare" and manifest["against"] == "GPT4All-J v1.2-jazzy"
    assert "compare" in manifest["command"]


def test_directory_with_summary_and_a_tiny_models_note(tmp_path: Path, write_results, table, kit_cli) -> None:
    folder = tmp_path / "eval" / "final"
    write_results(jazzy(table), name="eval/final/results.json")
    summary = {"model": "/runs/x/final", "revision": None, "label": "final", "comparable": False}
    (folder / "summary.json").write_text(json.dumps(summary))
    c = compare_path(tmp_path / "eval", "v1.2-jazzy", table=table)
    assert c.measured.label == "final" and not c.measured.comparable
    assert "a tiny random model is not comparable" in c.notes[0]
    assert "a tiny random model is not comparable" in render.comparison_markdown(c)
    proc = kit_cli("compare", tmp_path / "eval", "--against", "v1.2-jazzy")
    assert proc.returncode == 0 and "a tiny random model is not comparable" in proc.stdout
    noted = kit_cli(
        "compare", folder / "results.json", "--not-comparable", "--note", "smoke run", "--format", "markdown"
    )
    assert "not comparable" in noted.stdout and "smoke run" in noted.stdout


def test_kit_summary_alone_is_read(tmp_path: Path, table) -> None:
    tasks = {
        c.task: {c.metric: table.row("base").values[c.key] / 100, f"{c.metric}_stderr": 0.01}
        for c in table.columns
    }
    path = tmp_path / "summary.json"
    path.write_text(
        json.dumps({"model": "EleutherAI/gpt-j-6B", "revision": "main", "label": "base", "tasks": tasks})
    )
    c = compare_path(tmp_path, table=table)
    assert c.measured.layout == "kit summary"
    assert c.against == "GPT-J 6.7B" and c.reproduced


def test_directory_with_several_results_is_refused(tmp_path: Path, write_results, table) -> None:
    write_results(jazzy(table), name="a/results.json")
    write_results(jazzy(table), name="b/results.json")
    with pytest.raises(ConfigError, match="several results"):
        compare_path(tmp_path, table=table)


def test_results_on_task_fixtures_are_not_comparable(tmp_path: Path, write_results, table) -> None:
    write_results(jazzy(table), name="final/results.json")
    summary = {"label": "final", "model": "/runs/x/final", "fixtures": "/runs/x/fixtures"}
    (tmp_path / "final" / "summary.json").write_text(json.dumps(summary))
    c = compare_path(tmp_path / "final", "v1.2-jazzy", table=table)
    assert not c.measured.comparable
    assert c.notes == (
        "evaluated on the task fixtures in /runs/x/fixtures, not the published test sets: "
        "not comparable with the published numbers",
    )
