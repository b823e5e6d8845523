"""The evaluation-stack band: a second verdict shown beside the 2·stderr one, only for rows a source
documents, never changing the verdict, `reproduced`, `--fail-on-diff` or the exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpt4allj_kit import paths
from gpt4allj_kit.compare import compare_path, read_comparison
from gpt4allj_kit.compare.comparison import NO_BAND, band_verdict, verdict
from gpt4allj_kit.published import load_eval_stack
from gpt4allj_kit.report import render
from gpt4allj_kit.report.view import band_summary, comparison_view

# The dolly-v2 model card's lm-eval numbers for EleutherAI/gpt-j-6B, in percent: a re-evaluation of the
# published GPT-J row's own checkpoint on another evaluation stack.
DOLLY_GPTJ = {
    "openbookqa": 38.2, "arc_easy": 62.1633, "winogrande": 65.1144, "hellaswag": 66.2617,
    "arc_challenge": 36.3481, "piqa": 76.1153, "boolq": 65.5963,
}  # fmt: skip
TIGHT = 0.0025  # a stderr (fraction) of 0.25 points: the main verdict sees WinoGrande's 1-point gap


def test_verdict_with_band_adds_the_band_to_two_stderrs() -> None:
    assert verdict(2.0, 1.0) == "reproduced" and verdict(2.01, 1.0) == "differs"
    assert band_verdict(2.5, 1.0, 0.5) == "reproduced" and band_verdict(2.51, 1.0, 0.5) == "differs"
    assert band_verdict(0.0, 1.0, None) is None


def test_the_published_gpt_j_row_evaluated_elsewhere_is_within_its_band(write_results, table) -> None:
    """The dolly-v2 card's numbers against the GPT-J row: WinoGrande's 1.01 points differ by 2·stderr,
    and are within 2·stderr + band; the main verdict and `reproduced` stay as they were."""
    c = compare_path(write_results(DOLLY_GPTJ, stderr=TIGHT), "base", table=table)
    cells = {cell.label: cell for cell in c.cells}
    assert c.differing == ["WinoGrande"] and not c.reproduced
    assert cells["WinoGrande"].verdict == "differs" and cells["WinoGrande"].band_verdict == "reproduced"
    assert cells["WinoGrande"].band == pytest.approx(1.0144)
    assert c.differing_with_band == [] and c.average.band_verdict == "reproduced"
    assert c.average.band == pytest.approx(sum(cell.band or 0 for cell in c.cells) / 7)
    assert c.band is not None and c.band.row == "GPT-J 6.7B" and "[dolly-v2-model-card]" in c.band.source
    assert band_summary(c) == (
        "with the evaluation-stack band of GPT-J 6.7B: all 7 cells reproduced; average reproduced"
    )


def test_a_verdict_never_widens_beyond_its_band(write_results, table) -> None:
    """A cell 0.1 point outside 2·stderr + band differs in both verdicts; BoolQ inside 2·stderr stays."""
    band = load_eval_stack(table).band(table.row("base"))
    assert band is not None
    values = dict(table.row("base").values)
    values["winogrande"] += 2 * TIGHT * 100 + band.cells["winogrande"] + 0.1
    c = compare_path(write_results(values, stderr=TIGHT), "base", table=table)
    assert c.differing == ["WinoGrande"] and c.differing_with_band == ["WinoGrande"]
    assert all(cell.band_verdict == "reproduced" for cell in c.cells if cell.label != "WinoGrande")


def test_rows_without_a_documented_band_say_so(write_results, table) -> None:
    c = compare_path(write_results(dict(table.row("v1.2-jazzy").values)), "v1.2-jazzy", table=table)
    assert c.band is None and c.differing_with_band is None
    assert all(cell.band is None and cell.band_verdict is None for cell in c.cells)
    assert c.average.band is None and c.reproduced
    view = comparison_view(c)
    assert [row.cells[-1].text for row in view.grid.rows] == [NO_BAND] * 8
    assert view.band_summary == f"{NO_BAND} for GPT4All-J v1.2-jazzy: only the 2·stderr verdict applies"
    for text in (render.comparison_markdown(c), render.comparison_html(c), c.to_json()):
        assert NO_BAND in text
    assert json.loads(c.to_json())["differing_with_band"] is None


def test_every_format_shows_the_band_apart(write_results, table, kit_cli) -> None:
    path = write_results(DOLLY_GPTJ, stderr=TIGHT)
    c = compare_path(path, "base", table=table)
    md = render.comparison_markdown(c)
    assert "| Verdict | Band | With band |" in md
    assert "| WinoGrande | acc | 64.1 | 65.11 | +1.01 | 0.25 | 1000 | differs | ±1.01 | reproduced |" in md
    assert "Band: **with the evaluation-stack band of GPT-J 6.7B: all 7 cells reproduced" in md
    assert "Band source: band of GPT-J 6.7B from [dolly-v2-model-card]" in md
    page = render.comparison_html(c)
    assert '<td class="num">±1.01</td><td><span class="reproduced">reproduced</span></td>' in page
    text = " ".join(render.plain_text(render.comparison_renderable(c), width=200).split())
    assert "Band: with the evaluation-stack band of GPT-J 6.7B" in text and "Band source:" in text
    data = json.loads(c.to_json())
    assert data["differing"] == ["WinoGrande"] and data["differing_with_band"] == []
    assert data["cells"][3]["band_verdict"] == "reproduced" and data["band"]["row"] == "GPT-J 6.7B"

    # The band changes no exit code: --fail-on-diff fails on WinoGrande as it did before bands.
    proc = kit_cli("compare", path, "--against", "base", "--fail-on-diff")
    assert proc.returncode == 1, proc.stderr
    assert "1 of 7 cells differ (WinoGrande)" in proc.stdout
    assert "with the evaluation-stack band of GPT-J 6.7B: all 7 cells reproduced" in proc.stdout


def test_a_comparison_stored_before_bands_reads_back_without_one(write_results, table, tmp_path) -> None:
    c = compare_path(write_results(DOLLY_GPTJ, stderr=TIGHT), "base", table=table)
    data = json.loads(c.to_json())
    for key in ("band", "band_rule", "differing_with_band"):
        data.pop(key)
    for cell in [*data["cells"], data["average"]]:
        cell.pop("band")
        cell.pop("band_verdict")
    for row in data["table"]:
        row.pop("source")
        row.pop("printed_average")
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    old = read_comparison(path)
    assert old.band is None and old.differing == ["WinoGrande"]
    assert NO_BAND in render.comparison_markdown(old)


def test_a_broken_band_file_is_one_line_exit_2(write_results, table, kit_cli, tmp_path: Path) -> None:
    """compare reads the band file beside the table (GPT4ALLJ_KIT_ROOT): a bad one stops it with a line
    naming the file, the band row and the unknown source id."""
    root = tmp_path / "root"
    (root / "reports" / "published").mkdir(parents=True)
    real = paths.published_dir()
    (root / "reports" / "published" / "zero_shot.yaml").write_text((real / "zero_shot.yaml").read_text())
    bad = (real / "eval_stack.yaml").read_text().replace("source: dolly-v2-model-card", "source: dolly")
    band_file = root / "reports" / "published" / "eval_stack.yaml"
    band_file.write_text(bad)
    proc = kit_cli(
        "compare", write_results(DOLLY_GPTJ), "--against", "base", env={"GPT4ALLJ_KIT_ROOT": str(root)}
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
    assert str(band_file) in line and "band row 'GPT-J 6.7B'" in line and "unknown source id 'dolly'" in line
