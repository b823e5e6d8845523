"""Each kind of rule turned into a verdict: pass, differs or cannot tell, with what was expected and found.

`value` rules compare two expressions; the built-in checks read the run's trace (`lr-schedule`,
`data-trace`, `no-skip-no-repeat`) or its assets and lock (`locked-assets`). A check never guesses: a
fact the run does not record gives "cannot tell" and says which.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from gpt4allj_kit.errors import KitError
from gpt4allj_kit.trace import expected as trace_expected
from gpt4allj_kit.trace.layout import Layout, compact_steps, wrapped_rows
from gpt4allj_kit.trace.records import StepRecord, decode_rows
from gpt4allj_kit.verify.facts import Recipe, TrainingRun
from gpt4allj_kit.verify.rules import (
    AssetsRule,
    Changed,
    ContinuityRule,
    ScheduleRule,
    TraceRule,
    UnknownFact,
    ValueRule,
    evaluate,
)

Verdict = Literal["pass", "differs", "cannot tell"]
_SHOWN = 5  # differing steps named in a verdict


class RuleVerdict(BaseModel):
    id: str
    checks: str
    severity: str
    expected: str
    found: str
    verdict: Verdict


@dataclass
class Context:
    """One run checked against one recipe; the expensive parts (the data's rows) computed once."""

    run: TrainingRun
    recipe: Recipe
    facts: dict[str, Any]
    against: TrainingRun | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # caches shared between recipes of one run

    def train_rows(self) -> trace_expected.TrainRows | UnknownFact:
        """The run's training rows: tokenized (with content) when its data and tokenizer are at hand, else
        from its launch record's row counts (row numbers only)."""
        if "train_rows" not in self.shared:
            self.shared["train_rows"] = self._train_rows()
        return self.shared["train_rows"]

    def _train_rows(self) -> trace_expected.TrainRows | UnknownFact:
        config, launch = self.run.config, self.run.launch
        if config is not None and trace_expected.data_at_hand(config) is not None:
            try:
                return trace_expected.from_dataset(config)
            except KitError as exc:
                return UnknownFact("the data", f"the run's data cannot be read here ({exc.message})")
        if launch is None or launch.data_rows is None or launch.seed is None:
            return UnknownFact("the data", "the data is not at hand and no trace launch record counts it")
        dropped = tuple(decode_rows(launch.dropped_rows or ""))
        return trace_expected.from_counts(
            launch.data_rows, launch.seed, dropped, "the launch record's row counts (data not at hand)"
        )


# --- formatting -----------------------------------------------------------------------------------------


_DIGEST = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def shown(value: Any) -> str:
    if isinstance(value, str) and _DIGEST.match(value):
        return value[:12]  # a commit sha or a sha256: its prefix names it
    if isinstance(value, Changed):
        return str(value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "none"}[value]
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    return str(value)


def same(found: Any, expected: Any, tolerance: float = 0.0) -> bool:
    if isinstance(found, Changed) or isinstance(expected, Changed):
        return False
    if isinstance(found, list | tuple) and isinstance(expected, list | tuple):
        return len(found) == len(expected) and all(
            same(a, b, tolerance) for a, b in zip(found, expected, strict=True)
        )
    numbers = (int, float)
    if isinstance(found, numbers) and isinstance(expected, numbers) and not isinstance(found, bool):
        if isinstance(expected, bool):
            return False
        return math.isclose(found, expected, rel_tol=tolerance, abs_tol=0.0) or found == expected
    return bool(found == expected)


def _unknown(exc: UnknownFact) -> str:
    return f"not known: {exc.name}" + (f" ({exc.why})" if exc.why else "")


def verdict(rule: Any, result: Verdict, expected: str, found: str) -> RuleVerdict:
    return RuleVerdict(
        id=rule.id, checks=rule.checks, severity=rule.severity, expected=expected, found=found, verdict=result
    )


# --- value ----------------------------------------------------------------------------------------------


def check_value(rule: ValueRule, ctx: Context) -> RuleVerdict:
    try:
        expected = evaluate(rule.expected, ctx.facts)
    except UnknownFact as exc:
        return verdict(rule, "cannot tell", _unknown(exc), "-")
    try:
        found = evaluate(rule.found, ctx.facts)
    except UnknownFact as exc:
        return verdict(rule, "cannot tell", shown(expected), _unknown(exc))
    return verdict(
        rule, "pass" if same(found, expected, rule.tolerance) else "differs", shown(expected), shown(found)
    )


# --- lr-schedule ----------------------------------------------------------------------------------------


def _step_lrs(run: TrainingRun) -> list[tuple[int, float]] | None:
    """(step, lr used) from the trace, else from metrics.jsonl (runs made before the trace)."""
    if run.trace is not None and run.trace.steps:
        return [(s.step, s.lr) for s in run.trace.steps if s.lr is not None]
    from gpt4allj_kit import paths
    from gpt4allj_kit.report.contents import read_metrics

    metrics = run.train_dir / paths.METRICS
    if not metrics.is_file():
        return None
    return [(int(step), lr) for step, lr in read_metrics(metrics).lr] or None


def check_schedule(rule: ScheduleRule, ctx: Context) -> RuleVerdict:
    from gpt4allj_kit.train.optim import warmup_constant_lr

    try:
        lr, min_lr, warmup = (evaluate(e, ctx.facts) for e in (rule.lr, rule.min_lr, rule.warmup_steps))
    except UnknownFact as exc:
        return verdict(rule, "cannot tell", _unknown(exc), "-")
    expected = f"WarmupLR: {shown(min_lr)} -> {shown(lr)} linearly over {warmup} steps, then constant"
    lrs = _step_lrs(ctx.run)
    if not lrs:
        return verdict(
            rule, "cannot tell", expected, "no step has run (no trace.jsonl or metrics.jsonl lines)"
        )
    wrong = [
        (step, used, formula)
        for step, used in lrs
        if not math.isclose(
            used, formula := warmup_constant_lr(step - 1, lr=lr, min_lr=min_lr, warmup_steps=int(warmup)),
            rel_tol=rule.tolerance, abs_tol=1e-12,
        )
    ]  # fmt: skip
    if not wrong:
        return verdict(rule, "pass", expected, f"every one of {len(lrs)} steps")
    first = ", ".join(f"step {s}: {shown(u)} (formula {shown(f)})" for s, u, f in wrong[:3])
    return verdict(rule, "differs", expected, f"{len(wrong)} of {len(lrs)} steps differ: {first}")


# --- data-trace -----------------------------------------------------------------------------------------


def _run_layout(ctx: Context) -> Layout | UnknownFact:
    launch, config = ctx.run.launch, ctx.run.config
    if launch is None or launch.num_processes is None or config is None:
        return UnknownFact("run layout", "no trace launch record")
    accumulation = launch.gradient_accumulation_steps or config.gradient_accumulation_steps
    return Layout(launch.num_processes, launch.batch_size or config.batch_size, accumulation)


def expected_for(
    ctx: Context, layout: Layout, *, recipe: bool
) -> tuple[list[StepRecord], trace_expected.TrainRows] | UnknownFact:
    """The expected steps of `layout` on the run's training split: with the run's own order and epochs,
    or (`recipe`) the recipe's (shuffle, epochs, step cap; the split's seed is the seed rule's)."""
    rows = ctx.train_rows()
    if isinstance(rows, UnknownFact):
        return rows
    assert ctx.run.config is not None
    schedule = trace_expected.Schedule.of(ctx.run.config)
    if recipe:
        config = ctx.recipe.config
        schedule = replace(
            schedule, shuffle=config.shuffle, epochs=config.num_epochs, max_steps=config.max_steps
        )
    key = f"expected {layout} {schedule}"
    if key not in ctx.shared:
        ctx.shared[key] = list(trace_expected.expected_steps(rows, layout, schedule))
    return ctx.shared[key], rows


def _mismatch_text(comparison: trace_expected.TraceComparison) -> str:
    parts = []
    if comparison.mismatches:
        steps = compact_steps([m.step for m in comparison.mismatches])
        first = "; ".join(f"step {m.step}: {m.what}" for m in comparison.mismatches[:_SHOWN])
        parts.append(
            f"{len(comparison.mismatches)} of {comparison.compared} steps differ (steps {steps}): {first}"
        )
    if comparison.extra:
        parts.append(f"steps not expected: {compact_steps(list(comparison.extra))}")
    if comparison.pending and comparison.complete:
        parts.append(f"{comparison.pending} expected steps never ran")
    return "; ".join(parts)


def check_trace(rule: TraceRule, ctx: Context) -> RuleVerdict:
    steps = ctx.run.trace.steps if ctx.run.trace else []
    if not steps:
        return verdict(
            rule, "cannot tell", "-", "no trace.jsonl steps (a run made before the kit traced data?)"
        )
    if rule.layout == "run" and ctx.against is not None:
        return _against_run(rule, ctx, steps)
    layout: Layout | UnknownFact | None = _run_layout(ctx) if rule.layout == "run" else ctx.recipe.layout
    if layout is None:
        return verdict(rule, "cannot tell", "the recipe's layout is not fixed (its profile says 'auto')", "-")
    if isinstance(layout, UnknownFact):
        return verdict(rule, "cannot tell", _unknown(layout), f"{len(steps)} steps")
    computed = expected_for(ctx, layout, recipe=rule.layout == "recipe")
    if isinstance(computed, UnknownFact):
        return verdict(rule, "cannot tell", _unknown(computed), f"{len(steps)} steps")
    expected_steps, rows = computed
    comparison = trace_expected.compare_steps(
        steps, expected_steps, complete=ctx.run.finished, windows=rule.layout == "run"
    )
    what = "rows and token content" if rows.content else "row numbers only (the data is not at hand)"
    expected = f"the expected trace of {layout.describe()} ({len(expected_steps)} steps; {what})"
    if comparison.same:
        progress = "" if ctx.run.finished else f" so far (of {len(expected_steps)})"
        hashed = f", content of {comparison.content_compared}" if comparison.content_compared else ""
        return verdict(rule, "pass", expected, f"{comparison.compared} steps equal{progress}: rows{hashed}")
    return verdict(rule, "differs", expected, _mismatch_text(comparison))


def _against_run(rule: TraceRule, ctx: Context, steps: list[StepRecord]) -> RuleVerdict:
    other = ctx.against
    assert other is not None
    theirs = other.trace.steps if other.trace else []
    expected = f"the trace of {other.path} ({len(theirs)} steps)"
    if not theirs:
        return verdict(rule, "cannot tell", expected, f"{other.path} has no trace.jsonl steps")
    # Another run may have another layout: its steps are compared by their rows, not by batch windows.
    comparison = trace_expected.compare_steps(
        steps, theirs, complete=ctx.run.finished and other.finished, windows=False
    )
    if comparison.same:
        hashed = f", content of {comparison.content_compared}" if comparison.content_compared else ""
        return verdict(rule, "pass", expected, f"{comparison.compared} steps equal: rows{hashed}")
    return verdict(rule, "differs", expected, _mismatch_text(comparison))


# --- no-skip-no-repeat ----------------------------------------------------------------------------------


def _resumes(run: TrainingRun) -> str:
    resumed = [r for r in run.launches if r.step > 0]
    if not resumed:
        return ""
    where = ", ".join(
        f"step {r.step}" + (f" ({Path(r.resumed_from).name})" if r.resumed_from else "") for r in resumed
    )
    return f"; resumed after {where}"


def check_continuity(rule: ContinuityRule, ctx: Context) -> RuleVerdict:
    run = ctx.run
    steps = run.trace.steps if run.trace else []
    expected = (
        "steps 1..n once each; each epoch reads every training row, repeats only even_batches' wrap-around"
    )
    if not steps:
        return verdict(rule, "cannot tell", expected, "no trace.jsonl steps")
    problems = []
    numbers = [s.step for s in steps]
    repeated = sorted(n for n, c in Counter(numbers).items() if c > 1)
    if repeated:
        problems.append(f"steps logged twice: {compact_steps(repeated)}")
    gaps = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
    if gaps:
        problems.append(f"steps missing: {compact_steps(gaps)}")
    launch, layout = run.launch, _run_layout(ctx)
    rows_checked = (
        launch is not None and launch.train_rows is not None and not isinstance(layout, UnknownFact)
    )
    if rows_checked:
        assert launch is not None and launch.train_rows is not None and isinstance(layout, Layout)
        problems += _epoch_rows(steps, launch.train_rows, layout, launch.steps_per_epoch)
    found = f"{len(numbers)} steps" + _resumes(run)
    if problems:
        return verdict(rule, "differs", expected, f"{found}: {'; '.join(problems)}")
    if not rows_checked:
        return verdict(
            rule, "cannot tell", expected, f"{found}: contiguous; rows not checked (no launch record)"
        )
    return verdict(rule, "pass", expected, f"{found}: contiguous, no row repeated or missing")


def _epoch_rows(
    steps: Sequence[StepRecord], train_rows: int, layout: Layout, per_epoch: int | None
) -> list[str]:
    problems = []
    wrap = wrapped_rows(train_rows, layout)
    by_epoch: dict[int, Counter[int]] = {}
    counts: Counter[int] = Counter()
    for step in steps:
        by_epoch.setdefault(step.epoch, Counter()).update(step.row_list())
        counts[step.epoch] += 1
    for epoch, rows in sorted(by_epoch.items()):
        repeats = sum(rows.values()) - len(rows)
        if repeats > wrap:
            problems.append(f"epoch {epoch + 1}: {repeats} rows read twice (even_batches repeats {wrap})")
        if per_epoch is not None and counts[epoch] == per_epoch and len(rows) != train_rows:
            problems.append(f"epoch {epoch + 1}: {train_rows - len(rows)} of {train_rows} rows never read")
    return problems


# --- locked-assets --------------------------------------------------------------------------------------


def _assets(run: TrainingRun) -> dict[str, Any] | None:
    if run.manifest is not None and isinstance(run.manifest.get("assets"), dict):
        return run.manifest["assets"]
    extra = run.launch.model_dump() if run.launch is not None else {}
    return extra.get("assets") if isinstance(extra.get("assets"), dict) else None


# Each asset: the config keys naming its repo and revision, and its repo type.
_REPO_KEYS = {
    "model": ("model_name", "model_revision", "model"),
    "tokenizer": ("tokenizer_name", "model_revision", "model"),
    "data": ("dataset_path", "revision", "dataset"),
}


def _local_hashes(record: dict[str, Any]) -> list[str] | None:
    files = record.get("files")
    if isinstance(files, list) and files:
        return [f.get("sha256") for f in files if isinstance(f, dict)]
    folder = Path(str(record.get("path", "")))
    if not folder.is_dir():
        return None
    from gpt4allj_kit.files import sha256_file

    # A local model or tokenizer folder: hashed now (the manifest keeps its path only).
    return [sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()]


def _one_asset(kind: str, record: Any, lock: Any, ctx: Context) -> tuple[Verdict, str, str]:
    name_key, revision_key, repo_type = _REPO_KEYS[kind]
    recipe = ctx.recipe.config
    if not isinstance(record, dict):
        return "cannot tell", f"{kind}: locked", f"{kind}: not recorded"
    if record.get("source") == "hub":
        wanted = f"{getattr(recipe, name_key)}@{getattr(recipe, revision_key)}"
        entry = lock.find(record.get("repo_id"), repo_type, record.get("revision")) if lock else None
        got = f"{record.get('repo_id')}@{record.get('revision')} = {str(record.get('sha'))[:12]}"
        if entry is None:
            return (
                ("cannot tell" if lock is None else "differs"),
                f"{kind}: {wanted} (in the lock)",
                f"{got}; not in the lock",
            )
        expected = f"{kind}: {wanted} = {entry.sha[:12]} (the lock)"
        ok = f"{record.get('repo_id')}@{record.get('revision')}" == wanted and entry.sha == record.get("sha")
        return ("pass" if ok else "differs"), expected, f"{kind}: {got}"
    hashes = _local_hashes(record)
    if not hashes or lock is None:
        return (
            "cannot tell",
            f"{kind}: locked by content",
            f"{kind}: local {record.get('path')} (no hashes or no lock)",
        )
    match = next(
        (a for a in lock.assets if a.repo_type == repo_type and set(hashes) <= {f.sha256 for f in a.files}),
        None,
    )
    if match is None:
        return (
            "differs",
            f"{kind}: a locked asset's content",
            f"{kind}: local files matching no asset of the lock",
        )
    locked = f"{match.repo_id}@{match.revision} = {match.sha[:12]}"
    return "pass", f"{kind}: {locked} (by content)", f"{kind}: local, {len(hashes)} files of {locked}"


def check_assets(rule: AssetsRule, ctx: Context) -> RuleVerdict:
    from gpt4allj_kit.fetch.lock import read_lock

    assets = _assets(ctx.run)
    if assets is None:
        return verdict(
            rule, "cannot tell", "the assets of the run's lock", "no manifest or trace launch record"
        )
    lock = read_lock(ctx.run.lock) if ctx.run.lock else None
    results = [_one_asset(kind, assets.get(kind), lock, ctx) for kind in rule.assets]
    verdicts = {r[0] for r in results}
    overall: Verdict = (
        "differs" if "differs" in verdicts else ("cannot tell" if "cannot tell" in verdicts else "pass")
    )
    return verdict(rule, overall, "; ".join(r[1] for r in results), "; ".join(r[2] for r in results))


CHECKS: dict[type, Callable[[Any, Context], RuleVerdict]] = {
    ValueRule: check_value,
    ScheduleRule: check_schedule,
    TraceRule: check_trace,
    AssetsRule: check_assets,
    ContinuityRule: check_continuity,
}
