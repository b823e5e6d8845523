"""What a directory holds that a report can show: a reproduce run dir (run.json, train/, eval/<label>/,
compare/), a bare training output dir (metrics.jsonl, manifest.json) or a bare eval dir
(<label>/summary.json|results.json, or those files directly); and the facts read from it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt4allj_kit import paths
from gpt4allj_kit.compare.results import evaluations
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.fetch.lock import lock_manifest_path, read_lock
from gpt4allj_kit.files import read_json_object


@dataclass(frozen=True)
class EvalDir:
    label: str
    path: Path


@dataclass(frozen=True)
class RunContents:
    """What a directory holds that a report can show."""

    root: Path
    kind: str
    metrics: Path | None
    evals: tuple[EvalDir, ...]
    manifests: tuple[Path, ...]
    run_json: Path | None
    lock: Path | None


@dataclass
class Metrics:
    """metrics.jsonl as series; unreadable lines are counted, not fatal."""

    train: list[tuple[float, float]] = field(default_factory=list)
    val: list[tuple[float, float]] = field(default_factory=list)
    lr: list[tuple[float, float]] = field(default_factory=list)
    # (step, seconds of training so far) of each optimizer step's line: the burn-in's step times.
    step_times: list[tuple[float, float]] = field(default_factory=list)
    epoch_starts: list[tuple[float, int]] = field(default_factory=list)
    lines: int = 0
    skipped: int = 0
    last: dict[str, Any] = field(default_factory=dict)


def _eval_dirs(root: Path) -> tuple[EvalDir, ...]:
    return tuple(EvalDir(label, folder) for label, folder in evaluations(root).items())


def _manifests(root: Path, exclude: Path | None) -> tuple[Path, ...]:
    found = [root / paths.RUN_STATE, root / paths.MANIFEST, lock_manifest_path(root / paths.LOCK_NAME)]
    for pattern in (f"*/{paths.MANIFEST}", f"*/*/{paths.MANIFEST}", f"{paths.COMPARE_DIR}/*manifest*.json"):
        found += sorted(root.glob(pattern))
    unique = dict.fromkeys(p for p in found if p.is_file() and not (exclude and exclude in p.parents))
    return tuple(unique)


def scan(root: Path, *, exclude: Path | None = None) -> RunContents:
    """What `root` holds, or a one-line ConfigError when it is none of the three layouts."""
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory (expected a run, training output or eval dir)")
    train = root / "train" if (root / "train").is_dir() else root
    metrics = train / paths.METRICS if (train / paths.METRICS).is_file() else None
    evals = _eval_dirs(root)
    manifests = _manifests(root, exclude)
    run_json = root / paths.RUN_STATE if (root / paths.RUN_STATE).is_file() else None
    lock = root / paths.LOCK_NAME if (root / paths.LOCK_NAME).is_file() else None
    if not (metrics or evals or manifests or lock):
        raise ConfigError(
            f"{root}: no {paths.METRICS}, eval results or manifests here"
            " - not a run, training output or eval dir"
        )
    if run_json or ((root / "train").is_dir() and (root / "eval").is_dir()):
        kind = "reproduce run"
    elif metrics:
        kind = "training output"
    elif evals:
        kind = "eval dir"
    else:
        kind = "run directory (partial)"
    return RunContents(root, kind, metrics, evals, manifests, run_json, lock)


def json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is not one (the report lists it as a problem)."""
    try:
        return read_json_object(path)
    except ConfigError:
        return None


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def read_metrics(path: Path) -> Metrics:
    series = Metrics()
    last_epoch: int | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        series.lines += 1
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            series.skipped += 1
            continue
        step = _finite(row.get("step")) if isinstance(row, dict) else None
        if step is None:
            series.skipped += 1
            continue
        if (loss := _finite(row.get("train_loss"))) is not None:
            series.train.append((step, loss))
            if (seconds := _finite(row.get("time"))) is not None:
                series.step_times.append((step, seconds))
        if (val := _finite(row.get("val_loss"))) is not None:
            series.val.append((step, val))
        if (lr := _finite(row.get("lr"))) is not None:
            series.lr.append((step, lr))
        if (epoch := _finite(row.get("epoch"))) is not None and int(epoch) != last_epoch:
            last_epoch = int(epoch)
            series.epoch_starts.append((step, last_epoch))
        series.last = row
    return series


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def manifest_facts(data: dict[str, Any]) -> list[tuple[str, str]]:
    env = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    hw = env.get("hardware") if isinstance(env.get("hardware"), dict) else {}
    packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
    gpus = hw.get("gpus") or []
    gpu_text = ", ".join(f"{g.get('name')} ({g.get('memory_gb')} GiB)" for g in gpus if isinstance(g, dict))
    facts = [
        ("stage", data.get("stage")),
        ("started", data.get("started")),
        ("ended", data.get("ended")),
        ("kit version", env.get("kit_version")),
        (
            "git commit",
            f"{git.get('sha')}{' (dirty)' if git.get('dirty') else ''}" if git.get("sha") else None,
        ),
        ("lock sha256", env.get("lock_sha256")),
        ("python", env.get("python")),
        ("packages", ", ".join(f"{k} {v}" for k, v in packages.items() if v)),
        ("hardware", f"{hw.get('cpu_cores')} CPU cores, {hw.get('memory_gb')} GiB RAM" if hw else None),
        ("GPUs", gpu_text or ("none" if hw else None)),
        ("platform", hw.get("platform")),
    ]
    for key in ("model", "revision", "sha", "label", "dtype", "profile"):
        if isinstance(data.get(key), str | int | float):
            facts.append((key, data[key]))
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    if data.get("stage") == "train":  # how the batches were computed (every mode: the recipe's loss)
        facts += [("padding", config.get("padding")), ("attention", data.get("attention"))]
    return [(k, str(v)) for k, v in facts if v not in (None, "")]


def commands(manifests: dict[Path, dict[str, Any]], root: Path) -> list[tuple[str, str]]:
    found = []
    for path, data in manifests.items():
        where = relative(path, root)
        if isinstance(data.get("command"), str) and data["command"].strip():
            found.append((where, data["command"]))
        for cmd in data.get("commands", []) if isinstance(data.get("commands"), list) else []:
            found.append((where, cmd if isinstance(cmd, str) else " ".join(map(str, cmd))))
    return found


def lock_assets(path: Path | None) -> list[list[str]]:
    """The lock's assets as table rows; a damaged lock shows none (the report still renders the rest)."""
    if path is None:
        return []
    try:
        lock = read_lock(path)
    except ConfigError:
        return []
    return [[a.repo_id, a.repo_type, a.revision, a.sha, str(len(a.files))] for a in lock.assets]


def training_facts(series: Metrics) -> list[tuple[str, str]]:
    facts = [("lines", str(series.lines))]
    if series.skipped:
        facts.append(("unreadable lines skipped", str(series.skipped)))
    if series.train:
        facts += [
            ("last step", f"{series.train[-1][0]:g}"),
            ("last train loss", f"{series.train[-1][1]:.4f}"),
        ]
    if series.val:
        best = min(series.val, key=lambda p: p[1])
        facts += [
            ("last validation loss", f"{series.val[-1][1]:.4f} (step {series.val[-1][0]:g})"),
            ("best validation loss", f"{best[1]:.4f} (step {best[0]:g})"),
        ]
    for key in ("epoch", "tokens_per_s", "nonpad_tokens_per_s", "time"):
        if (value := _finite(series.last.get(key))) is not None:
            facts.append((f"last {key}", f"{value:.4g}"))
    return facts
