"""Where the gap comes from: hand-made evaluations whose split is known exactly, the closest checkpoint with
ties and `same`, the pieces a run may lack, the compare stage's files, and one smoke run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpt4allj_kit import paths
from gpt4allj_kit.compare.attribution import (
    Attribution,
    attribute,
    attribute_run,
    evaluations,
    read_attribution,
)
from gpt4allj_kit.compare.paired import Settings, compare_paired
from gpt4allj_kit.compare.stage import comparison_files, write_comparisons
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.published import PublishedTable, Row
from gpt4allj_kit.report.render import attribution_markdown, attribution_text
from gpt4allj_kit.report.view import closest_text

N = 100  # documents per task: one document is one percent point


def right(count: int, flips: int = 0) -> list[int]:
    """N documents of which the first `count` are right; `flips` of them (from the end of the right ones)
    traded for as many wrong ones, so that the mean stays and the documents differ."""
    docs = [1] * count + [0] * (N - count)
    for i in range(flips):
        docs[count - 1 - i], docs[count + i] = 0, 1
    return docs


@pytest.fixture
def flat(table: PublishedTable) -> PublishedTable:
    """The published table with the run's row at 60 and the base row at 50 in every column."""
    rows = []
    for row in table.rows:
        if row.name in (table.row("v1.2-jazzy").name, table.row("base").name):
            value = 60.0 if row.revision == "v1.2-jazzy" else 50.0
            row = row.model_copy(update={"values": dict.fromkeys(row.values, value)})
        rows.append(row)
    return table.model_copy(update={"rows": tuple(rows)})


def run_row(table: PublishedTable) -> Row:
    return table.row("v1.2-jazzy")


KEYS = ("boolq", "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa")


def make_run(
    root: Path,
    scored_eval,
    evals: dict[str, dict[str, list[int]] | list[int]],
    default: list[int] | None = None,
) -> dict[str, Path]:
    """eval/<label>/ for each label: one list of scores for every task, or scores by column key (the
    tasks not given score `default`, else all wrong)."""
    for label, scores in evals.items():
        by_task = scores if isinstance(scores, dict) else dict.fromkeys(KEYS, scores)
        scored_eval(root / "eval" / label, {k: by_task.get(k, default or right(0)) for k in KEYS})
    return evaluations(root)


def attributed(
    tmp_path: Path, scored_eval, table: PublishedTable, evals: dict, default: list[int] | None = None
) -> Attribution:
    folders = make_run(tmp_path / "run", scored_eval, evals, default)
    return attribute(folders, run_row(table), run="run", table=table)


# --- the split ----------------------------------------------------------------------------------------


def test_the_gap_splits_exactly_into_eval_stack_and_training_drift(tmp_path, scored_eval, flat) -> None:
    # P = 60 (published), R = 62 (our re-evaluation), epoch_1 = 65 (R's 62 right and 3 more), epoch_2 = 72.
    a = attributed(
        tmp_path,
        scored_eval,
        flat,
        {"epoch_1": right(65), "epoch_2": right(72), "published": right(62), "base": right(55)},
    )
    assert a.split and a.missing == () and a.checkpoints == ("epoch_1", "epoch_2")
    boolq = a.released.cells[0]
    assert (boolq.published, boolq.ours) == (60.0, pytest.approx(62.0))
    drift = boolq.eval_stack
    assert drift is not None and drift.uncertainty == "unpaired"
    assert drift.delta == pytest.approx(2.0) and drift.stderr == pytest.approx(boolq.ours_stderr)
    assert boolq.ours_stderr == pytest.approx(100 * (0.62 * 0.38 / (N - 1)) ** 0.5)  # lm-eval's stderr
    assert drift.verdict == "reproduced"  # 2 points, R's stderr 4.9
    assert drift.band is None and drift.band_verdict is None  # no source documents this row's band

    epoch_1, epoch_2 = boolq.checkpoints
    assert (epoch_1.label, epoch_1.value, epoch_1.total) == (
        "epoch_1",
        pytest.approx(65.0),
        pytest.approx(5.0),
    )
    t = epoch_1.training
    assert t is not None and t.uncertainty == "paired"
    assert t.delta == pytest.approx(3.0) and t.p_value == pytest.approx(2 / 2**3)  # McNemar: 3 vs 0
    assert t.verdict == "not significant" and t.ci_low <= 3.0 <= t.ci_high
    assert drift.delta + t.delta == pytest.approx(epoch_1.total)  # the split sums to the total gap
    assert epoch_2.training is not None and epoch_2.training.verdict == "differs"  # 10 vs 0: p = 2/1024
    assert epoch_2.training.p_value == pytest.approx(2 / 2**10)

    # The average: each task weighs the same; the paired interval is the bootstrap's, no McNemar p.
    avg = a.released.average
    assert (avg.key, avg.published, avg.ours) == ("average", 60.0, pytest.approx(62.0))
    assert avg.ours_stderr == pytest.approx(boolq.ours_stderr * 7**0.5 / 7)
    assert avg.eval_stack is not None and avg.eval_stack.delta == pytest.approx(2.0)
    for gap, training in ((avg.checkpoints[0], 3.0), (avg.checkpoints[1], 10.0)):
        assert gap.training is not None and gap.training.p_value is None
        assert gap.training.delta == pytest.approx(training)
        assert gap.total == pytest.approx(2.0 + training)
    # The paired part is compare_paired's own, not a second computation of it.
    paired = compare_paired(tmp_path / "run/eval/epoch_2", tmp_path / "run/eval/published", table=flat)
    assert avg.checkpoints[1].training.ci_low == paired.average.ci_low  # type: ignore[union-attr]
    assert avg.checkpoints[1].training.ci_high == paired.average.ci_high  # type: ignore[union-attr]
    assert a.settings == Settings()

    # The base row: its published row against our `base`, evaluation-stack drift only.
    assert a.base is not None and a.base.row == flat.row("base").name and a.base.label == "base"
    assert all(c.checkpoints == () and c.closest is None for c in a.base.all_cells)
    assert a.base.average.eval_stack.delta == pytest.approx(5.0)  # type: ignore[union-attr]
    # The GPT-J row has a documented band (dolly-v2 card, BoolQ 0.655963): beside the verdict, not in it.
    base_boolq = a.base.cells[0].eval_stack
    assert base_boolq is not None and base_boolq.band == pytest.approx(abs(50 - 65.5963))
    assert (base_boolq.verdict, base_boolq.band_verdict) == ("reproduced", "reproduced")
    assert a.base.band_source and "dolly-v2" in a.base.band_source and a.released.band_source is None


def test_closest_checkpoint_with_ties_and_same(tmp_path, scored_eval, flat) -> None:
    r = right(50)
    a = attributed(
        tmp_path,
        scored_eval,
        flat,
        {
            # BoolQ: +2 and -2 tie; PIQA: epoch_1 moves documents but not the mean, epoch_2 is the same on
            # every document; HellaSwag: two identical ones; the rest: final is 4 points off.
            "epoch_1": {"boolq": right(52), "piqa": right(50, flips=3), "hellaswag": r},
            "epoch_2": {"boolq": right(48), "piqa": r, "hellaswag": r},
            "final": {"boolq": right(54), "piqa": right(54), "hellaswag": right(50, flips=1)},
            "published": r,
        },
        default=r,
    )
    by_key = {c.key: c for c in a.released.cells}
    boolq = by_key["boolq"].closest
    assert boolq is not None and boolq.labels == ("epoch_1", "epoch_2") and boolq.tie
    assert boolq.distance == pytest.approx(2.0)
    assert boolq.verdicts == {"epoch_1": "not significant", "epoch_2": "not significant"}
    assert closest_text(boolq) == "epoch_1 = epoch_2 (tie): 2.00 points from R, not significant"
    piqa = by_key["piqa"].closest
    assert piqa is not None and piqa.labels == ("epoch_2",) and piqa.verdicts == {"epoch_2": "same"}
    assert by_key["piqa"].checkpoints[0].training.delta == 0  # type: ignore[union-attr]
    assert closest_text(piqa) == "epoch_2: same on every document"
    hellaswag = by_key["hellaswag"].closest
    assert hellaswag is not None and hellaswag.labels == ("epoch_1", "epoch_2")
    assert closest_text(hellaswag) == "epoch_1 = epoch_2 (tie): same on every document"
    # Average over 7 tasks: epoch_1 +2/7, epoch_2 -2/7 (a tie to the last bit), final +8/7.
    avg = a.released.average.closest
    assert avg is not None and avg.labels == ("epoch_1", "epoch_2")
    assert avg.distance == pytest.approx(2 / 7)
    assert "closest to the released checkpoint on Avg: epoch_1 = epoch_2 (tie)" in attribution_markdown(a)


# --- what a run may lack ------------------------------------------------------------------------------


def test_without_the_published_checkpoint_there_is_no_split(tmp_path, scored_eval, flat) -> None:
    a = attributed(tmp_path, scored_eval, flat, {"epoch_1": right(65), "base": right(55)})
    assert not a.split and a.released.label is None
    for cell in a.released.all_cells:
        assert cell.ours is None and cell.eval_stack is None and cell.closest is None
        assert [g.training for g in cell.checkpoints] == [None]
    assert a.released.average.checkpoints[0].total == pytest.approx(5.0)  # the total gap is still there
    (missing,) = a.missing
    assert "no evaluation of the published checkpoint (eval/published/): no split" in missing
    assert "gpt4allj-kit reproduce --baseline" in missing
    eval_dir = tmp_path / "run" / "eval"
    model = "nomic-ai/gpt4all-j --revision v1.2-jazzy --label published"
    assert f"`gpt4allj-kit eval --model {model} --output {eval_dir}`" in missing
    assert a.base is not None
    md = attribution_markdown(a)
    assert missing in md and "Training drift" not in md and "| BoolQ | acc | 60.0 | — | 65.00 ± " in md


def test_without_the_base_model_there_is_no_base_row(tmp_path, scored_eval, flat) -> None:
    a = attributed(tmp_path, scored_eval, flat, {"final": right(61), "published": right(60)})
    assert a.split and a.base is None
    (missing,) = a.missing
    assert missing.startswith("no evaluation of the base model (eval/base/): no base row")
    assert "eval --model EleutherAI/gpt-j-6B --label base --output " in missing
    assert "Base model" not in attribution_markdown(a)


def test_only_the_published_checkpoint_gives_its_eval_stack_drift(tmp_path, scored_eval, flat) -> None:
    a = attributed(tmp_path, scored_eval, flat, {"published": right(62), "base": right(50)})
    assert a.checkpoints == () and a.released.average.eval_stack.delta == pytest.approx(2.0)  # type: ignore[union-attr]
    assert a.missing == ("no retrained checkpoint evaluated (eval/epoch_N/, eval/final/): no training drift",)


def test_a_checkpoint_without_documents_to_pair_is_said(tmp_path, scored_eval, flat) -> None:
    folders = make_run(
        tmp_path,
        scored_eval,
        {"epoch_1": right(65), "final": right(64), "published": right(62), "base": right(50)},
    )
    for sample in (folders["epoch_1"] / "samples").iterdir():
        sample.unlink()
    summary = json.loads((folders["final"] / "summary.json").read_text())
    summary["tasks"]["piqa"]["acc_norm"] = 0.9  # the samples no longer give the results
    (folders["final"] / "summary.json").write_text(json.dumps(summary))
    a = attribute(folders, run_row(flat), run="run", table=flat)
    assert [g.training for g in a.released.average.checkpoints] == [None, None]
    first, second = a.missing
    assert first.startswith("epoch_1: no paired test against the re-evaluated published checkpoint (")
    assert "boolq.jsonl" in first
    assert second.startswith("final: its per-document samples do not give its results' numbers")
    assert a.released.cells[0].eval_stack is not None  # the unpaired part needs no documents


def test_a_tiny_model_is_attributed_with_its_note(tmp_path, scored_eval, flat) -> None:
    root = tmp_path / "run"
    scored_eval(root / "eval" / "final", {"boolq": right(60)}, n=N, comparable=False)
    scored_eval(root / "eval" / "published", {"boolq": right(58)}, n=N, comparable=False)
    a = attribute(evaluations(root), run_row(flat), run="run", table=flat, note="a tiny model")
    assert not a.comparable and a.split
    assert set(a.notes) == {
        "a tiny model",
        "a tiny random model is not comparable with the published numbers",
    }
    assert "**Note: a tiny random model is not comparable" in attribution_markdown(a)


def test_attribute_run_finds_the_runs_row(tmp_path, scored_eval, table) -> None:
    root = tmp_path / "run"
    make_run(root, scored_eval, {"final": right(50), "published": right(50)})
    # A bare eval dir: the evaluated model's own row, else the default revision's.
    assert attribute_run(root).row == "GPT4All-J v1.2-jazzy"
    (root / "run.json").write_text(json.dumps({"revision": "main"}))
    assert attribute_run(root).row == "GPT4All-J 6B v1.0"
    (root / "manifest.json").write_text(json.dumps({"config": {"against": "v1.3-groovy"}}))
    assert attribute_run(root).row == "GPT4All-J v1.3-groovy"
    assert attribute_run(root, against="v1.1-breezy").row == "GPT4All-J v1.1-breezy"
    assert attribute_run(root / "eval").run == str(root / "eval")
    with pytest.raises(ConfigError, match=r"holds no evaluation .*run the eval stage first"):
        attribute_run(tmp_path / "run" / "eval" / "final" / "samples")


# --- written by the compare stage ---------------------------------------------------------------------


def test_the_compare_stage_writes_the_attribution_beside_the_comparisons(tmp_path, scored_eval, flat) -> None:
    make_run(tmp_path, scored_eval, {"epoch_1": right(65), "published": right(62), "base": right(55)})
    written = write_comparisons(
        tmp_path / "eval",
        tmp_path / "compare",
        against=lambda label: flat.row("base") if label == "base" else run_row(flat),
        table=flat,
        command="gpt4allj-kit reproduce",
        attribute_against=run_row(flat),
    )
    stored = tmp_path / "compare" / paths.ATTRIBUTION
    assert written.attribution is not None and read_attribution(stored) == written.attribution
    assert written.attribution.run == str(tmp_path)
    md = (tmp_path / "compare" / "attribution.md").read_text()
    assert md.startswith("## Where the gap comes from: GPT4All-J v1.2-jazzy")
    assert "epoch_1: total gap on Avg +5.00 = eval-stack +2.00 (unpaired, ± " in md
    # The comparisons' reader does not take the attribution for a comparison.
    assert set(comparison_files(tmp_path / "compare")) == {"base", "epoch_1", "published"}
    manifest = json.loads(written.manifest.read_text())
    assert "attribution.json" in manifest["outputs"] and "attribution.md" in manifest["outputs"]
    assert manifest["attribution"]["settings"]["seed"] == Settings().seed
    assert manifest["attribution"]["settings"]["resamples"] == Settings().resamples
    assert manifest["attribution"]["split"] is True and manifest["attribution"]["missing"] == []
    assert str(tmp_path / "eval" / "epoch_1" / "samples" / "boolq.jsonl") in manifest["inputs"]


def test_a_stored_attribution_that_is_not_one_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / paths.ATTRIBUTION
    path.write_text(json.dumps({"run": "x"}))
    with pytest.raises(ConfigError, match=r"attribution\.json: not a stored attribution") as info:
        read_attribution(path)
    assert "\n" not in info.value.message


def test_every_format_shows_the_split(tmp_path, scored_eval, flat) -> None:
    a = attributed(tmp_path, scored_eval, flat, {"epoch_1": right(65), "published": right(62)})
    assert Attribution.model_validate_json(attribution_text(a, "json")) == a
    for fmt in ("table", "markdown", "html"):
        text = attribution_text(a, fmt)  # type: ignore[arg-type]
        assert "Where the gap comes from" in text and "training +3.00 (paired, 95% CI [" in text, fmt
    assert '<span class="not significant">' in attribution_text(a, "html")


# --- end to end ---------------------------------------------------------------------------------------


def test_compare_of_a_run_dir_prints_where_the_gap_comes_from(tmp_path, scored_eval, kit_cli) -> None:
    root = tmp_path / "run"
    make_run(root, scored_eval, {"epoch_1": right(65), "published": right(62)})
    (root / "manifest.json").write_text(json.dumps({"config": {"against": "v1.2-jazzy"}}))
    done = kit_cli("compare", root)
    assert done.returncode == 0, done.stderr
    assert "Where the gap comes from: GPT4All-J v1.2-jazzy" in done.stdout
    assert "training +3.00 (paired" in done.stdout
    data = json.loads(kit_cli("compare", root, "--format", "json", "--seed", "5").stdout)
    assert data["row"] == "GPT4All-J v1.2-jazzy" and data["settings"]["seed"] == 5
    out = tmp_path / "gap.md"
    written = kit_cli("compare", root, "--against", "v1.3-groovy", "--format", "markdown", "--output", out)
    assert written.returncode == 0, written.stderr
    assert "GPT4All-J v1.3-groovy" in out.read_text()
    manifest = json.loads((tmp_path / "gap.md.manifest.json").read_text())
    assert manifest["attribution"]["row"] == "GPT4All-J v1.3-groovy" and manifest["attribution"]["split"]
    refused = kit_cli("compare", root, "--fail-on-diff")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "error: --fail-on-diff: only for a comparison with the published table, not of a run dir (its gap)"
    )
