"""Each rule's pass, differs and cannot tell, on hand-made training directories (tests/verify/conftest.py):
a run that is its recipe passes every rule it records; each departure is the one rule that says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.fetch.lock import AssetLock, FileEntry, LockedAsset, write_lock
from gpt4allj_kit.verify.run import verify_run


def verdicts(path: Path, **kwargs) -> dict[str, tuple[str, str]]:
    result = verify_run(path, recipe="smoke", **kwargs)
    return {v.id: (v.verdict, v.found) for v in result.verdicts}


def test_a_run_that_is_its_recipe_passes_every_rule_it_records(hand_made) -> None:
    found = verdicts(hand_made().finish().write())
    assert {k: v for k, (v, _) in found.items() if v != "pass"} == {"locked-assets": "cannot tell"}
    assert "rows" in found["data-trace"][1] and "content" not in found["data-trace"][1]  # data not at hand
    result = verify_run(hand_made().finish().write(), recipe="smoke")
    assert result.finished and not result.differs and result.counts["cannot tell"] == 1


@pytest.mark.parametrize(
    ("change", "differing"),
    [
        ({"lr": 2e-3}, {"lr", "lr-schedule"}),
        ({"warmup_steps": 10}, {"warmup", "lr-schedule"}),
        ({"max_length": 64}, {"max-length"}),
        ({"num_epochs": 3}, {"epochs", "data-order-vs-recipe"}),
        ({"seed": 7}, {"seed"}),
        ({"shuffle": True}, {"order-and-weights", "data-order-vs-recipe"}),
        ({"padding": "bucketed"}, set()),  # every padding mode is the recipe's numerics
        ({"padding": "packed"}, set()),
        ({"batch_size": 4}, {"global-batch", "steps-per-epoch", "data-order-vs-recipe"}),
        ({"gradient_accumulation_steps": 2}, {"global-batch", "steps-per-epoch", "data-order-vs-recipe"}),
    ],
)
def test_each_departure_from_the_recipe_is_the_rule_that_says_so(hand_made, change, differing) -> None:
    """The run's own trace is consistent (data-trace passes: its layout's expected trace); what departs
    from the recipe differs."""
    found = verdicts(hand_made(**change).finish().write())
    assert {k for k, (v, _) in found.items() if v == "differs"} == differing
    assert found["data-trace"][0] == "pass"


def test_a_process_count_differs_and_its_steps_are_named(hand_made) -> None:
    """1 process x accumulation 1: the global batch halves; the data order against the recipe's 2 processes
    differs at every step; the run's own trace is still its layout's."""
    found = verdicts(hand_made(processes=1).finish().write())
    assert found["global-batch"] == ("differs", "8")
    assert found["data-order-vs-recipe"][0] == "differs" and "steps 1-" in found["data-order-vs-recipe"][1]
    assert found["data-trace"][0] == "pass"


def test_a_step_that_read_other_rows_is_named(hand_made) -> None:
    run = hand_made().finish()
    run.steps[2]["rows"] = "0-15"
    found = verdicts(run.write())
    assert found["data-trace"][0] == "differs"
    assert found["data-trace"][1].startswith("1 of 24 steps differ (steps 3): step 3: other rows")
    assert found["no-skip-no-repeat"][0] == "differs"  # rows 0-15 twice in epoch 1, some never read


def test_a_step_logged_twice_or_missing_breaks_continuity(hand_made) -> None:
    twice = hand_made().finish()
    twice.steps.insert(4, dict(twice.steps[3]))
    assert "steps logged twice: 4" in verdicts(twice.write())["no-skip-no-repeat"][1]
    missing = hand_made().finish()
    del missing.steps[5]
    found = verdicts(missing.write())
    assert found["no-skip-no-repeat"][0] == "differs" and "steps missing: 6" in found["no-skip-no-repeat"][1]
    assert "expected steps never ran" in found["data-trace"][1]


def test_a_learning_rate_off_the_formula_is_named(hand_made) -> None:
    run = hand_made().finish()
    run.steps[1]["lr"] = 5e-4
    found = verdicts(run.write())
    assert found["lr-schedule"] == ("differs", "1 of 24 steps differ: step 2: 0.0005 (formula 0)")


def test_settings_that_change_between_launches_differ(hand_made) -> None:
    """A resume with other settings (4 processes, bf16) is named with the step it changed at."""
    run = hand_made().finish()
    run.launches.append({**run.launches[0], "step": 5, "num_processes": 4, "mixed_precision": "bf16"})
    found = verdicts(run.write())
    assert found["precision"] == ("differs", "no (from step 1), then bf16 (from step 6)")
    assert found["global-batch"] == ("differs", "16 (from step 1), then 32 (from step 6)")


def test_a_running_training_is_checked_as_far_as_it_got(hand_made) -> None:
    run = hand_made()
    del run.steps[7:]
    found = verdicts(run.write())
    result = verify_run(run.root, recipe="smoke")
    assert not result.finished and result.steps == 7
    assert found["data-trace"] == ("pass", "7 steps equal so far (of 24): rows")
    assert found["no-skip-no-repeat"][0] == "pass"


def test_what_a_run_does_not_record_cannot_be_told(hand_made) -> None:
    """A directory with only its config (a launch that never reached a step, or a run from before traces)."""
    root = hand_made().write()
    (root / "trace.jsonl").unlink()
    found = verdicts(root)
    assert found["lr"][0] == "pass"  # from train_config.yaml
    for rule in (
        "precision",
        "global-batch",
        "lr-schedule",
        "data-trace",
        "no-skip-no-repeat",
        "locked-assets",
    ):
        assert found[rule][0] == "cannot tell", rule
    assert "run.mixed_precision" in found["precision"][1]


def test_a_run_from_before_traces_has_its_schedule_checked_from_its_metrics(hand_made) -> None:
    """No trace.jsonl: the learning rates come from metrics.jsonl's training lines (validation and damaged
    lines skipped, never a traceback)."""
    run = hand_made().finish()
    root = run.write()
    (root / "trace.jsonl").unlink()
    lines = [{"step": s["step"], "train_loss": 1.0, "lr": s["lr"]} for s in run.steps]
    lines += [{"step": 3, "val_loss": 2.0}, {"step": None, "train_loss": 1.0, "lr": 1.0}]
    metrics = "".join(json.dumps(line) + "\n" for line in lines) + '{"step": 9, "tor'
    (root / "metrics.jsonl").write_text(metrics)
    assert verdicts(root)["lr-schedule"][0] == "pass"
    lines[1]["lr"] = 5e-4
    (root / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert verdicts(root)["lr-schedule"] == ("differs", "1 of 24 steps differ: step 2: 0.0005 (formula 0)")


def test_another_kit_version_differs_as_a_warning(hand_made, kit_cli) -> None:
    run = hand_made().finish(environment={"kit_version": "0.0.9"})
    result = verify_run(run.write(), recipe="smoke")
    kit = next(v for v in result.verdicts if v.id == "kit-version")
    assert (kit.verdict, kit.severity, kit.found) == ("differs", "warning", "0.0.9")
    assert result.differs  # any difference: exit 1


def test_against_another_run_compares_the_traces(hand_made) -> None:
    a, b = hand_made().finish(), hand_made().finish()
    assert verdicts(a.write(), against=b.write())["data-trace"][0] == "pass"
    b.steps[4]["batch_sha256"], a.steps[4]["batch_sha256"] = "1" * 64, "2" * 64
    found = verdicts(a.write(), against=b.write())
    assert (
        found["data-trace"][0] == "differs"
        and "step 5: the same rows with other content" in found["data-trace"][1]
    )
    with pytest.raises(ConfigError, match="the same training"):
        verify_run(a.root, recipe="smoke", against=a.root)


DATA, BASE = "nomic-ai/gpt4all-j-prompt-generations", "EleutherAI/gpt-j-6B"  # the recipe's repos


def _locked(tmp_path: Path, sha: str) -> Path:
    data = LockedAsset(DATA, "dataset", "v1.2-jazzy", sha, (FileEntry("d.jsonl", 3, "ab" * 32),))
    model = LockedAsset(BASE, "model", "main", "c" * 40, (FileEntry("config.json", 2, "cd" * 32),))
    path = tmp_path / "lock.json"
    write_lock(path, AssetLock([data, model]))
    return path


def _hub(repo: str, revision: str, sha: str) -> dict:
    return {"source": "hub", "repo_id": repo, "revision": revision, "sha": sha}


def test_assets_are_the_commits_of_the_runs_lock(hand_made, tmp_path: Path) -> None:
    assets = {
        "model": _hub(BASE, "main", "c" * 40),
        "tokenizer": _hub(BASE, "main", "c" * 40),
        "data": _hub(DATA, "v1.2-jazzy", "a" * 40),
    }
    good = hand_made(asset_lock=str(_locked(tmp_path, "a" * 40))).finish(assets=assets)
    verdict, found = verdicts(good.write())["locked-assets"]
    assert verdict == "pass" and f"data: {DATA}@v1.2-jazzy = aaaaaaaaaaaa" in found
    moved = hand_made(asset_lock=str(_locked(tmp_path, "b" * 40))).finish(assets=assets)
    assert verdicts(moved.write())["locked-assets"][0] == "differs"
    other_repo = hand_made(asset_lock=str(_locked(tmp_path, "a" * 40))).finish(
        assets={**assets, "data": _hub("someone/else", "v1.2-jazzy", "a" * 40)}
    )
    assert verdicts(other_repo.write())["locked-assets"][0] == "differs"


def test_local_assets_are_locked_by_content(hand_made, tmp_path: Path) -> None:
    lock = _locked(tmp_path, "a" * 40)
    local = {
        "source": "local",
        "path": "/x/d.jsonl",
        "files": [{"path": "/x/d.jsonl", "size": 3, "sha256": "ab" * 32}],
    }
    run = hand_made(asset_lock=str(lock)).finish(assets={"model": local, "tokenizer": local, "data": local})
    found = verdicts(run.write())["locked-assets"]
    assert found[0] == "differs"  # the data's file is the lock's dataset; no locked model holds it
    assert f"data: local, 1 files of {DATA}@v1.2-jazzy" in found[1]


def test_a_reproduce_run_dir_is_read_through_its_train_folder(hand_made, tmp_path: Path) -> None:
    run = hand_made()
    run.root = tmp_path / "repro" / "train"
    run.finish().write()
    (tmp_path / "repro" / "run.json").write_text(json.dumps({"profile": "smoke"}))
    result = verify_run(tmp_path / "repro")
    assert result.kind == "reproduce run" and result.recipe == "smoke"
    assert result.also and result.also[0].recipe == "gpt4all-j" and "global-batch" in result.also[0].differing


def test_the_recipes_global_batch_on_one_process_differs_only_at_the_epochs_ends(hand_made) -> None:
    """1 process x accumulation 2 keeps the smoke recipe's global batch (2 x 8 x 1): the same rows at every
    step but each epoch's last, where the recipe's 2 processes repeat 2 rows (even_batches)."""
    found = verdicts(hand_made(processes=1, gradient_accumulation_steps=2).finish().write())
    assert found["global-batch"] == ("pass", "16") and found["steps-per-epoch"][0] == "pass"
    assert found["data-order-vs-recipe"][0] == "differs"
    assert found["data-order-vs-recipe"][1].startswith("2 of 24 steps differ (steps 12, 24)")
    assert found["data-trace"][0] == "pass"
