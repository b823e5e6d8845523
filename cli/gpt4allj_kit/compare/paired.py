"""Two of our own evaluations compared document by document (lm-eval's `samples/<task>.jsonl`).

Against the published table only unpaired tests are possible: its numbers have no documents. Two of our
evaluations on the same documents can be paired, which removes the documents' own difficulty from the
comparison and is far more sensitive than two independent stderrs:
- per task, McNemar's exact test on the discordant documents (A right and B wrong, or the reverse): under
  "no difference" each discordant document is a fair coin, so p is the two-sided binomial tail;
- for every task and for the average over the tasks, a paired bootstrap: documents resampled with
  replacement within each task (seeded, recorded), the percentile interval of Δ = A - B.
A task where every document scores the same in A and B is `same`, whatever the models are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gpt4allj_kit import paths
from gpt4allj_kit.compare.results import evaluations
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import read_json_object, read_text
from gpt4allj_kit.published import Column, PublishedTable, load_published_table

SAMPLES_DIR = "samples"
# The evaluation settings whose difference would mix into a paired difference between two models.
SETTINGS_KEYS = ("lm_eval_version", "task_versions", "num_fewshot", "limit", "dtype", "batch_size", "device")
ALPHA = 0.05
RESAMPLES = 10_000
SEED = 1234

PairedVerdict = Literal["same", "not significant", "differs"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Settings(_Model):
    """What a paired verdict assumes, recorded with it."""

    alpha: float = Field(ALPHA, gt=0, lt=1)
    resamples: int = Field(RESAMPLES, ge=100)
    seed: int = Field(SEED, ge=0)
    per_task_test: str = "McNemar's exact test (two-sided binomial on the discordant documents)"
    interval: str = "paired bootstrap, documents resampled within each task, percentile interval"


class PairedTask(_Model):
    """One task of A against B, in percent points (Δ = A - B)."""

    key: str
    label: str
    task: str
    metric: str
    n: int
    a: float
    b: float
    delta: float
    ci_low: float
    ci_high: float
    only_a: int  # documents A gets right and B wrong
    only_b: int
    p_value: float
    verdict: PairedVerdict


class PairedAverage(_Model):
    a: float
    b: float
    delta: float
    ci_low: float
    ci_high: float
    verdict: PairedVerdict


class PairedComparison(_Model):
    """A against B over the suite's tasks, on the same documents."""

    a_label: str
    b_label: str
    a_source: str
    b_source: str
    tasks: tuple[PairedTask, ...]
    average: PairedAverage
    settings: Settings
    notes: tuple[str, ...] = ()

    @property
    def differing(self) -> list[str]:
        return [t.label for t in self.tasks if t.verdict == "differs"]

    @property
    def same(self) -> bool:
        return all(t.verdict == "same" for t in self.tasks)


# --- statistics -----------------------------------------------------------------------------------------


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided p of McNemar's exact test: the discordant pairs split as a fair coin would, or not."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    # Exact integers until the one (correctly rounded) division: 2**n overflows a float past n = 1023.
    return min(1.0, 2 * tail / (1 << n))


def bootstrap_deltas(
    only_a: int, only_b: int, n: int, rng: np.random.Generator, resamples: int
) -> np.ndarray:
    """Resampled Δ (fraction) of one task's paired 0/1 scores.

    Only the counts of the three kinds of document matter (A alone right, B alone right, both alike), so
    resampling n documents with replacement is a multinomial draw of those counts: the same distribution as
    resampling indices, in a fraction of the memory."""
    probabilities = [only_a / n, only_b / n, 1 - (only_a + only_b) / n]
    counts = rng.multinomial(n, np.clip(probabilities, 0.0, 1.0), size=resamples)
    return (counts[:, 0] - counts[:, 1]) / n


def percentile_interval(deltas: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _task_verdict(only_a: int, only_b: int, p_value: float, alpha: float) -> PairedVerdict:
    if only_a == only_b == 0:
        return "same"
    return "differs" if p_value < alpha else "not significant"


def _interval_verdict(low: float, high: float, identical: bool) -> PairedVerdict:
    if identical:
        return "same"
    return "differs" if low > 0 or high < 0 else "not significant"


# --- documents --------------------------------------------------------------------------------------------


def _scores(path: Path, metric: str) -> dict[int, tuple[float, str]]:
    """doc_id → (the metric's 0/1 score, the document's hash) from one samples file."""
    found: dict[int, tuple[float, str]] = {}
    for number, line in enumerate(read_text(path, str(path), "samples file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
        if not isinstance(record, dict) or record.get("filter", "none") != "none":
            continue
        doc_id, score = record.get("doc_id"), record.get(metric)
        if not isinstance(doc_id, int) or isinstance(score, bool) or score not in (0, 1):
            raise ConfigError(
                f"{path}:{number}: no doc_id and 0/1 '{metric}' (not lm-eval's per-document samples)"
            )
        found[doc_id] = (float(score), str(record.get("doc_hash", "")))
    if not found:
        raise ConfigError(f"{path}: no documents")
    return found


def _paired_scores(a: Path, b: Path, column: Column) -> tuple[np.ndarray, np.ndarray]:
    file = f"{SAMPLES_DIR}/{column.task}.jsonl"
    docs_a = _scores(a / file, column.metric)
    docs_b = _scores(b / file, column.metric)
    if docs_a.keys() != docs_b.keys():
        raise ConfigError(
            f"{column.task}: {a} has {len(docs_a)} documents and {b} {len(docs_b)}, not the same ones "
            "(evaluated with different limits or task versions?): a paired test needs the same documents"
        )
    changed = next((d for d in sorted(docs_a) if docs_a[d][1] != docs_b[d][1]), None)
    if changed is not None:
        raise ConfigError(
            f"{column.task}: document {changed} differs between {a} and {b} (another task version or "
            "dataset revision): a paired test needs the same documents"
        )
    ids = sorted(docs_a)
    return np.array([docs_a[d][0] for d in ids]), np.array([docs_b[d][0] for d in ids])


def evaluation_folders(path: Path) -> dict[str, Path]:
    """The evaluations at `path` (see `results.evaluations`) that hold lm-eval's per-document samples."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: not a directory (pass an eval folder or a run dir)")
    found = {label: f for label, f in evaluations(path).items() if (f / SAMPLES_DIR).is_dir()}
    if not found:
        raise ConfigError(
            f"{path}: holds no evaluation with per-document samples ({paths.SUMMARY} and {SAMPLES_DIR}/; "
            "the kit's eval writes both)"
        )
    return found


def _summary(folder: Path) -> dict[str, object]:
    return read_json_object(folder / paths.SUMMARY, kind="eval summary")


def _label(folder: Path, summary: dict[str, object]) -> str:
    label = summary.get("label")
    return str(label) if label else folder.name


def settings_notes(summary_a: dict[str, object], summary_b: dict[str, object]) -> tuple[str, ...]:
    """What differs between the two evaluations' settings (their summaries): the paired difference then
    includes its effect."""
    return tuple(
        f"evaluated with different {key} (A: {summary_a.get(key)}, B: {summary_b.get(key)}): "
        "the difference includes that setting's effect"
        for key in SETTINGS_KEYS
        if summary_a.get(key) != summary_b.get(key)
    )


def pairs(a: Path, b: Path) -> list[tuple[Path, Path]]:
    """Which evaluation of A goes with which of B: one each, or (two runs) the labels both have."""
    found_a, found_b = evaluation_folders(a), evaluation_folders(b)
    if len(found_a) == 1 and len(found_b) == 1:
        return [(next(iter(found_a.values())), next(iter(found_b.values())))]
    if len(found_a) > 1 and len(found_b) > 1:
        common = [label for label in found_a if label in found_b]
        if not common:
            raise ConfigError(
                f"{a} ({', '.join(found_a)}) and {b} ({', '.join(found_b)}) "
                "have no evaluation label in common"
            )
        return [(found_a[label], found_b[label]) for label in common]
    many, found = (a, found_a) if len(found_a) > 1 else (b, found_b)
    raise ConfigError(
        f"{many} holds several evaluations ({', '.join(found)}): pass one of them "
        f"(e.g. {found[next(iter(found))]})"
    )


# --- the comparison ---------------------------------------------------------------------------------------


def compare_paired(
    a: Path,
    b: Path,
    *,
    table: PublishedTable | None = None,
    settings: Settings | None = None,
    a_label: str | None = None,
    b_label: str | None = None,
) -> PairedComparison:
    """Evaluation folder `a` against `b`, task by task on the suite's metrics, on the same documents."""
    table = table or load_published_table()
    settings = settings or Settings()
    summary_a, summary_b = _summary(a), _summary(b)
    a_label, b_label = a_label or _label(a, summary_a), b_label or _label(b, summary_b)
    rng = np.random.default_rng(settings.seed)
    tasks: list[PairedTask] = []
    resampled: list[np.ndarray] = []
    for column in table.columns:
        scores_a, scores_b = _paired_scores(a, b, column)
        n = len(scores_a)
        only_a = int(np.sum((scores_a == 1) & (scores_b == 0)))
        only_b = int(np.sum((scores_a == 0) & (scores_b == 1)))
        deltas = bootstrap_deltas(only_a, only_b, n, rng, settings.resamples)
        resampled.append(deltas)
        low, high = percentile_interval(deltas, settings.alpha)
        p_value = mcnemar_exact(only_a, only_b)
        tasks.append(
            PairedTask(
                key=column.key,
                label=column.label,
                task=column.task,
                metric=column.metric,
                n=n,
                a=100 * float(scores_a.mean()),
                b=100 * float(scores_b.mean()),
                delta=100 * (only_a - only_b) / n,
                ci_low=100 * low,
                ci_high=100 * high,
                only_a=only_a,
                only_b=only_b,
                p_value=p_value,
                verdict=_task_verdict(only_a, only_b, p_value, settings.alpha),
            )
        )
    return PairedComparison(
        a_label=a_label,
        b_label=b_label,
        a_source=str(a),
        b_source=str(b),
        tasks=tuple(tasks),
        average=_average(tasks, resampled, settings),
        settings=settings,
        notes=settings_notes(summary_a, summary_b),
    )


def _average(
    tasks: Sequence[PairedTask], resampled: Sequence[np.ndarray], settings: Settings
) -> PairedAverage:
    """The average over tasks, as the published table's Avg: each task weighs the same, whatever its size."""
    low, high = percentile_interval(np.mean(np.stack(resampled), axis=0), settings.alpha)
    a = sum(t.a for t in tasks) / len(tasks)
    b = sum(t.b for t in tasks) / len(tasks)
    return PairedAverage(
        a=a,
        b=b,
        delta=a - b,
        ci_low=100 * low,
        ci_high=100 * high,
        verdict=_interval_verdict(100 * low, 100 * high, all(t.verdict == "same" for t in tasks)),
    )


def compare_runs(a: Path, b: Path, *, settings: Settings | None = None) -> list[PairedComparison]:
    """`compare RUN_A RUN_B`: every pair of evaluations (see `pairs`) compared document by document."""
    table = load_published_table()
    return [compare_paired(x, y, table=table, settings=settings) for x, y in pairs(a, b)]
