"""Our zero-shot numbers, read from lm-eval's results JSON or the kit's eval summary.

Inputs: lm-eval's results JSON (0.4.x layout with "acc,none" keys, or the 0.3 layout with "acc" keys), the
kit's `summary.json`, or a directory holding one of them. Each task's number is the published table's
metric for its column, with lm-eval's stderr (fractions, as lm-eval reports them).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gpt4allj_kit import paths
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import json_at, json_type, read_json
from gpt4allj_kit.published import PublishedTable, load_published_table

NOT_COMPARABLE_NOTE = "a tiny random model is not comparable with the published numbers"

Layout = Literal["lm-eval 0.4", "lm-eval 0.3", "kit summary"]


class Score(BaseModel):
    """One task's number as lm-eval reported it (fractions)."""

    model_config = ConfigDict(frozen=True)

    task: str
    metric: str
    value: float
    stderr: float
    n: int | None = None


class Measured(BaseModel):
    """Our numbers and where they came from."""

    model_config = ConfigDict(frozen=True)

    source: str
    layout: Layout
    label: str
    model: str | None = None
    revision: str | None = None
    sha: str | None = None
    lm_eval_version: str | None = None
    limit: float | None = None
    comparable: bool = True
    notes: tuple[str, ...] = ()
    scores: dict[str, Score]


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path, kind="results file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not an lm-eval results file or kit summary (JSON {json_type(data)})")
    return data


def result_candidates(folder: Path) -> list[Path]:
    """Result files directly in `folder`: the kit's summary, lm-eval's results.json or results_<date>.json."""
    found = [folder / paths.SUMMARY, folder / paths.RESULTS]
    found = [p for p in found if p.is_file()]
    return found or sorted(folder.glob("results*.json"))


def label_order(name: str) -> tuple[int, float, str]:
    """Evaluated models in the order a reader wants them: epochs, final, the published model, the base."""
    if m := re.fullmatch(r"epoch_(\d+)", name):
        return (0, int(m.group(1)), name)
    order = {"final": 1, paths.RELEASED_LABEL: 2, paths.BASE_LABEL: 3}
    return (order.get(name, 4), 0, name)


def evaluations(path: Path) -> dict[str, Path]:
    """The evaluations at `path` by label, in reading order: an eval folder itself, or the per-model
    folders of an eval dir or of a run dir's `eval/`."""
    base = path / paths.EVAL_DIR if (path / paths.EVAL_DIR).is_dir() else path
    if not base.is_dir():
        return {}
    if result_candidates(base):
        return {base.name: base}
    skip = {paths.REPORT_DIR, paths.COMPARE_DIR}
    found = [d for d in base.iterdir() if d.is_dir() and d.name not in skip and result_candidates(d)]
    return {d.name: d for d in sorted(found, key=lambda d: label_order(d.name))}


def result_files(path: Path) -> tuple[Path, Path | None]:
    """(file holding the numbers, the kit summary beside it if any) for a file or a directory holding one.

    lm-eval's own results.json is preferred for the numbers (it is the unchanged source); the summary adds
    the label, model, revision, sha and whether the model is comparable.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if path.is_file():
        summary = path.parent / paths.SUMMARY if path.name == paths.RESULTS else None
        return path, summary if summary and summary.is_file() else None
    folders = list(evaluations(path).values())
    if not folders:
        raise ConfigError(f"{path}: holds no {paths.SUMMARY}, {paths.RESULTS} or lm-eval results_*.json")
    if len(folders) > 1:
        names = ", ".join(str(f) for f in folders)
        raise ConfigError(f"{path}: holds several results ({names}); pass one of them")
    files = result_candidates(folders[0])
    summary = next((f for f in files if f.name == paths.SUMMARY), None)
    numbers = [f for f in files if f.name != paths.SUMMARY]
    if len(numbers) > 1:
        raise ConfigError(
            f"{folders[0]}: holds several lm-eval results ({', '.join(f.name for f in numbers)})"
        )
    return (numbers[0] if numbers else summary), summary  # type: ignore[return-value]


def _task_entries(path: Path, data: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    for key in ("results", "tasks"):
        block = json_at(data, (key,), dict, path)
        if not block:
            continue
        for name, entry in block.items():
            if not isinstance(entry, dict):
                raise ConfigError(
                    f"{path}: key '{key}.{name}': expected an object of metrics, got {json_type(entry)}"
                )
        return {
            name: (entry["metrics"] if isinstance(entry.get("metrics"), dict) else entry)
            for name, entry in block.items()
        }
    return None


def _layout(data: dict[str, Any], entries: dict[str, dict[str, Any]]) -> Layout:
    if "results" not in data:
        return "kit summary"
    return "lm-eval 0.4" if any("," in k for entry in entries.values() for k in entry) else "lm-eval 0.3"


def _number(entry: dict[str, Any], name: str) -> float | None:
    """`name` read as lm-eval 0.4 writes it ("name,none" or another filter) or as 0.3 does ("name")."""
    keys = [f"{name},none", *sorted(k for k in entry if k.startswith(f"{name},")), name]
    for key in keys:
        value = entry.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _entry_for(entries: dict[str, dict[str, Any]], task: str) -> dict[str, Any] | None:
    if task in entries:
        return entries[task]
    # lm-eval keeps the task's own name as `alias`, also for wrapper tasks that include the built-in YAML.
    return next((e for e in entries.values() if str(e.get("alias", "")).strip(" -") == task), None)


def _sample_count(path: Path, data: dict[str, Any], task: str) -> int | None:
    effective = json_at(data, ("n-samples", task, "effective"), int, path)
    if effective is not None and effective < 0:
        raise ConfigError(f"{path}: key 'n-samples.{task}.effective': {effective} is not a number of samples")
    return effective


def _scores(path: Path, data: dict[str, Any], table: PublishedTable) -> tuple[Layout, dict[str, Score]]:
    entries = _task_entries(path, data)
    if entries is None:
        raise ConfigError(
            f"{path}: not an lm-eval results file or kit summary (no 'results' or 'tasks' mapping of tasks)"
        )
    present = {c.key: _entry_for(entries, c.task) for c in table.columns}
    if not any(present.values()):
        raise ConfigError(
            f"{path}: none of the tasks {', '.join(c.task for c in table.columns)} in it "
            f"(it has: {', '.join(sorted(entries)[:8])})"
        )
    missing = [c.task for c in table.columns if present[c.key] is None]
    if missing:
        raise ConfigError(
            f"{path}: missing tasks {', '.join(missing)} (all {len(table.columns)} are needed to compare)"
        )
    scores: dict[str, Score] = {}
    for column in table.columns:
        entry = present[column.key] or {}
        value = _number(entry, column.metric)
        if value is None:
            raise ConfigError(f"{path}: task {column.task} has no '{column.metric}' (the report's metric)")
        stderr = _number(entry, f"{column.metric}_stderr")
        if stderr is None:
            raise ConfigError(
                f"{path}: task {column.task} has no {column.metric} stderr"
                " (lm-eval run with bootstrap_iters=0?) - a comparison needs it"
            )
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{path}: task {column.task} {column.metric}={value} is not a fraction")
        if stderr < 0.0:
            raise ConfigError(f"{path}: task {column.task} {column.metric}_stderr={stderr} is negative")
        n = _sample_count(path, data, column.task)
        scores[column.key] = Score(task=column.task, metric=column.metric, value=value, stderr=stderr, n=n)
    return _layout(data, entries), scores


def _model_args(data: dict[str, Any]) -> dict[str, str]:
    args = data.get("config", {}).get("model_args") if isinstance(data.get("config"), dict) else None
    if isinstance(args, dict):
        return {str(k): str(v) for k, v in args.items()}
    if isinstance(args, str):
        return dict(part.split("=", 1) for part in args.split(",") if "=" in part)
    return {}


def _limit(data: dict[str, Any]) -> float | None:
    config = data.get("config")
    limit = config.get("limit") if isinstance(config, dict) else None
    return float(limit) if isinstance(limit, int | float) and not isinstance(limit, bool) else None


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _comparable(summary: dict[str, Any]) -> bool:
    """What the eval says of itself: marked not comparable, or evaluated on local task fixtures (whose
    examples are not the published test sets)."""
    return summary.get("comparable", True) is not False and not summary.get("fixtures")


def read_measured(
    path: Path,
    *,
    table: PublishedTable | None = None,
    note: str | None = None,
    comparable: bool | None = None,
) -> Measured:
    """Our scores from a results file, a kit summary or a directory holding one (ConfigError otherwise)."""
    table = table or load_published_table()
    numbers_file, summary_file = result_files(path)
    data = _read_json(numbers_file)
    layout, scores = _scores(numbers_file, data, table)
    summary = data if summary_file == numbers_file else (_read_json(summary_file) if summary_file else {})
    args = _model_args(data)
    limit = _limit(data) if _limit(data) is not None else _limit(summary)
    fixtures = _text(summary.get("fixtures"))
    is_comparable = comparable if comparable is not None else _comparable(summary)
    notes = [n for n in (note, _text(summary.get("note"))) if n]
    if fixtures:
        notes.append(
            f"evaluated on the task fixtures in {fixtures}, not the published test sets: "
            "not comparable with the published numbers"
        )
    if not is_comparable and not any("not comparable" in n for n in notes):
        notes.insert(0, NOT_COMPARABLE_NOTE)
    if limit is not None:
        notes.append(f"evaluated with limit={limit:g} examples per task: a subset, not the full test sets")
    label = _text(summary.get("label")) or numbers_file.parent.name or numbers_file.stem
    return Measured(
        source=str(numbers_file),
        layout=layout,
        label=label,
        model=_text(summary.get("model")) or args.get("pretrained") or _text(data.get("model_name")),
        revision=_text(summary.get("revision")) or args.get("revision"),
        sha=_text(summary.get("sha")),
        lm_eval_version=_text(summary.get("lm_eval_version")) or _text(data.get("lm_eval_version")),
        limit=limit,
        comparable=is_comparable,
        notes=tuple(dict.fromkeys(notes)),
        scores=scores,
    )
