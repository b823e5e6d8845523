"""The compare stage: every evaluated model compared, written as JSON and Markdown, with a manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpt4allj_kit.compare import read_comparison
from gpt4allj_kit.compare.stage import comparison_files, write_comparison, write_comparisons
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import sha256_file
from gpt4allj_kit.published import PublishedTable


def _eval_dir(tmp_path: Path, write_results, table: PublishedTable) -> Path:
    values = dict(table.row("v1.2-jazzy").values)
    for label in ("final", "base"):
        write_results(values, name=f"eval/{label}/results.json")
        summary = {"label": label, "model": f"/runs/x/{label}", "comparable": True}
        (tmp_path / "eval" / label / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "eval" / "lm-eval-tasks.log").write_text("not a model")
    return tmp_path / "eval"


def test_write_comparisons_writes_each_label_and_a_manifest(tmp_path: Path, write_results, table) -> None:
    eval_dir = _eval_dir(tmp_path, write_results, table)
    rows = {"base": table.row("base"), "final": table.row("v1.2-jazzy")}
    written = write_comparisons(
        eval_dir,
        tmp_path / "compare",
        against=rows.__getitem__,
        table=table,
        note="a note for every label",
        command="gpt4allj-kit reproduce --profile smoke",
    )
    assert list(written.comparisons) == ["final", "base"]  # the reading order: checkpoints, then base
    assert written.comparisons["base"].against == "GPT-J 6.7B"
    assert (
        written.comparisons["final"].against == "GPT4All-J v1.2-jazzy"
        and written.comparisons["final"].reproduced
    )
    names = sorted(p.name for p in (tmp_path / "compare").iterdir())
    assert names == ["base.json", "base.md", "final.json", "final.md", "manifest.json"]
    assert [p.name for p in written.files] == ["final.json", "final.md", "base.json", "base.md"]

    # What is stored reads back as the same comparison (the report relies on it).
    for label, comparison in written.comparisons.items():
        assert read_comparison(tmp_path / "compare" / f"{label}.json") == comparison
    stored = json.loads((tmp_path / "compare" / "final.json").read_text())
    assert stored["reproduced"] is True and stored["differing"] == []
    assert "a note for every label" in (tmp_path / "compare" / "final.md").read_text()

    manifest = json.loads(written.manifest.read_text())
    assert manifest["stage"] == "compare" and manifest["command"] == "gpt4allj-kit reproduce --profile smoke"
    assert manifest["outputs"] == ["final.json", "final.md", "base.json", "base.md"]
    results = str(eval_dir / "final" / "results.json")
    assert manifest["inputs"][results] == sha256_file(Path(results))
    assert manifest["comparisons"][0] == {
        "label": "final", "against": "GPT4All-J v1.2-jazzy", "comparable": True, "reproduced": True,
        "differing": [],
    }  # fmt: skip
    assert set(comparison_files(tmp_path / "compare")) == {"base", "final"}


def test_write_comparisons_without_evaluations_is_a_config_error(tmp_path: Path, table) -> None:
    (tmp_path / "eval").mkdir()
    with pytest.raises(ConfigError, match="no evaluation results under"):
        write_comparisons(
            tmp_path / "eval", tmp_path / "compare", against=lambda _: table.rows[0], table=table, command="t"
        )
    assert not (tmp_path / "compare").exists()


@pytest.mark.parametrize("fmt", ["table", "markdown", "json", "html"])
def test_write_comparison_in_each_format(tmp_path: Path, write_results, table, fmt: str) -> None:
    path = write_results(dict(table.row("v1.2-jazzy").values))
    out = tmp_path / "out" / f"comparison.{fmt}"
    written = write_comparison(path, out, fmt=fmt, against="v1.2-jazzy", command=["gpt4allj-kit", "compare"])  # type: ignore[arg-type]
    text = out.read_text()
    assert "GPT4All-J v1.2-jazzy" in text
    manifest = json.loads(written.manifest.read_text())
    assert written.manifest == out.with_name(f"comparison.{fmt}.manifest.json")
    assert manifest["format"] == fmt and manifest["reproduced"] is True and manifest["input"] == str(path)
    # The manifest beside a comparison is not taken for a comparison.
    assert list(comparison_files(out.parent)) == (["comparison"] if fmt == "json" else [])


def test_a_file_that_is_no_stored_comparison_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    path.write_text(json.dumps({"measured": {"comparable": True}, "differing": ["PIQA"]}))
    with pytest.raises(ConfigError, match=r"final\.json: not a stored comparison") as info:
        read_comparison(path)
    assert "\n" not in info.value.message
    path.write_text("{torn")
    with pytest.raises(ConfigError, match="not a stored comparison"):
        read_comparison(path)
