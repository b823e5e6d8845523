"""`reproduce --profile smoke` end to end, offline, as a user runs it: artifacts, then kill and resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from gpt4allj_kit import paths
from gpt4allj_kit import reproduce as pipeline
from gpt4allj_kit.compare.attribution import attribute_run, read_attribution
from gpt4allj_kit.compare.paired import Settings
from gpt4allj_kit.config import load_profile
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.published import average, load_published_table
from gpt4allj_kit.runstate import STAGES, load_state
from PIL import Image

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
CHECKPOINTS = ("epoch_1", "epoch_2", "final")


@dataclass(frozen=True)
class SmokeRun:
    """One smoke reproduction as a user may live it: its CLI killed during training, then the same command
    again."""

    run_dir: Path
    final_before_kill: bool
    training_left: list[psutil.Process]  # processes of the training still there a bounded time after
    launch_after_kill: dict  # train/launch.json: how its supervisor recorded the end
    status_after_kill: subprocess.CompletedProcess[str]
    done: subprocess.CompletedProcess[str]  # the re-run, which resumes
    state_after_resume: dict


TRAINING_GONE_WITHIN_S = 60


def _kill_cli(proc: subprocess.Popen[str], train_dir: Path) -> list[psutil.Process]:
    """SIGKILLs the CLI only, as a crash or the OOM killer would; returns what is left of the training it
    launched (its supervisor and every process under it) after TRAINING_GONE_WITHIN_S."""
    supervisor = psutil.Process(int((train_dir / "train.pid").read_text()))
    training = [supervisor, *supervisor.children(recursive=True)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    _gone, left = psutil.wait_procs(training, timeout=TRAINING_GONE_WITHIN_S)
    for victim in left:  # never leave them running, even when the test fails
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.kill()
    return left


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, kit_cli) -> SmokeRun:
    """Made once for the module (a whole smoke reproduction is the most expensive thing the tests run): the
    artifacts, the re-run and the resume tests all read this one run."""
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    # With --baseline: the published checkpoint and the base are evaluated too, for the gap's attribution.
    argv = kit_cli.argv("reproduce", "--profile", "smoke", "--baseline", "--output", run_dir)
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=kit_cli.env(OFFLINE)
    )
    train_dir = run_dir / "train"
    deadline = time.monotonic() + 600
    while not (train_dir / "step_100").is_dir():
        if proc.poll() is not None:
            pytest.fail(f"the smoke run ended before its step_100 checkpoint: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail("no checkpoint within 10 minutes")
        time.sleep(0.5)
    left = _kill_cli(proc, train_dir)
    launch = json.loads((train_dir / "launch.json").read_text())
    final_before_kill = (train_dir / "final").exists()
    status = kit_cli("status", run_dir, "--json", env=OFFLINE)
    done = kit_cli(*argv[1:], env=OFFLINE, timeout=900)
    after = kit_cli("status", run_dir, "--json", env=OFFLINE)
    state = json.loads(after.stdout) if after.returncode == 0 else {}
    return SmokeRun(run_dir, final_before_kill, left, launch, status, done, state)


@pytest.mark.slow
def test_smoke_reproduction_writes_every_artifact(smoke_run: SmokeRun) -> None:
    run_dir, done = smoke_run.run_dir, smoke_run.done
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr

    state = load_state(run_dir)
    assert [state.stage(s).status for s in STAGES] == ["done"] * len(STAGES)

    lock = json.loads((run_dir / "gpt4allj-kit.lock.json").read_text())
    assert {a["repo_id"] for a in lock["assets"]} >= {"kit/tiny-gptj", "kit/tiny-prompt-generations"}
    assert all(len(a["sha"]) == 40 and a["files"] for a in lock["assets"])

    train = run_dir / "train"
    metrics = [json.loads(line) for line in (train / "metrics.jsonl").read_text().splitlines()]
    losses = [m["train_loss"] for m in metrics if "train_loss" in m]
    assert losses[-1] < losses[0]
    assert any("val_loss" in m for m in metrics)
    for name in CHECKPOINTS:
        assert (train / name / "model.safetensors").is_file()
    assert list(train.glob("step_*")), "save_state checkpoints"

    for name in CHECKPOINTS:
        results = json.loads((run_dir / "eval" / name / "results.json").read_text())
        assert set(results["results"]) >= {"boolq", "piqa", "hellaswag", "winogrande", "arc_easy"}
        assert (run_dir / "eval" / name / "manifest.json").is_file()
        comparison = json.loads((run_dir / "compare" / f"{name}.json").read_text())
        assert comparison["against"] == "GPT4All-J v1.2-jazzy"
        assert comparison["measured"]["comparable"] is False
        assert "not comparable" in (run_dir / "compare" / f"{name}.md").read_text()

    html = (run_dir / "report" / "report.html").read_text()
    assert "not comparable" in html and "data:image/png;base64," in html
    assert 'src="http' not in html
    assert (run_dir / "report" / "report.md").is_file()
    pngs = list((run_dir / "report").glob("*.png"))
    assert len(pngs) >= 2
    for png in pngs:
        with Image.open(png) as image:
            image.verify()

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["profile"] == "smoke" and manifest["revision"] == "v1.2-jazzy"
    assert manifest["environment"]["lock_sha256"]
    assert manifest["lock_sha256"] and set(manifest["stages"]) == set(STAGES)
    train_manifest = json.loads((train / "manifest.json").read_text())
    assert train_manifest["fetch_lock"]["path"] == str(run_dir / "gpt4allj-kit.lock.json")
    fetch_manifest = json.loads((run_dir / "gpt4allj-kit.lock.manifest.json").read_text())
    assert fetch_manifest["stage"] == "fetch" and fetch_manifest["lock"] == str(
        run_dir / "gpt4allj-kit.lock.json"
    )
    assert {a["sha"] for a in fetch_manifest["assets"]} == {a["sha"] for a in lock["assets"]}
    # Every stage leaves its own manifest, named for the stage.
    stage_manifests = {
        "doctor": run_dir / "doctor" / "manifest.json",
        "fetch": run_dir / "gpt4allj-kit.lock.manifest.json",
        "train": train / "manifest.json",
        "eval": run_dir / "eval" / "final" / "manifest.json",
        "compare": run_dir / "compare" / "manifest.json",
        "report": run_dir / "report" / "manifest.json",
    }
    assert set(stage_manifests) == set(STAGES)
    for stage, path in stage_manifests.items():
        assert json.loads(path.read_text())["stage"] == stage, path


@pytest.mark.slow
def test_two_trainings_with_other_seeds_get_a_paired_verdict(
    smoke_run: SmokeRun, kit_cli, tmp_path: Path
) -> None:
    """The smoke example of `compare RUN_A RUN_B`: the same tiny world trained with another seed, its
    checkpoints paired with the first run's by label, on the same task documents."""
    other = tmp_path / "seed7"
    done = kit_cli(
        "reproduce", "--profile", "smoke", "--output", other, "--set", "seed=7", env=OFFLINE, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    paired = kit_cli("compare", smoke_run.run_dir, other, "--format", "json", env=OFFLINE)
    assert paired.returncode == 0, paired.stderr
    pairs = json.loads(paired.stdout)
    assert [p["a_label"] for p in pairs] == [p["b_label"] for p in pairs] == ["epoch_1", "epoch_2", "final"]
    for p in pairs:
        for task in p["tasks"]:
            assert task["delta"] == pytest.approx(task["a"] - task["b"])
            assert task["ci_low"] <= task["delta"] <= task["ci_high"]
            assert task["verdict"] in ("same", "not significant", "differs")
    # Another seed trains other weights: somewhere a document is scored differently.
    assert any(t["only_a"] + t["only_b"] for p in pairs for t in p["tasks"])
    itself = kit_cli("compare", smoke_run.run_dir / "eval" / "final", smoke_run.run_dir / "eval" / "final")
    assert itself.returncode == 0 and "the same on every document of all 7 tasks" in itself.stdout


@pytest.mark.slow
def test_smoke_reproduction_with_baseline_attributes_its_gap(smoke_run: SmokeRun) -> None:
    run_dir, table = smoke_run.run_dir, load_published_table()
    assert smoke_run.done.returncode == 0, smoke_run.done.stderr[-3000:]
    a = read_attribution(run_dir / "compare" / paths.ATTRIBUTION)
    assert a.split and a.base is not None and a.checkpoints == ("epoch_1", "epoch_2", "final")
    assert a.row == "GPT4All-J v1.2-jazzy" and not a.comparable
    assert any("not comparable" in n for n in a.notes) and a.missing == ()
    assert a == attribute_run(run_dir).model_copy(update={"notes": a.notes, "comparable": a.comparable})
    for cell in a.released.all_cells:
        assert cell.published == (
            average(table.row("v1.2-jazzy").values)
            if cell.key == "average"
            else table.row("v1.2-jazzy").values[cell.key]
        )
        for gap in cell.checkpoints:
            assert cell.eval_stack.delta + gap.training.delta == pytest.approx(gap.total)  # type: ignore[union-attr]
    manifest = json.loads((run_dir / "compare" / "manifest.json").read_text())
    assert manifest["attribution"]["settings"] == Settings().model_dump(mode="json")
    report = (run_dir / "report" / "report.md").read_text()
    assert "## Where the gap comes from: GPT4All-J v1.2-jazzy" in report
    assert "From compare/attribution.json (the compare stage's)." in report
    stored = (run_dir / "compare" / "attribution.md").read_text().splitlines()
    assert [line for line in stored if line.startswith(("- ", "| "))] == [
        line for line in report.splitlines() if line in stored and line.startswith(("- ", "| "))
    ]
    assert "Where the gap comes from" in (run_dir / "report" / "report.html").read_text()


@pytest.mark.slow
def test_rerun_skips_completed_stages(smoke_run: SmokeRun, kit_cli) -> None:
    run_dir, first = smoke_run.run_dir, smoke_run.done
    assert first.returncode == 0, first.stderr[-3000:]
    again = kit_cli(
        "reproduce", "--profile", "smoke", "--output", run_dir, "--json", env=OFFLINE, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    state = json.loads(again.stdout)
    assert state["stages"]["train"]["status"] == "skipped"
    assert state["stages"]["eval"]["status"] == "skipped"
    assert state["stages"]["report"]["status"] == "done"


@pytest.mark.slow
def test_a_killed_cli_takes_its_training_with_it(smoke_run: SmokeRun) -> None:
    """SIGKILL of `reproduce` (nothing of it can run any more) still stops the training it launched."""
    assert smoke_run.training_left == [], f"the training outlived its CLI by {TRAINING_GONE_WITHIN_S}s"
    launch = smoke_run.launch_after_kill
    assert launch["stopped_by"].startswith("the death of its CLI") and launch["ended"]
    assert launch["last_step"] >= 100


@pytest.mark.slow
def test_killed_training_resumes_on_rerun(smoke_run: SmokeRun) -> None:
    train_dir = smoke_run.run_dir / "train"
    assert not smoke_run.final_before_kill
    status = smoke_run.status_after_kill
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["stages"]["train"]["status"] == "interrupted"

    resumed = smoke_run.done
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = smoke_run.state_after_resume
    assert state["stages"]["train"]["status"] == "done"
    assert state["stages"]["train"]["detail"] == "resumed from latest"
    train_manifest = json.loads((train_dir / "manifest.json").read_text())
    assert train_manifest["resumed_from"].endswith("step_100") or "step_" in train_manifest["resumed_from"]
    assert (train_dir / "final" / "model.safetensors").is_file()
    assert (smoke_run.run_dir / "report" / "report.html").is_file()


def test_the_smoke_fetch_stage_writes_its_manifest_in_the_run_dir(tmp_path: Path) -> None:
    table = load_published_table()
    request = pipeline.ReproduceRequest(revision="v1.2-jazzy", profile="smoke", output=tmp_path)
    run = pipeline.Run(
        request=request,
        profile=load_profile("smoke"),
        row=pipeline.row_for_revision(table, request.revision, None),
        run_dir=tmp_path,
        hooks=pipeline.Hooks(),
        table=table,
    )
    outcome = pipeline.stage_fetch(run)
    assert outcome.path == tmp_path / "gpt4allj-kit.lock.json" and outcome.key == "4 local assets locked"
    manifest = json.loads((tmp_path / "gpt4allj-kit.lock.manifest.json").read_text())
    assert manifest["stage"] == "fetch" and manifest["command"] == request.command
    lock = json.loads(outcome.path.read_text())
    assert {a["sha"] for a in manifest["assets"]} == {a["sha"] for a in lock["assets"]}
    assert run.fixtures is not None and run.fixtures.is_relative_to(tmp_path / paths.FIXTURES_DIR)


def test_revision_without_published_row_is_a_usage_error() -> None:
    table = load_published_table()
    assert pipeline.row_for_revision(table, "main", None).name == "GPT4All-J 6B v1.0"
    assert pipeline.row_for_revision(table, "abc123", "v1.3-groovy").name == "GPT4All-J v1.3-groovy"
    with pytest.raises(ConfigError, match="no row in the published table"):
        pipeline.row_for_revision(table, "v9-unknown", None)


def test_run_dir_of_another_revision_is_refused(tmp_path: Path, kit_cli) -> None:
    from gpt4allj_kit.runstate import RunState, save_state

    save_state(tmp_path, RunState.new("v1.0", "smoke", "gpt4allj-kit reproduce"))
    done = kit_cli("reproduce", "--profile", "smoke", "--revision", "v1.2-jazzy", "--output", str(tmp_path))
    assert done.returncode == 2
    assert "holds a run of revision v1.0" in done.stderr and "Traceback" not in done.stderr


def test_status_of_a_folder_that_is_no_run(tmp_path: Path, kit_cli) -> None:
    done = kit_cli("status", str(tmp_path))
    assert done.returncode == 2 and "not a reproduction run directory" in done.stderr


def test_fail_on_diff_reads_only_comparable_comparisons(tmp_path: Path) -> None:
    compare_dir = tmp_path / "compare"
    compare_dir.mkdir()
    (compare_dir / "final.json").write_text(
        json.dumps({"measured": {"comparable": False}, "differing": ["BoolQ"]})
    )
    assert not pipeline.differs(tmp_path)
    (compare_dir / "epoch_1.json").write_text(
        json.dumps({"measured": {"comparable": True}, "differing": ["PIQA"]})
    )
    assert pipeline.differs(tmp_path)


def test_full_profile_on_this_cpu_machine_stops_at_the_doctor(tmp_path: Path, kit_cli) -> None:
    run_dir = tmp_path / "run"
    done = kit_cli("reproduce", "--revision", "v1.3-groovy", "--skip-train", "--output", str(run_dir))
    assert done.returncode == 3, done.stderr
    assert "cannot run profile 'full'" in done.stderr and "needs 1 GPU" in done.stderr
    assert "Traceback" not in done.stderr
    state = load_state(run_dir)
    assert state.stage("doctor").status == "failed" and state.stage("fetch").status == "pending"
    # The refusal is recorded with its reasons, like any stage's result.
    doctor = json.loads((run_dir / paths.DOCTOR_DIR / paths.MANIFEST).read_text())
    assert doctor["stage"] == "doctor" and doctor["readiness"]["can_run"] is False
    assert any("needs 1 GPU" in reason for reason in doctor["readiness"]["reasons"])
    assert doctor["machine"]["cpu_cores"] and doctor["environment"]["kit_version"]


def test_a_training_still_running_into_the_run_dir_is_not_started_twice(tmp_path: Path, kit_cli) -> None:
    run_dir = tmp_path / "run"
    # What a killed CLI leaves behind: its training (a process group of its own) still writing into the
    # run's train/ directory, and that directory's pid file naming the group.
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    (run_dir / "train").mkdir(parents=True)
    (run_dir / "train" / "train.pid").write_text(f"{orphan.pid}\n")
    try:
        done = kit_cli("reproduce", "--profile", "smoke", "--output", str(run_dir), env=OFFLINE, timeout=300)
    finally:
        orphan.kill()
        orphan.wait()
    assert done.returncode == 3, done.stderr
    assert f"still running (pid {orphan.pid})" in done.stderr and "Traceback" not in done.stderr
    assert load_state(run_dir).stage("train").status == "failed"


def test_bad_training_data_stops_the_train_stage_before_anything_is_launched(tmp_path: Path, kit_cli) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "response": "r"}\n{"prompt": "p", "source": "s"}\n')
    run_dir = tmp_path / "run"
    argv = ("reproduce", "--profile", "smoke", "--output", run_dir, "--set", f"dataset_path={bad}")
    done = kit_cli(*argv, env=OFFLINE, timeout=300)
    assert done.returncode == 2, done.stderr
    assert f"{bad}: line 2 (row 1): missing column 'response'" in done.stderr
    assert "Traceback" not in done.stderr and "ChildFailedError" not in done.stderr
    train = load_state(run_dir).stage("train")
    assert train.status == "failed" and "missing column 'response'" in (train.detail or "")
    assert not (run_dir / "train" / "train_config.yaml").exists()  # nothing was launched


@pytest.mark.slow
def test_the_smoke_reproduction_meets_its_recipe_and_reports_it(smoke_run: SmokeRun, kit_cli) -> None:
    """The killed-and-resumed smoke training, checked by verify-run against the smoke recipe: its trace is
    the expected one (rows and token content), nothing skipped or repeated across the resume, its assets the
    lock's; the report's "Recipe compliance" section says the same. (Also the README's example.)"""
    run_dir = smoke_run.run_dir
    assert smoke_run.done.returncode == 0, smoke_run.done.stderr[-3000:]
    verified = kit_cli("verify-run", run_dir, "--json", env=OFFLINE, timeout=300)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-2000:]
    result = json.loads(verified.stdout)
    assert result["recipe"] == "smoke" and result["finished"] and result["steps"] == 358
    verdicts = {v["id"]: v for v in result["verdicts"]}
    assert {k for k, v in verdicts.items() if v["verdict"] != "pass"} == set(), verdicts
    assert "358 steps equal: rows, content of 358" in verdicts["data-trace"]["found"]
    assert "resumed after step" in verdicts["no-skip-no-repeat"]["found"]
    assert result["also"][0]["recipe"] == "gpt4all-j" and "global-batch" in result["also"][0]["differing"]
    train_manifest = json.loads((run_dir / "train" / "manifest.json").read_text())
    assert train_manifest["data_layout"]["same"] is True  # the recipe's own layout: 2 processes x 8 x 1
    report = (run_dir / "report" / "report.md").read_text()
    assert (
        "## Recipe compliance: against recipe 'smoke'" in report
        and "20 pass, 0 differ, 0 cannot tell" in report
    )
    facts = json.loads((run_dir / "manifest.json").read_text())["facts"]["recipe_compliance"]
    assert facts == {"recipe": "smoke", "pass": 20, "differs": 0, "cannot tell": 0}
