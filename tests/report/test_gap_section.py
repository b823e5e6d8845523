"""The report's "Where the gap comes from": read from the compare stage's attribution.json, made here for a
run without it, and what is missing said when the pieces are not there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from gpt4allj_kit import paths
from gpt4allj_kit.compare.attribution import attribute_run
from gpt4allj_kit.compare.stage import write_comparisons
from gpt4allj_kit.published import load_published_table
from gpt4allj_kit.report.build import build_report

KEYS = ("boolq", "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa")
SECTION = "## Where the gap comes from: GPT4All-J v1.2-jazzy"


def docs(count: int, n: int = 100) -> list[int]:
    return [1] * count + [0] * (n - count)


@pytest.fixture
def run_dir(tmp_path: Path, scored_eval) -> Path:
    """A run of revision v1.2-jazzy with two epochs, the published checkpoint and the base model evaluated."""
    root = tmp_path / "run"
    for label, right in (("epoch_1", 70), ("epoch_2", 76), ("published", 74), ("base", 66)):
        scored_eval(root / "eval" / label, dict.fromkeys(KEYS, docs(right)))
    (root / "run.json").write_text(json.dumps({"revision": "v1.2-jazzy"}))
    return root


def compare_stage(root: Path) -> None:
    table = load_published_table()
    row = table.row("v1.2-jazzy")
    write_comparisons(
        root / "eval",
        root / "compare",
        against=lambda label: table.row("base") if label == "base" else row,
        table=table,
        command="gpt4allj-kit reproduce",
        attribute_against=row,
    )


def section(md: str) -> str:
    start = md.index("## Where the gap comes from")
    end = md.find("\n## ", start + 1)
    return md[start : end if end > 0 else None]


def test_the_report_shows_the_compare_stages_attribution(run_dir: Path) -> None:
    compare_stage(run_dir)
    result = build_report(run_dir)
    md = (run_dir / "report" / "report.md").read_text()
    gap = section(md)
    assert gap.startswith(SECTION) and "From compare/attribution.json (the compare stage's)." in gap
    # epoch_2 is the published checkpoint's 74 right and 2 more per task: +2 of training drift, closest;
    # 2 documents are no evidence on one task (McNemar p = 0.5), 14 all one way on the average are.
    assert "- epoch_2: total gap on Avg " in gap and "+ training +2.00 (paired, 95% CI [" in gap
    assert "closest to the released checkpoint on Avg: epoch_2: 2.00 points from R, differs" in gap
    assert "| BoolQ | acc | 74.8 | 74.00 ± 4.41 | 70.00 ± 4.61 | 76.00 ± 4.29 |" in gap
    assert "| BoolQ | -0.80 ± 4.41 | reproduced | -4.00 [" in gap
    assert "| epoch_2: 2.00 points from R, not significant |" in gap
    assert "**Base model: GPT-J 6.7B (published) vs our evaluation**" in gap
    # The GPT-J row's documented evaluation-stack band (0.20 on BoolQ) gives a second verdict beside.
    assert (
        "| BoolQ | acc | 65.4 | 66.00 ± 4.76 | +0.60 ± 4.76 | reproduced; with band 0.20: reproduced |" in gap
    )
    assert "Band of GPT-J 6.7B: reproduced when |Δ| ≤ 2·stderr + band" in gap
    html = (run_dir / "report" / "report.html").read_text()
    assert "<h2>Where the gap comes from: GPT4All-J v1.2-jazzy</h2>" in html
    assert '<span class="not significant">' in html
    manifest = json.loads((run_dir / "report" / "manifest.json").read_text())
    assert manifest["attribution"] == {
        "from": "compare/attribution.json", "row": "GPT4All-J v1.2-jazzy", "split": True, "missing": []
    }  # fmt: skip
    assert "compare/attribution.json" in manifest["inputs"]
    assert result.attribution is not None and result.attribution.split
    # attribution.json, beside the comparisons, is not read as one of them.
    assert len(result.comparisons) == 4 and "not a stored comparison" not in md


def test_a_run_without_attribution_json_gets_one_made_here(run_dir: Path) -> None:
    build_report(run_dir)  # no compare/ at all: an older run
    gap = section((run_dir / "report" / "report.md").read_text())
    assert gap.startswith(SECTION)
    assert "No compare/attribution.json: made here from the evaluations." in gap
    assert "+ training +2.00 (paired, 95% CI [" in gap
    # The same as the compare stage would have written.
    compare_stage(run_dir)
    build_report(run_dir)
    stored = section((run_dir / "report" / "report.md").read_text())
    assert stored.replace("From compare/attribution.json (the compare stage's).", "") == gap.replace(
        "No compare/attribution.json: made here from the evaluations.", ""
    )


def test_an_unreadable_attribution_json_is_said_and_made_again(run_dir: Path) -> None:
    compare_stage(run_dir)
    (run_dir / "compare" / paths.ATTRIBUTION).write_text("{torn")
    build_report(run_dir)
    gap = section((run_dir / "report" / "report.md").read_text())
    assert "compare/attribution.json cannot be read (" in gap and "made here from the evaluations" in gap
    assert "+ training +2.00 (paired" in gap


def test_what_is_missing_is_said(run_dir: Path) -> None:
    shutil.rmtree(run_dir / "eval" / "base")
    shutil.rmtree(run_dir / "eval" / "epoch_1" / "samples")
    build_report(run_dir)
    gap = section((run_dir / "report" / "report.md").read_text())
    assert "- epoch_1: no paired test against the re-evaluated published checkpoint (" in gap
    assert "no such samples file" in gap
    assert "- no evaluation of the base model (eval/base/): no base row" in gap
    assert "Base model" not in gap and "+ training +2.00 (paired" in gap  # epoch_2 is still paired
    shutil.rmtree(run_dir / "eval" / "published")
    build_report(run_dir)
    gap = section((run_dir / "report" / "report.md").read_text())
    assert "- no evaluation of the published checkpoint (eval/published/): no split" in gap
    assert "Training drift" not in gap


def test_a_single_evaluation_has_no_gap_section(tmp_path: Path, scored_eval) -> None:
    folder = scored_eval(tmp_path / "final", dict.fromkeys(KEYS, docs(70)))
    build_report(folder)
    assert "Where the gap comes from" not in (folder / "report" / "report.md").read_text()


def test_attribute_run_is_what_the_report_shows(run_dir: Path) -> None:
    a = attribute_run(run_dir)
    build_report(run_dir)
    gap = section((run_dir / "report" / "report.md").read_text())
    assert f"{a.released.average.eval_stack.delta:+.2f} ± " in gap  # type: ignore[union-attr]
