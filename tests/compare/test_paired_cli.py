"""`gpt4allj-kit compare A B`: two of our evaluations, document by document, through the installed CLI."""

from __future__ import annotations

import json
from pathlib import Path

from gpt4allj_kit.published import PublishedTable

SAME = {"boolq": [1, 0, 1, 1, 0, 1, 0, 1]}


def _differing_pair(scored_eval, tmp_path: Path) -> tuple[Path, Path]:
    a = scored_eval(tmp_path / "a", {"boolq": [1] * 12 + [0] * 8})
    b = scored_eval(tmp_path / "b", {"boolq": [0] * 20})
    return a, b


def test_a_model_against_itself_prints_same(
    scored_eval, tmp_path: Path, table: PublishedTable, kit_cli
) -> None:
    folder = scored_eval(tmp_path / "final", SAME)
    done = kit_cli("compare", folder, folder, "--fail-on-diff")
    assert done.returncode == 0, done.stderr
    assert "the same on every document of all 7 tasks" in done.stdout
    assert "McNemar" in done.stdout and "seed 1234" in done.stdout


def test_a_difference_is_found_and_fails_on_diff(
    scored_eval, tmp_path: Path, table: PublishedTable, kit_cli
) -> None:
    a, b = _differing_pair(scored_eval, tmp_path)
    done = kit_cli("compare", a, b)
    assert done.returncode == 0, done.stderr
    assert "1 of 7 tasks differ (BoolQ)" in done.stdout
    assert kit_cli("compare", a, b, "--fail-on-diff").returncode == 1
    data = json.loads(kit_cli("compare", a, b, "--format", "json").stdout)
    boolq = next(t for t in data[0]["tasks"] if t["key"] == "boolq")
    assert (boolq["only_a"], boolq["only_b"], boolq["delta"], boolq["verdict"]) == (12, 0, 60.0, "differs")
    assert data[0]["differing"] == ["BoolQ"] and data[0]["settings"]["seed"] == 1234


def test_output_file_and_manifest_record_the_seed_and_inputs(
    scored_eval, tmp_path: Path, table: PublishedTable, kit_cli
) -> None:
    a, b = _differing_pair(scored_eval, tmp_path)
    out = tmp_path / "paired.md"
    done = kit_cli("compare", a, b, "--format", "markdown", "--output", out, "--seed", "7")
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "| BoolQ | acc | 20 |" in text and "differs" in text and "seed 7" in text
    manifest = json.loads((tmp_path / "paired.md.manifest.json").read_text())
    assert manifest["config"]["seed"] == 7 and manifest["config"]["resamples"] == 10_000
    assert str(a / "samples" / "boolq.jsonl") in manifest["inputs"]
    assert manifest["pairs"] == [{"a": "a", "b": "b", "differing": ["BoolQ"], "average": "differs"}]
    html = tmp_path / "paired.html"
    assert kit_cli("compare", a, b, "--format", "html", "--output", html).returncode == 0
    assert '<span class="differs">differs</span>' in html.read_text()


def test_different_settings_are_noted(scored_eval, tmp_path: Path, table: PublishedTable, kit_cli) -> None:
    a, b = _differing_pair(scored_eval, tmp_path)
    for folder, dtype in ((a, "float32"), (b, "bfloat16")):
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps({**summary, "dtype": dtype}))
    done = kit_cli("compare", a, b)
    assert "evaluated with different dtype (A: float32, B: bfloat16)" in done.stdout


def test_options_of_the_published_comparison_are_refused(
    scored_eval, tmp_path: Path, table: PublishedTable, kit_cli
) -> None:
    folder = scored_eval(tmp_path / "final", SAME)
    for option in (["--against", "base"], ["--note", "x"], ["--not-comparable"]):
        done = kit_cli("compare", folder, folder, *option)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            f"error: {option[0]}: only for a comparison with the published table, not of two evaluations"
        ]
    done = kit_cli("compare", folder / "summary.json", "--seed", "3")
    assert done.returncode == 2 and "--seed applies to paired tests" in done.stderr
