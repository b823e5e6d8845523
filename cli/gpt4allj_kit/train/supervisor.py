"""The process that owns a launched training: it starts the launch, stops it, and records how it ended.

`gpt4allj-kit train` and reproduce's train stage never start `accelerate launch` themselves: they start
this supervisor (`python -m gpt4allj_kit.train.supervisor`) in a session of its own, its output and the
training's appended to `<output_dir>/launch.log`, its pid in `<output_dir>/train.pid`. The supervisor
- starts the launch command in a process group of its own; on Linux the launcher gets SIGTERM if the
  supervisor itself dies, and the supervisor adopts (and reaps) every orphaned process of the training;
- with `--watch PID` (the CLI that started it), stops the training once that process is gone: a CLI that
  is SIGKILLed or loses its terminal cannot stop anything itself. Without it (`--detach`) the training
  runs on by design;
- on SIGTERM, SIGINT or SIGHUP stops it gracefully: SIGTERM to the training's process group (the launcher
  and every worker; train.py exits quietly on it), SIGKILL after the grace period or at a second signal;
- writes `<output_dir>/launch.json` when the training starts and again when it ends (exit code, what
  stopped it, last step logged), then removes `train.pid`.
It imports nothing heavy, so it starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import FrameType
from typing import BinaryIO

import psutil

from gpt4allj_kit import paths
from gpt4allj_kit.files import atomic_write_json
from gpt4allj_kit.manifest import now_iso
from gpt4allj_kit.redaction import redact, secret_values

PID_FILE = "train.pid"  # the supervisor's pid while it lives (its own session and process group)
RECORD_FILE = "launch.json"  # the launch: who runs it, and once ended, its exit code and what stopped it
LOG_FILE = "launch.log"  # the supervisor's and the training's output, appended per launch
DEFAULT_GRACE_S = 30.0
POLL_S = 0.2
# Linux prctl(2) options.
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class LaunchRecord:
    """`<output_dir>/launch.json`: one launch of a training into that directory."""

    supervisor_pid: int
    watched_pid: int | None  # the CLI whose death stops the training; None when detached
    started: str
    argv: list[str] = field(default_factory=list)
    launcher_pid: int | None = None
    ended: str | None = None
    returncode: int | None = None
    stopped_by: str | None = None  # what stopped it (a signal's name, its CLI's death); None: it ended
    last_step: int | None = None

    @property
    def detached(self) -> bool:
        return self.watched_pid is None


def read_record(output_dir: Path) -> LaunchRecord | None:
    """The launch record of `output_dir`; None when there is none or it cannot be read."""
    try:
        data = json.loads((output_dir / RECORD_FILE).read_text(encoding="utf-8"))
        known = {f.name for f in fields(LaunchRecord)}
        return LaunchRecord(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError):
        return None


def write_record(output_dir: Path, record: LaunchRecord) -> None:
    atomic_write_json(output_dir / RECORD_FILE, asdict(record))


def last_step(output_dir: Path) -> int | None:
    """The last optimizer step a run logged to its metrics (None before the first)."""
    try:
        lines = (output_dir / paths.METRICS).read_bytes().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (an ended process not yet reaped by its parent does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process holds the id: alive
        return True


def exit_code(returncode: int) -> int:
    """A Popen return code as a shell shows it: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


# --- Linux process plumbing --------------------------------------------------------------------------


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _die_with_parent() -> None:  # runs in the forked launcher, before exec
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# --- the supervisor ----------------------------------------------------------------------------------


class StopRequests:
    """Signals asking the supervisor to stop the training: the first is graceful, a second is not."""

    def __init__(self) -> None:
        self.count = 0
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        self.count += 1
        self.reason = self.reason or reason

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        self.request(signal.Signals(signum).name)


class Children:
    """Every process of the training: the launcher and what it started (torch elastic starts each worker
    in a session of its own, so no process group holds them all). As a subreaper (Linux) the supervisor
    also adopts the workers a dead launcher leaves behind, and reaps them."""

    def __init__(self, proc: subprocess.Popen[bytes], subreaper: bool) -> None:
        self.proc = proc
        self.subreaper = subreaper
        self.launcher_code: int | None = None

    def _reap(self) -> None:
        if not self.subreaper:
            if self.launcher_code is None and (code := self.proc.poll()) is not None:
                self.launcher_code = code
            return
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.proc.pid:
                self.launcher_code = os.waitstatus_to_exitcode(status)
                self.proc.returncode = self.launcher_code  # Popen must not wait for it again

    def alive(self) -> list[psutil.Process]:
        """Reaps what ended; the processes of the training that still run."""
        self._reap()
        try:
            found = psutil.Process().children(recursive=True)
        except psutil.Error:
            return []
        return [p for p in found if pid_alive(p.pid)]

    def signal(self, sig: int) -> None:
        for proc in self.alive():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)


_SEGMENT_END = re.compile(rb"[\r\n]")
_LONGEST_HELD = 1 << 16  # a segment without a line end is passed on once this long


def copy_redacted(source: BinaryIO, target: BinaryIO, secrets: list[str]) -> None:
    """Copies the training's output to the log with every secret masked (the one redaction rule).

    Output is passed on segment by segment (a progress bar ends its segments with \r), so that the CLI
    following the log sees it as it comes, and a secret is never split between two writes.
    """
    held = b""
    while chunk := source.read1(1 << 14):  # type: ignore[attr-defined]
        held += chunk
        ends = [m.end() for m in _SEGMENT_END.finditer(held)]
        cut = ends[-1] if ends else (len(held) if len(held) >= _LONGEST_HELD else 0)
        if cut:
            target.write(_redacted_bytes(held[:cut], secrets))
            target.flush()
            held = held[cut:]
    if held:
        target.write(_redacted_bytes(held, secrets))
        target.flush()


def _redacted_bytes(data: bytes, secrets: list[str]) -> bytes:
    # surrogateescape: bytes that are not UTF-8 reach the log unchanged.
    return redact(data.decode("utf-8", "surrogateescape"), secrets).encode("utf-8", "surrogateescape")


def say(message: str) -> None:
    """A line in launch.log (the supervisor's stdout is that file), marked as the kit's."""
    print(redact(f"[gpt4allj-kit supervisor] {message}"), flush=True)


def supervise(children: Children, stop: StopRequests, *, watch: int | None, grace_s: float) -> int:
    """Waits until every process of the training has ended, stopping it when asked or orphaned."""
    kill_at: float | None = None
    stopping = False
    while children.alive():
        now = time.monotonic()
        if watch is not None and stop.count == 0 and os.getppid() != watch:
            stop.request(f"the death of its CLI (pid {watch})")
        if stop.count and not stopping:
            say(f"stopping the training ({stop.reason}): SIGTERM to each of its processes")
            children.signal(signal.SIGTERM)
            stopping, kill_at = True, now + grace_s
        elif children.launcher_code is not None and kill_at is None:
            kill_at = now + grace_s  # the launcher is gone: its workers get the grace period, no more
        if kill_at is not None and (now >= kill_at or stop.count > 1):
            say("killing what is left of the training (SIGKILL)")
            children.signal(signal.SIGKILL)
            kill_at = now + 5.0  # again, for anything started meanwhile
        time.sleep(POLL_S)
    children.alive()  # reaps the launcher when it was the last to end
    code = children.launcher_code
    return exit_code(code) if code is not None else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpt4allj_kit.train.supervisor")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--watch", type=int, default=None, help="stop the training when this pid is gone")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE_S, help="seconds before SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the launch command")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command to run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output_dir: Path = args.output_dir
    stop = StopRequests()
    for sig in STOP_SIGNALS:
        signal.signal(sig, stop.handler)
    subreaper = _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    record = LaunchRecord(
        supervisor_pid=os.getpid(),
        watched_pid=args.watch,
        started=now_iso(),
        argv=[redact(arg) for arg in args.command],
    )
    mode = f"watching pid {args.watch}" if args.watch is not None else "detached"
    say(f"{record.started} starting ({mode}): {' '.join(args.command)}")
    try:
        proc = subprocess.Popen(
            args.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        say(f"cannot start the launch: {exc}")
        record.ended, record.returncode = now_iso(), 127
        write_record(output_dir, record)
        return 127
    record.launcher_pid = proc.pid
    write_record(output_dir, record)
    assert proc.stdout is not None
    copier = threading.Thread(
        target=copy_redacted, args=(proc.stdout, sys.stdout.buffer, secret_values()), daemon=True
    )
    copier.start()
    code = supervise(Children(proc, subreaper), stop, watch=args.watch, grace_s=args.grace)
    copier.join(timeout=10.0)  # the pipe closes once the last process of the training has ended
    record.ended, record.returncode, record.stopped_by = now_iso(), code, stop.reason
    record.last_step = last_step(output_dir)
    write_record(output_dir, record)
    pid_file = output_dir / PID_FILE
    with contextlib.suppress(OSError, ValueError):
        if int(pid_file.read_text(encoding="utf-8").strip()) == os.getpid():
            pid_file.unlink()
    why = f" (stopped: {stop.reason})" if stop.reason else ""
    say(f"{record.ended} the launch ended with exit code {code}{why}")
    return code


if __name__ == "__main__":
    sys.exit(main())
