"""The report's "Recipe compliance" section: verify-run's verdicts on the training it reports on."""

from __future__ import annotations

import json
from pathlib import Path

from gpt4allj_kit.report.build import COMPLIANCE_FILE, build_report


def test_the_report_shows_each_rule_with_expected_found_and_verdict(hand_made, tmp_path: Path) -> None:
    run = hand_made(lr=2e-3).finish()
    root = run.write()
    result = build_report(root, tmp_path / "report")
    assert result.compliance is not None and result.compliance.recipe == "gpt4all-j"  # not a tiny model
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Recipe compliance: against recipe 'gpt4all-j'" in markdown
    assert "| Rule | Expected | Found | Verdict |" in markdown
    assert "| **lr** | 2e-05 | 0.002 | differs (error) |" in markdown
    html = (tmp_path / "report" / "report.html").read_text()
    assert '<span class="differs">differs (error)</span>' in html and '<span class="pass">pass</span>' in html
    saved = json.loads((tmp_path / "report" / COMPLIANCE_FILE).read_text())
    assert saved["recipe"] == "gpt4all-j" and saved["differs"] is True
    manifest = json.loads((tmp_path / "report" / "manifest.json").read_text())
    assert manifest["compliance"]["differs"] >= 1 and "lr" in manifest["compliance"]["differing"]
    assert COMPLIANCE_FILE in manifest["outputs"] and all(p.suffix == ".png" for p in result.pngs)


def test_a_training_that_cannot_be_checked_is_a_missing_item_not_a_failure(hand_made, tmp_path: Path) -> None:
    root = hand_made().finish().write()
    (root / "trace.jsonl").write_text('{"launch": true}\nnot json\n{"launch": true}\n')
    result = build_report(root, tmp_path / "report")
    assert result.compliance is None
    assert any(
        m.startswith("recipe compliance could not be checked") and "line 2" in m for m in result.missing
    )
    assert "Recipe compliance" not in (tmp_path / "report" / "report.md").read_text()
