"""A launched training's life: started under a supervisor, followed, stopped or attached to, and what it
leaves for the next launch into the same output dir.

The contract (README, "Training: the life of a launch"):
- `start()` runs the plan's command under `supervisor` (a session of its own, output appended to
  `<output_dir>/launch.log`, its pid in `train.pid`). By default the supervisor watches the CLI that
  started it: however that CLI ends (Ctrl-C, SIGTERM, SIGHUP, SIGKILL), the training is stopped, its saved
  `step_N/` states intact, and `launch.json` says it was interrupted and why. `detach=True` runs it in the
  background on purpose: nothing watches it, and its exit code lands in `launch.json`.
- A training still running into the output dir: a detached one is attached to (followed until it ends;
  its exit code is the result); one whose CLI died is being stopped by its supervisor and is waited for;
  any other (another CLI's) is refused with exit 3.
- A fresh launch (no resume) into a directory that holds an earlier training is refused with exit 2
  unless `force_new`, which renames the earlier one to `<dir>.previous-N`: nothing is deleted, and no
  metrics or `step_N/` of another run are appended to or overwritten.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from gpt4allj_kit import paths
from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady
from gpt4allj_kit.files import atomic_write_text
from gpt4allj_kit.train.checkpoint import step_dirs
from gpt4allj_kit.train.launch import LaunchPlan, executable_argv, write_config
from gpt4allj_kit.train.supervisor import (
    DEFAULT_GRACE_S,
    LOG_FILE,
    PID_FILE,
    LaunchRecord,
    exit_code,
    last_step,
    pid_alive,
    read_record,
)

POLL_S = 0.2
STEP_POLL_S = 1.0  # metrics.jsonl is re-read for progress at most this often
# A directory holds a training once a launch got this far: metrics, a state, weights or a manifest.
_RUN_ENTRY = re.compile(r"^(metrics\.jsonl|manifest\.json|final|(step|epoch)_\d+)$")


# --- what an output dir already holds ------------------------------------------------------------------


@dataclass(frozen=True)
class EarlierRun:
    """A training that an output dir holds from before (not running now)."""

    output_dir: Path
    state: str  # finished, interrupted, failed, or incomplete (no launch record: ended before finishing)
    last_step: int | None
    saved: tuple[Path, ...]  # its resumable states (step_N/), oldest first
    stopped_by: str | None = None
    returncode: int | None = None

    def describe(self) -> str:
        at = f"at step {self.last_step}" if self.last_step is not None else "before its first step"
        if self.state == "interrupted":
            return f"interrupted {at}" + (f" by {self.stopped_by}" if self.stopped_by else "")
        if self.state == "failed":
            return f"failed {at}, exit code {self.returncode}"
        if self.state == "finished":
            return f"finished {at}"
        return f"ended {at} without finishing"


def _ended_as(record: LaunchRecord | None, finished: bool) -> tuple[str, str | None, int | None]:
    """(state, what stopped it, exit code) of the last launch into a directory."""
    if record is None:
        return ("finished" if finished else "incomplete"), None, None
    if record.ended is None:  # its supervisor died before it could write how the launch ended
        return "interrupted", "the death of its supervisor", None
    if record.stopped_by:
        return "interrupted", record.stopped_by, record.returncode
    if record.returncode == 0:
        return "finished", None, 0
    return "failed", None, record.returncode


def earlier_run(output_dir: Path) -> EarlierRun | None:
    """The training `output_dir` holds (metrics, states, weights or a manifest); None for a new dir."""
    if not output_dir.is_dir() or not any(_RUN_ENTRY.match(p.name) for p in output_dir.iterdir()):
        return None
    finished = (output_dir / "final").is_dir() and (output_dir / paths.MANIFEST).is_file()
    state, stopped_by, code = _ended_as(read_record(output_dir), finished)
    return EarlierRun(
        output_dir=output_dir,
        state=state,
        last_step=last_step(output_dir),
        saved=tuple(step_dirs(output_dir)),
        stopped_by=stopped_by,
        returncode=code,
    )


def aside_path(output_dir: Path) -> Path:
    """Where `--force-new` moves an earlier training: the first free `<dir>.previous-N` beside it."""
    n = 1
    while (target := output_dir.with_name(f"{output_dir.name}.previous-{n}")).exists():
        n += 1
    return target


def check_output_dir(plan_: LaunchPlan, *, force_new: bool = False) -> Path | None:
    """Where a fresh launch must first move the earlier training of its output dir (None: nothing to
    move). One-line ConfigError when the plan would start afresh over an earlier training without
    `force_new`, or asks both to resume and to start anew."""
    output_dir = plan_.output_dir
    if plan_.config.checkpoint is not None:
        if force_new:
            raise ConfigError("--force-new starts a new training: drop --resume (or the config's checkpoint)")
        return None
    earlier = earlier_run(output_dir)
    if earlier is None:
        return None
    target = aside_path(output_dir)
    if not force_new:
        resume = "continue it with --resume latest, or " if earlier.saved else "it saved no state to resume; "
        raise ConfigError(
            f"{output_dir} holds an earlier training ({earlier.describe()}): {resume}"
            f"start a new one with --force-new (moves it to {target.name})"
        )
    cwd = Path.cwd().resolve()
    if cwd.is_relative_to(output_dir.resolve()):
        raise ConfigError(f"--force-new: {output_dir} holds the current directory; run from elsewhere")
    return target


def make_room(plan_: LaunchPlan, *, force_new: bool = False) -> Path | None:
    """Checks the output dir for an earlier training (`check_output_dir`) and, with `force_new`, moves it
    aside; returns where it went (None: nothing was there)."""
    target = check_output_dir(plan_, force_new=force_new)
    if target is not None:
        plan_.output_dir.rename(target)
    return target


# --- a launch that is running ------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveLaunch:
    """A supervisor (or, from a pid file without a record, some process) training into a directory."""

    pid: int
    record: LaunchRecord | None

    @property
    def detached(self) -> bool:
        return self.record is not None and self.record.detached

    @property
    def orphaned(self) -> bool:
        """Its CLI is gone, so its supervisor is stopping it."""
        watched = self.record.watched_pid if self.record is not None else None
        return watched is not None and not pid_alive(watched)


def live_launch(output_dir: Path) -> LiveLaunch | None:
    """The launch still running into `output_dir`; None when none is (a pid file whose process is gone is
    stale, left by a supervisor that was killed)."""
    try:
        pid = int((output_dir / PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    record = read_record(output_dir)
    return LiveLaunch(pid, record if record is not None and record.supervisor_pid == pid else None)


def _wait_while_stopping(output_dir: Path, live: LiveLaunch | None, timeout_s: float) -> LiveLaunch | None:
    """`live`, or None once it ended, when it is a launch its supervisor is stopping (its CLI died)."""
    deadline = time.monotonic() + timeout_s
    while live is not None and live.orphaned and time.monotonic() < deadline:
        time.sleep(POLL_S)
        live = live_launch(output_dir)
    return live


class Training:
    """A launch under its supervisor, started here (owned: stopped when this CLI is interrupted or dies)
    or in the background (detached: followed, never stopped from here)."""

    def __init__(
        self,
        output_dir: Path,
        pid: int,
        *,
        proc: subprocess.Popen[bytes] | None = None,
        log_offset: int = 0,
        detached: bool = False,
        attached: bool = False,
        moved_aside: Path | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.pid = pid  # the supervisor's
        self.proc = proc  # None when attached: another CLI started it
        self.log_offset = log_offset
        self.detached = detached
        self.attached = attached
        self.moved_aside = moved_aside

    @property
    def owned(self) -> bool:
        return not self.detached

    @property
    def log_file(self) -> Path:
        return self.output_dir / LOG_FILE

    def poll(self) -> int | None:
        """None while the training runs, then its exit code."""
        if self.proc is not None:
            if self.proc.poll() is None:
                return None
        elif pid_alive(self.pid):
            return None
        return self.returncode()

    def returncode(self) -> int:
        """The ended launch's exit code as its supervisor recorded it (it outlives every process of the
        training); a supervisor that was killed recorded none."""
        record = read_record(self.output_dir)
        if record is not None and record.supervisor_pid == self.pid and record.returncode is not None:
            return record.returncode
        if self.proc is not None and self.proc.returncode is not None:
            return exit_code(self.proc.returncode)
        return 1

    def follow(
        self, on_output: Callable[[bytes], None], on_step: Callable[[int | None], None] | None = None
    ) -> int:
        """Passes the launch's output (from `launch.log`) to `on_output` and each newly logged step to
        `on_step` until the training ends; its exit code."""
        step, step_checked = None, 0.0
        with self.log_file.open("rb") as log:
            log.seek(self.log_offset)
            while True:
                code = self.poll()
                if chunk := log.read():
                    on_output(chunk)
                if on_step is not None and time.monotonic() - step_checked >= STEP_POLL_S:
                    step_checked = time.monotonic()
                    if (now := last_step(self.output_dir)) != step:
                        step = now
                        on_step(step)
                if code is not None:
                    if rest := log.read():
                        on_output(rest)
                    return code
                time.sleep(POLL_S)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def stop(self, *, grace_s: float = DEFAULT_GRACE_S + 15) -> int:
        """Stops the training through its supervisor (SIGINT, recorded as what stopped it: the supervisor
        sends SIGTERM to every process of the training, SIGKILL after its grace period); another Ctrl-C
        meanwhile makes it kill at once, and a supervisor still there after `grace_s` is killed (its
        launcher then gets SIGTERM from the kernel and stops its workers)."""
        if (code := self.poll()) is not None:
            return code
        self._signal(signal.SIGINT)
        deadline = time.monotonic() + grace_s
        while True:
            try:
                if (code := self.poll()) is not None:
                    return code
                if time.monotonic() > deadline:
                    self._signal(signal.SIGKILL)
                    deadline = float("inf")
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                self._signal(signal.SIGINT)  # a second request: the supervisor kills the training now

    def close(self) -> None:
        """Forgets an ended launch (its supervisor removes the pid file itself unless it was killed)."""
        if self.poll() is None:
            return
        pid_file = self.output_dir / PID_FILE
        with contextlib.suppress(OSError, ValueError):
            if int(pid_file.read_text(encoding="utf-8").strip()) == self.pid:
                pid_file.unlink()

    def __enter__(self) -> Training:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and self.owned:
            self.stop()
        self.close()


def supervisor_argv(output_dir: Path, command: list[str], *, watch: int | None, grace_s: float) -> list[str]:
    argv = [sys.executable, "-m", "gpt4allj_kit.train.supervisor", "--output-dir", str(output_dir)]
    argv += ["--grace", f"{grace_s:g}"]
    if watch is not None:
        argv += ["--watch", str(watch)]
    return [*argv, "--", *command]


def attach(output_dir: Path, live: LiveLaunch) -> Training:
    """Follows a detached launch from now on (its log from its current end)."""
    log = output_dir / LOG_FILE
    offset = log.stat().st_size if log.exists() else 0
    return Training(output_dir, live.pid, log_offset=offset, detached=True, attached=True)


def start(
    plan_: LaunchPlan, *, detach: bool = False, force_new: bool = False, grace_s: float = DEFAULT_GRACE_S
) -> Training:
    """Starts the plan's command under a supervisor, or attaches to the detached launch already running
    into its output dir.

    Waits for a launch whose CLI died to be stopped; refuses (exit 3) while another CLI's launch runs
    there, and (exit 2) a fresh start over an earlier training unless `force_new` (see
    `check_output_dir`).
    """
    output_dir = plan_.output_dir
    live = _wait_while_stopping(output_dir, live_launch(output_dir), grace_s + 30)
    if live is not None:
        if live.detached:
            return attach(output_dir, live)
        raise EnvironmentNotReady(
            f"a training into {output_dir} is still running (pid {live.pid}): wait for it or stop it "
            f"(kill {live.pid}), then re-run"
        )
    moved = make_room(plan_, force_new=force_new)
    write_config(plan_)
    env = {**os.environ, **plan_.env, "PYTHONUNBUFFERED": "1"}
    argv = supervisor_argv(
        output_dir,
        executable_argv(plan_.argv),
        watch=None if detach else os.getpid(),
        grace_s=grace_s,
    )
    with (output_dir / LOG_FILE).open("ab") as log:
        offset = log.tell()
        proc = subprocess.Popen(
            argv,
            cwd=paths.project_root(),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    training = Training(
        output_dir, proc.pid, proc=proc, log_offset=offset, detached=detach, moved_aside=moved
    )
    try:
        atomic_write_text(output_dir / PID_FILE, f"{proc.pid}\n")
    except BaseException:
        training.stop(grace_s=5.0)
        raise
    return training


# --- its result ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    """How a followed launch ended: its exit code (None: it still runs, in the background), the last step
    it logged, and whether this CLI was interrupted (Ctrl-C, SIGTERM, SIGHUP) while following it."""

    output_dir: Path
    returncode: int | None
    last_step: int | None
    interrupted: bool = False
    pid: int | None = None

    @property
    def saved(self) -> list[Path]:
        """The resumable states (step_N/) the run has now, oldest first."""
        return step_dirs(self.output_dir)

    @property
    def log_file(self) -> Path:
        return self.output_dir / LOG_FILE


def follow(
    training: Training,
    on_output: Callable[[bytes], None],
    on_step: Callable[[int | None], None] | None = None,
) -> TrainResult:
    """Follows `training` to its end. Interrupted here (Ctrl-C, or SIGTERM/SIGHUP turned into it), an
    owned training is stopped first, with nothing more passed to `on_output`: its processes' last words
    stay in the log; a detached one goes on running. Any other failure here (a closed terminal's write
    error) stops an owned training too, then propagates."""
    interrupted = False
    try:
        code: int | None = training.follow(on_output, on_step)
    except KeyboardInterrupt:
        interrupted = True
        code = training.stop() if training.owned else None
    except BaseException:
        if training.owned:
            training.stop()
        raise
    training.close()
    return TrainResult(
        output_dir=training.output_dir,
        returncode=code,
        last_step=last_step(training.output_dir),
        interrupted=interrupted,
        pid=training.pid,
    )


def run(
    plan_: LaunchPlan,
    on_output: Callable[[bytes], None] = lambda _chunk: None,
    *,
    detach: bool = False,
    force_new: bool = False,
) -> TrainResult:
    """Starts (or attaches to) the planned launch and follows it; a detached start returns at once."""
    training = start(plan_, detach=detach, force_new=force_new)
    if training.detached and not training.attached:
        return TrainResult(plan_.output_dir, None, last_step(plan_.output_dir), pid=training.pid)
    return follow(training, on_output)
