"""The life of a launch: its supervisor, stopping it however its CLI ends, --detach and attaching, and
what a fresh launch does with an earlier training in its output dir.

The fast tests run the real supervisor over a stand-in training (a Python process that, like torch
elastic, starts a worker in a session of its own); the `slow` ones run `gpt4allj-kit train` for real.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady
from gpt4allj_kit.train import checkpoint, launch, lifecycle, supervisor
from gpt4allj_kit.train.loop import KILL_AFTER_STEP_ENV

# A stand-in training: logs step 1, starts a "worker" in its own session (as torch elastic does), says so
# in its log, then sleeps; `ignore_term` makes both ignore SIGTERM, `exit_after` makes it end by itself.
STAND_IN = textwrap.dedent(
    """
    import json, pathlib, signal, subprocess, sys, time
    out, ignore_term, exit_after = pathlib.Path(sys.argv[1]), sys.argv[2] == "1", float(sys.argv[3])
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    (out / "metrics.jsonl").write_text(json.dumps({"step": 1, "train_loss": 1.0}) + "\\n")
    worker = "import signal, time\\nif %r: signal.signal(signal.SIGTERM, signal.SIG_IGN)\\ntime.sleep(300)"
    subprocess.Popen([sys.executable, "-c", worker % ignore_term], start_new_session=True)
    print("stand-in training running", flush=True)
    time.sleep(exit_after)
    sys.exit(3)
    """
)


def _plan(output_dir: Path, *sets: str, resume: str | None = None) -> launch.LaunchPlan:
    request = launch.TrainRequest(profile="smoke", resume=resume, sets=[f"output_dir={output_dir}", *sets])
    return launch.plan(request)


def _stand_in(
    plan: launch.LaunchPlan, *, ignore_term: bool = False, exit_after: float = 300
) -> launch.LaunchPlan:
    argv = [sys.executable, "-c", STAND_IN, str(plan.output_dir), str(int(ignore_term)), str(exit_after)]
    return replace(plan, argv=argv, env={})


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _running_tree(output_dir: Path) -> list[psutil.Process]:
    """The supervisor and every process of its training, once the stand-in's worker has started."""
    log = output_dir / supervisor.LOG_FILE
    _wait_for(lambda: log.exists() and "stand-in training running" in log.read_text())
    pid = int((output_dir / supervisor.PID_FILE).read_text())
    _wait_for(lambda: len(psutil.Process(pid).children(recursive=True)) >= 2)
    return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]


def _all_gone(procs: list[psutil.Process], timeout: float) -> bool:
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:  # never leave a test's processes behind, even when it fails
        proc.kill()
    return not alive


def _cli_stand_in(plan: launch.LaunchPlan, tmp_path: Path) -> subprocess.Popen[str]:
    """A process in the role of `gpt4allj-kit train`: it starts the plan's launch, then waits."""
    plan_file = tmp_path / "plan.pickle"
    plan_file.write_bytes(pickle.dumps(plan))
    code = (
        "import pickle, sys, time\n"
        "from gpt4allj_kit.train import lifecycle\n"
        f"lifecycle.start(pickle.loads(open({str(plan_file)!r}, 'rb').read()), grace_s=2)\n"
        "time.sleep(300)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], text=True)


# --- however its CLI ends, the training stops ----------------------------------------------------------


def test_sigkill_of_the_cli_stops_the_whole_training_and_records_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli = _cli_stand_in(_stand_in(_plan(out)), tmp_path)
    try:
        tree = _running_tree(out)
    finally:
        cli.kill()
        cli.wait()
    # The worker is in a session of its own, as torch elastic's are: no process group holds them all.
    assert _all_gone(tree, timeout=15), "the training outlived its SIGKILLed CLI"
    record = supervisor.read_record(out)
    assert record is not None and record.watched_pid == cli.pid and record.ended is not None
    assert record.stopped_by == f"the death of its CLI (pid {cli.pid})"
    assert not (out / supervisor.PID_FILE).exists() and lifecycle.live_launch(out) is None
    earlier = lifecycle.earlier_run(out)
    assert earlier is not None and earlier.state == "interrupted" and earlier.last_step == 1
    assert earlier.describe() == f"interrupted at step 1 by the death of its CLI (pid {cli.pid})"


def test_a_training_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli = _cli_stand_in(_stand_in(_plan(out), ignore_term=True), tmp_path)
    try:
        tree = _running_tree(out)
    finally:
        cli.kill()
        cli.wait()
    assert _all_gone(tree, timeout=20)  # grace 2 s, then SIGKILL
    log = (out / supervisor.LOG_FILE).read_text()
    assert "SIGTERM to each of its processes" in log and "killing what is left" in log


def test_an_interrupted_follow_stops_an_owned_training(tmp_path: Path) -> None:
    out = tmp_path / "out"
    training = lifecycle.start(_stand_in(_plan(out)), grace_s=2)
    tree = _running_tree(out)

    def interrupt(_chunk: bytes) -> None:
        raise KeyboardInterrupt  # as Ctrl-C does while output is shown

    result = lifecycle.follow(training, interrupt)
    assert result.interrupted and result.returncode is not None and result.last_step == 1
    assert _all_gone(tree, timeout=10)
    assert supervisor.read_record(out).stopped_by == "SIGINT"
    assert not (out / supervisor.PID_FILE).exists()


def test_a_follower_that_fails_otherwise_stops_an_owned_training_too(tmp_path: Path) -> None:
    out = tmp_path / "out"
    training = lifecycle.start(_stand_in(_plan(out)), grace_s=2)
    tree = _running_tree(out)

    def closed_terminal(_chunk: bytes) -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output error"):
        lifecycle.follow(training, closed_terminal)
    assert _all_gone(tree, timeout=10)


def test_a_second_launch_into_a_running_dir_is_refused_and_a_stale_pid_file_ignored(tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = _stand_in(_plan(out))
    with lifecycle.start(plan, grace_s=2) as training:
        tree = _running_tree(out)
        assert lifecycle.live_launch(out).pid == training.pid
        with pytest.raises(EnvironmentNotReady, match=rf"still running \(pid {training.pid}\)"):
            lifecycle.start(plan)
        training.stop()
    assert _all_gone(tree, timeout=10) and lifecycle.live_launch(out) is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / supervisor.PID_FILE).write_text(f"{dead.pid}\n")
    assert lifecycle.live_launch(out) is None


# --- --detach, and attaching to it ----------------------------------------------------------------------


def test_a_detached_training_records_its_exit_code_and_a_rerun_attaches(tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = _stand_in(_plan(out), exit_after=1)
    detached = lifecycle.start(plan, detach=True, grace_s=2)
    assert detached.detached and not detached.attached
    _wait_for(lambda: (r := supervisor.read_record(out)) is not None and r.supervisor_pid == detached.pid)
    assert supervisor.read_record(out).watched_pid is None  # nothing watches it

    again = lifecycle.start(plan)  # the same command again: no second launch, no refusal
    assert again.attached and again.pid == detached.pid
    shown: list[bytes] = []
    result = lifecycle.follow(again, shown.append)
    assert result.returncode == 3 and not result.interrupted
    assert supervisor.read_record(out).returncode == 3
    assert b"the launch ended with exit code 3" in b"".join(shown)
    detached.proc.wait()


def test_the_training_output_reaches_launch_log_redacted(tmp_path: Path, monkeypatch) -> None:
    """The launched processes' own output (accelerate, torch, a config echoed back) goes through the one
    redaction rule on its way to launch.log, progress-bar segments and bytes that are not UTF-8 intact."""
    secret, shaped = "s3cret-value-of-the-env", "hf_" + "a1B2c3D4" * 5
    monkeypatch.setenv("HF_TOKEN", secret)
    out = tmp_path / "out"
    talk = (
        "import sys\n"
        f"print('token from env: {secret}', flush=True)\n"
        f"sys.stdout.write('shaped {shaped}\\rstep 1/2\\rstep 2/2\\n'); sys.stdout.flush()\n"
        "sys.stdout.buffer.write(b'latin-1 \\xe9 kept\\n'); sys.stdout.flush()\n"
    )
    plan = replace(_plan(out), argv=[sys.executable, "-c", talk], env={})
    training = lifecycle.start(plan, grace_s=2)
    assert lifecycle.follow(training, lambda _chunk: None).returncode == 0
    log = (out / supervisor.LOG_FILE).read_bytes()
    assert secret.encode() not in log and shaped.encode() not in log
    assert b"token from env: ***" in log and b"shaped ***\rstep 1/2\rstep 2/2\n" in log
    assert b"latin-1 \xe9 kept\n" in log
    assert secret not in (out / supervisor.RECORD_FILE).read_text()  # the argv it records


def test_interrupting_a_follower_leaves_a_detached_training_running(tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = _stand_in(_plan(out))
    detached = lifecycle.start(plan, detach=True, grace_s=2)
    tree = _running_tree(out)
    try:
        attached = lifecycle.start(plan)

        def interrupt(_chunk: bytes) -> None:
            raise KeyboardInterrupt

        with (out / supervisor.LOG_FILE).open("a") as log:
            log.write("more output\n")
        result = lifecycle.follow(attached, interrupt)
        assert result.interrupted and result.returncode is None
        assert all(proc.is_running() for proc in tree)
    finally:
        os.kill(detached.pid, signal.SIGTERM)  # what the kit tells the user to do to stop it
    assert _all_gone(tree, timeout=10)
    assert supervisor.read_record(out).stopped_by == "SIGTERM"


# --- a fresh launch into an earlier training's directory -------------------------------------------------


def _earlier_training(output_dir: Path, *, saved: bool) -> None:
    output_dir.mkdir(parents=True)
    lines = [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.5}]
    (output_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if saved:
        (output_dir / "step_2").mkdir()
        (output_dir / "step_2" / checkpoint.STATE_FILE).write_text("{}")


def test_a_fresh_launch_over_an_earlier_training_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert lifecycle.check_output_dir(_plan(out)) is None  # a new dir
    out.mkdir()
    (out / "train_config.yaml").write_text("{}")  # a launch that never got going is no training
    assert lifecycle.check_output_dir(_plan(out)) is None
    _earlier_training(out / "a", saved=True)
    with pytest.raises(ConfigError) as refused:
        lifecycle.check_output_dir(_plan(out / "a"))
    assert str(refused.value) == (
        f"{out / 'a'} holds an earlier training (ended at step 2 without finishing): continue it with "
        "--resume latest, or start a new one with --force-new (moves it to a.previous-1)"
    )
    _earlier_training(out / "b", saved=False)
    with pytest.raises(ConfigError, match=r"it saved no state to resume; start a new one with --force-new"):
        lifecycle.check_output_dir(_plan(out / "b"))
    # Resuming is what such a directory is for; asking for both is a usage error.
    assert lifecycle.check_output_dir(_plan(out / "a", resume="latest")) is None
    with pytest.raises(ConfigError, match="--force-new starts a new training: drop --resume"):
        lifecycle.check_output_dir(_plan(out / "a", resume="latest"), force_new=True)


def test_force_new_moves_the_earlier_training_aside_and_never_deletes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _earlier_training(out, saved=True)
    (out.with_name("out.previous-1")).mkdir()  # taken: the next free name is used
    before = (out / "metrics.jsonl").read_text()
    training = lifecycle.start(_stand_in(_plan(out), exit_after=0), force_new=True, grace_s=2)
    assert training.moved_aside == tmp_path / "out.previous-2"
    assert lifecycle.follow(training, lambda _chunk: None).returncode == 3
    assert (training.moved_aside / "metrics.jsonl").read_text() == before
    assert (training.moved_aside / "step_2" / checkpoint.STATE_FILE).is_file()
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def test_force_new_does_not_move_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    _earlier_training(tmp_path / "out", saved=True)
    monkeypatch.chdir(tmp_path / "out")
    with pytest.raises(ConfigError, match="holds the current directory"):
        lifecycle.check_output_dir(_plan(tmp_path / "out"), force_new=True)


def test_the_cli_refuses_a_fresh_train_over_an_earlier_one_with_one_line(kit_cli, tmp_path: Path) -> None:
    out = tmp_path / "outputs" / "smoke"
    _earlier_training(out, saved=True)
    before = sorted(p.name for p in out.iterdir())
    result = kit_cli("train", "--profile", "smoke", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "holds an earlier training" in result.stderr and "--resume latest" in result.stderr
    assert "--force-new" in result.stderr and result.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == before


def test_resume_command_replaces_the_resume_options() -> None:
    from gpt4allj_kit.commands.train import resume_command

    argv = ["train", "--profile", "smoke", "--resume", "step_2", "--force-new", "--set", "lr=1"]
    assert resume_command(argv) == "gpt4allj-kit train --profile smoke --set lr=1 --resume latest"
    assert resume_command(["train", "--resume=latest"], fresh=True) == "gpt4allj-kit train --force-new"


# --- real trainings through the CLI (slow) ---------------------------------------------------------------

SMOKE = ("train", "--profile", "smoke", "--set", "save_every=2")


def _train_until(kit_cli, cwd: Path, steps: int, *args: str, env: dict[str, str] | None = None):
    """`gpt4allj-kit train` started in `cwd`, returned once its metrics hold `steps` steps, with the
    processes of its training (supervisor included)."""
    out = cwd / "outputs" / "smoke"
    proc = subprocess.Popen(
        kit_cli.argv(*SMOKE, *args),
        cwd=cwd,
        env=kit_cli.env({**kit_cli.OFFLINE, **(env or {})}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def trained() -> bool:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        metrics = out / "metrics.jsonl"
        return metrics.exists() and metrics.read_text().count('"train_loss"') >= steps

    _wait_for(trained, timeout=600)
    pid = int((out / supervisor.PID_FILE).read_text())
    return proc, [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]


def _train_steps(out: Path) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if '"train_loss"' in line]


@pytest.mark.slow
def test_ctrl_c_prints_one_line_exits_130_and_the_run_resumes(kit_cli, tmp_path: Path) -> None:
    out = tmp_path / "outputs" / "smoke"
    proc, tree = _train_until(kit_cli, tmp_path, 3, "--set", "max_steps=6")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert _all_gone(tree, timeout=30)
    for text in (stdout, stderr):
        assert "Traceback" not in text and "SignalException" not in text and "KeyboardInterrupt" not in text
    step = supervisor.read_record(out).last_step
    expected = (
        f"interrupted at step {step}; resume with: gpt4allj-kit train --profile smoke --set save_every=2 "
        "--set max_steps=6 --resume latest"
    )
    assert [line for line in stderr.splitlines() if "interrupted" in line] == [expected]
    saved = checkpoint.step_dirs(out)
    assert saved and not (out / "final").exists()

    # The same command again would append to this run: refused, pointing at both ways on.
    again = kit_cli(*SMOKE, "--set", "max_steps=6", cwd=tmp_path, env=kit_cli.OFFLINE)
    assert again.returncode == 2 and f"(interrupted at step {step} by SIGINT)" in again.stderr
    resumed = kit_cli(*SMOKE, "--set", "max_steps=6", "--resume", "latest", cwd=tmp_path, env=kit_cli.OFFLINE,
                      timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _train_steps(out) == [1, 2, 3, 4, 5, 6]
    manifest = json.loads((out / "manifest.json").read_text())
    assert Path(manifest["resumed_from"]).resolve() == saved[-1].resolve()


@pytest.mark.slow
def test_sighup_stops_cleanly_and_force_new_starts_over_on_one_process(kit_cli, tmp_path: Path) -> None:
    out = tmp_path / "outputs" / "smoke"
    proc, tree = _train_until(kit_cli, tmp_path, 2, "--set", "max_steps=50")
    proc.send_signal(signal.SIGHUP)  # the terminal closed
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert _all_gone(tree, timeout=30)
    assert "Traceback" not in stdout + stderr
    record = supervisor.read_record(out)
    assert record.stopped_by == "SIGINT" and record.ended is not None and record.last_step
    before = (out / "metrics.jsonl").read_text()

    # One process, no process group: gloo is only asked for where there is one.
    fresh = kit_cli(*SMOKE, "--set", "max_steps=2", "--num-processes", "1", "--force-new", cwd=tmp_path,
                    env=kit_cli.OFFLINE, timeout=600)  # fmt: skip
    assert fresh.returncode == 0, fresh.stdout[-3000:] + fresh.stderr[-3000:]
    aside = tmp_path / "outputs" / "smoke.previous-1"
    assert f"moved to {aside}" in fresh.stderr
    assert (aside / "metrics.jsonl").read_text() == before
    assert _train_steps(out) == [1, 2]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["accelerate"]["num_processes"] == 1
    assert manifest["accelerate"]["distributed_type"] == "DistributedType.NO"


@pytest.mark.slow
def test_detach_returns_at_once_and_a_rerun_attaches_to_its_exit_code(kit_cli, tmp_path: Path) -> None:
    out = tmp_path / "outputs" / "smoke"
    args = (*SMOKE, "--set", "max_steps=5", "--detach")
    started = time.monotonic()
    # Every process of the training SIGKILLs itself after step 3: a failure whose exit code must surface.
    detached = kit_cli(*args, cwd=tmp_path, env={**kit_cli.OFFLINE, KILL_AFTER_STEP_ENV: "3"})
    took = time.monotonic() - started
    assert detached.returncode == 0, detached.stderr
    assert "training in the background" in detached.stdout
    live = lifecycle.live_launch(out)
    assert live is not None and live.detached, "the training did not outlive its --detach CLI"

    attached = kit_cli(*args, cwd=tmp_path, env=kit_cli.OFFLINE, timeout=600)
    record = supervisor.read_record(out)
    assert record.returncode not in (None, 0) and record.stopped_by is None
    assert attached.returncode == record.returncode, attached.stderr[-3000:]
    assert "attached to the training running in the background" in attached.stderr
    assert f"training exited with code {record.returncode}" in attached.stderr
    assert _train_steps(out) == [1, 2, 3] and lifecycle.live_launch(out) is None
    print(f"--detach returned in {took:.1f}s")
