"""The clean-error contract, swept over every command: the bad inputs are data (bad_inputs.yaml).

Each row runs through the installed CLI, offline, in its own temporary dir. The probes are independent
processes, so the selected rows run in a thread pool once per session (`sweep`) and each row's test only
judges its own result: the sweep takes the time of its slowest few probes, not of all of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from gpt4allj_kit import paths
from gpt4allj_kit.assets import tiny_assets
from gpt4allj_kit.cli import app
from gpt4allj_kit.config import load_profile
from gpt4allj_kit.published import load_published_table
from gpt4allj_kit.runstate import RunState

TABLE = Path(__file__).with_name("bad_inputs.yaml")
MAX_STDERR_LINES = 6
DEFAULT_TIMEOUT = 60.0
WORKERS = 4
# Root ignores file modes; without these two capabilities the read-only and unreadable rows apply to it.
WITHOUT_DAC_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
KINDS_NEEDING_MODES = {"readonly-dir", "unreadable"}
DROP = "~drop"


@dataclass(frozen=True)
class Probe:
    id: str
    kind: str
    argv: tuple[str, ...]
    exit: int
    messages: tuple[str, ...]
    setup: dict[str, Any] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    needs: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def needs_modes(self) -> bool:
        return any(_kind_name(spec) in KINDS_NEEDING_MODES for spec in self.setup.values())


def load_probes(path: Path = TABLE) -> list[Probe]:
    rows = yaml.safe_load(path.read_text(encoding="utf-8"))
    probes = []
    for row in rows:
        message = row["message"]
        probes.append(
            Probe(
                id=row["id"],
                kind=row["class"],
                argv=tuple(str(a) for a in row["argv"]),
                exit=int(row["exit"]),
                messages=tuple(message if isinstance(message, list) else [message]),
                setup=dict(row.get("setup") or {}),
                timeout=float(row.get("timeout", DEFAULT_TIMEOUT)),
                needs=row.get("needs"),
                env={str(k): str(v) for k, v in (row.get("env") or {}).items()},
            )
        )
    return probes


PROBES = load_probes()


# --- what a probe's setup makes ----------------------------------------------------------------------


def _kind_name(spec: Any) -> str:
    return spec if isinstance(spec, str) else next(iter(spec))


def _patched(document: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    """`document` with each "a/0/c" key of `patch` set (or removed, for ~drop); a number indexes a list."""
    for dotted, value in (patch or {}).items():
        *parents, leaf = dotted.split("/")
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(leaf) if isinstance(node, list) else leaf
        if value == DROP:
            del node[key]
        else:
            node[key] = value
    return document


def lm_eval_results() -> dict[str, Any]:
    """lm-eval 0.4's results JSON for the published table's seven tasks, every number plausible."""
    results, samples = {}, {}
    for column in load_published_table().columns:
        results[column.task] = {
            "alias": column.task,
            f"{column.metric},none": 0.6,
            f"{column.metric}_stderr,none": 0.01,
        }
        samples[column.task] = {"original": 1000, "effective": 1000}
    return {"results": results, "n-samples": samples, "config": {"model_args": "pretrained=x"}}


def run_state() -> dict[str, Any]:
    return RunState.new("v1.2-jazzy", "smoke", "gpt4allj-kit reproduce --profile smoke").model_dump(
        mode="json"
    )


def _more_than_cpus() -> int:
    return max(os.cpu_count() or 1, len(os.sched_getaffinity(0))) + 1


def _substituted(text: str, tmp: Path) -> str:
    for name, value in (("{tmp}", str(tmp)), ("{long}", "n" * 300), ("{cpus+1}", str(_more_than_cpus()))):
        text = text.replace(name, value)
    return text


def _make(path: Path, spec: Any, tmp: Path) -> None:
    kind = _kind_name(spec)
    arg = None if isinstance(spec, str) else spec[kind]
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind in ("dir", "readonly-dir"):
        path.mkdir(exist_ok=True)
    elif kind == "model":
        path.mkdir(exist_ok=True)
        config = {"model_type": "gptj"} if arg is None else arg
        (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    elif kind in ("file", "unreadable"):
        path.write_text("kept\n", encoding="utf-8")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "non-utf8":
        path.write_bytes("prompt: caf\u00e9 na\u00efve\n".encode("latin-1"))
    elif kind == "deep-json":
        depth = arg or 100_000
        path.write_text("[" * depth + "]" * depth, encoding="utf-8")
    elif kind == "text":
        path.write_text(_substituted(arg, tmp), encoding="utf-8")
    elif kind == "json":
        path.write_text(json.dumps(arg), encoding="utf-8")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in arg), encoding="utf-8")
    elif kind == "results":
        path.write_text(json.dumps(_patched(lm_eval_results(), arg)), encoding="utf-8")
    elif kind == "run-state":
        path.write_text(json.dumps(_patched(run_state(), arg)), encoding="utf-8")
    elif kind in ("published", "eval-stack"):
        # JSON is YAML: the kit's own data file, patched, as a copy the probe's GPT4ALLJ_KIT_ROOT points at.
        own = paths.published_table_path() if kind == "published" else paths.eval_stack_path()
        document = yaml.safe_load(own.read_text(encoding="utf-8"))
        path.write_text(json.dumps(_patched(document, arg)), encoding="utf-8")
    else:
        raise ValueError(f"unknown setup kind {kind!r}")


def make_setup(probe: Probe, tmp: Path) -> None:
    for name in sorted(probe.setup):
        _make(tmp / name, probe.setup[name], tmp)
    # Modes last, deepest first: a read-only dir gets its contents before it stops taking them.
    for name in sorted(probe.setup, reverse=True):
        kind = _kind_name(probe.setup[name])
        if kind == "readonly-dir":
            (tmp / name).chmod(0o555)
        elif kind == "unreadable":
            (tmp / name).chmod(0o000)


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every file and dir under `root`: files by content hash, mtime and mode; dirs by mode."""
    found: dict[str, tuple[Any, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISDIR(info.st_mode):
            found[rel] = ("dir", stat.S_IMODE(info.st_mode))
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if os.access(path, os.R_OK) else None
            found[rel] = ("file", digest, info.st_mtime_ns, stat.S_IMODE(info.st_mode))
    return found


# --- running -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    tmp: Path
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    before: dict[str, tuple[Any, ...]]
    after: dict[str, tuple[Any, ...]]


def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int | None, str, str]:
    """Runs `argv`; past `timeout` it is stopped as a user would (SIGTERM: the CLI stops what it
    launched), then killed with its process group."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return None, out, err + f"\n(stopped after {timeout:g} s)"


def run_probe(probe: Probe, tmp: Path, kit_cli: Any) -> Outcome:
    tmp.mkdir(parents=True)
    make_setup(probe, tmp)
    before = snapshot(tmp)
    argv = kit_cli.argv(*(_substituted(a, tmp) for a in probe.argv))
    if probe.needs_modes and os.geteuid() == 0:
        argv = WITHOUT_DAC_OVERRIDE + argv
    start = time.monotonic()
    env = {name: _substituted(value, tmp) for name, value in probe.env.items()}
    code, out, err = _run(argv, kit_cli.env({**kit_cli.OFFLINE, **env}), tmp, probe.timeout)
    seconds = time.monotonic() - start
    return Outcome(tmp, code, out, err, seconds, before, snapshot(tmp))


def _selected(session: pytest.Session) -> list[Probe]:
    ids = {
        item.callspec.params["probe"].id
        for item in session.items
        if getattr(item, "originalname", None) == "test_bad_input_is_refused_cleanly"
    }
    return [p for p in PROBES if p.id in ids]


@pytest.fixture(scope="session")
def sweep(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, kit_cli: Any
) -> Iterator[dict[str, Outcome]]:
    """Every selected probe's outcome, run in parallel once."""
    probes = _selected(request.session)
    base = tmp_path_factory.mktemp("bad-inputs")
    if probes and any(p.needs_modes for p in probes) and os.geteuid() == 0:
        assert shutil.which("setpriv"), "setpriv (util-linux) is needed to run the mode rows as root"
    if any(p.needs == "tiny-assets" for p in probes):
        # Made once here (the CLI's kit cache is this session's) rather than by several probes at once.
        tiny_assets(paths.kit_cache_dir(), seed=load_profile("smoke").seed)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {p.id: pool.submit(run_probe, p, base / p.id, kit_cli) for p in probes}
        outcomes = {name: future.result() for name, future in futures.items()}
    yield outcomes
    for path in base.rglob("*"):  # let pytest remove what the read-only rows locked
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def _params() -> list[Any]:
    return [pytest.param(probe, id=probe.id) for probe in PROBES]


def test_the_table_is_well_formed() -> None:
    ids = [p.id for p in PROBES]
    assert len(ids) == len(set(ids)), "probe ids must be unique"
    commands = {p.argv[0] for p in PROBES}
    every = {command.name for command in app.registered_commands}
    assert every <= commands, f"commands without a probe: {every - commands}"
    assert all(p.exit in (2, 3) for p in PROBES)
    assert {p.needs for p in PROBES} <= {None, "tiny-assets"}
    assert len(PROBES) >= 70


@pytest.mark.parametrize("probe", _params())
def test_bad_input_is_refused_cleanly(probe: Probe, sweep: dict[str, Outcome]) -> None:
    outcome = sweep[probe.id]
    shown = f"exit {outcome.returncode} in {outcome.seconds:.1f}s\nstderr:\n{outcome.stderr[-3000:]}"
    assert outcome.returncode == probe.exit, shown
    assert "Traceback" not in outcome.stdout + outcome.stderr, shown
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) <= MAX_STDERR_LINES, shown
    for fragment in probe.messages:
        assert _substituted(fragment, outcome.tmp) in outcome.stderr, f"{fragment!r} not said\n{shown}"
    changed = {
        name: (state, outcome.after.get(name))
        for name, state in outcome.before.items()
        if outcome.after.get(name) != state
    }
    assert not changed, f"changed or removed: {changed}\n{shown}"
