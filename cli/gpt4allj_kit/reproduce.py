"""`reproduce`: doctor → fetch → train → eval → compare → report, one directory per run, resumable.

Each stage records itself in `RUN_DIR/run.json` (see `runstate`). Re-running the same command skips the
stages whose outputs are complete, resumes a killed training from its last `step_N/`, and evaluates only the
checkpoints that have no results yet. `RUN_DIR/manifest.json` ties the stages' own manifests together.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt4allj_kit import paths
from gpt4allj_kit.config import (
    Profile,
    load_profile,
    load_train_config,
    merged,
    parse_overrides,
    profile_file,
)
from gpt4allj_kit.errors import ConfigError, ExitCode, KitError
from gpt4allj_kit.files import check_writable, sha256_file
from gpt4allj_kit.manifest import now_iso, write_manifest
from gpt4allj_kit.published import PublishedTable, Row, load_eval_stack, load_published_table
from gpt4allj_kit.recipe import BASE_REPO, MODEL_REPO, ROW_OF_REVISION
from gpt4allj_kit.redaction import redact
from gpt4allj_kit.runstate import STAGES, RunState, load_state, save_state, state_path

# Each stage's folder in a run directory, in stage order.
STAGE_DIRS = (paths.DOCTOR_DIR, paths.TRAIN_DIR, paths.EVAL_DIR, paths.COMPARE_DIR, paths.REPORT_DIR)
NOT_COMPARABLE = "a tiny random model trained on synthetic data is not comparable with the published numbers"


@dataclass(frozen=True)
class ReproduceRequest:
    revision: str
    profile: str = "full"
    output: Path | None = None
    skip_train: bool = False
    baseline: bool = False
    force: bool = False
    against: str | None = None
    sets: tuple[str, ...] = ()
    command: str = "gpt4allj-kit reproduce"

    def run_dir(self) -> Path:
        default = paths.default_output("reproduce") / f"{Path(self.profile).stem}-{self.revision}"
        return (self.output or default).expanduser().resolve()


@dataclass
class Outcome:
    """What a stage reports for the summary table."""

    key: str | None = None
    path: Path | None = None
    detail: str | None = None
    skipped: bool = False


@dataclass
class Hooks:
    """How the CLI watches a run; library code never prints."""

    stage_started: Callable[[str], None] = lambda _name: None
    stage_ended: Callable[[str, RunState], None] = lambda _name, _state: None
    progress: Callable[[str, float | None, float | None], None] = lambda _msg, _done, _total: None


@dataclass
class Run:
    request: ReproduceRequest
    profile: Profile
    row: Row
    run_dir: Path
    hooks: Hooks
    table: PublishedTable
    fixtures: Path | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def tiny(self) -> bool:
        return self.profile.assets == "tiny"

    @property
    def lock(self) -> Path:
        return self.run_dir / paths.LOCK_NAME


# --- doctor -------------------------------------------------------------------------------------------


def stage_doctor(run: Run) -> Outcome:
    from gpt4allj_kit import doctor

    profile = run.profile
    if run.request.skip_train and profile.eval_requirements is not None:
        profile = profile.model_copy(update={"requirements": profile.eval_requirements})
    out_dir = run.run_dir / paths.DOCTOR_DIR
    try:
        readiness = doctor.recorded_preflight(
            profile, out_dir, force=run.request.force, command=run.request.command
        )
    except doctor.NotReady as exc:
        run.facts["doctor"] = exc.readiness.model_dump(mode="json")
        raise
    run.facts["doctor"] = readiness.model_dump(mode="json")
    key = "can run" if readiness.can_run else f"forced past {len(readiness.reasons)} problem(s)"
    return Outcome(key=key, path=out_dir, detail="; ".join(readiness.notes) or None)


# --- fetch --------------------------------------------------------------------------------------------


def _hub_what(run: Run) -> list[str]:
    what = ["tasks"]
    if not run.request.skip_train:
        what += ["data", "base"]
    if run.request.skip_train or run.request.baseline:
        what += ["model"]
    if run.request.baseline and "base" not in what:
        what += ["base"]
    return what


def stage_fetch(run: Run) -> Outcome:
    from gpt4allj_kit.fetch.stage import FetchRequest, fetch_assets
    from gpt4allj_kit.fetch.tiny import TinyWorld

    # The smoke world's assets are generated (its task fixtures into the run dir), the real ones fetched.
    tiny = (
        TinyWorld(run.profile.seed, run.run_dir / paths.FIXTURES_DIR, run.profile.eval.limit or 16)
        if run.tiny
        else None
    )
    request = FetchRequest(
        what=tuple(_hub_what(run)),
        revision=run.request.revision,
        lock=run.lock,
        locked=run.lock.exists(),
        tiny=tiny,
        command=run.request.command,
    )

    def on_file(event: Any) -> None:
        run.hooks.progress(f"fetch {event.repo_id}/{event.path}", event.done, event.total)

    result = fetch_assets(request, progress=on_file)
    run.fixtures = result.fixtures
    if run.tiny:
        return Outcome(
            key=f"{len(result.assets)} local assets locked", path=run.lock, detail="offline: generated"
        )
    shas = ", ".join(f"{f.what} {f.snapshot.sha[:12]}" for f in result.assets)
    return Outcome(key=f"{len(result.assets)} assets locked", path=run.lock, detail=shas)


# --- train --------------------------------------------------------------------------------------------


def _train_complete(train_dir: Path) -> bool:
    manifest = train_dir / paths.MANIFEST
    return (train_dir / "final" / "config.json").is_file() and manifest.is_file()


def stage_train(run: Run) -> Outcome:
    from gpt4allj_kit.train import checkpoint, lifecycle
    from gpt4allj_kit.train import launch as train_launch

    train_dir = run.run_dir / paths.TRAIN_DIR
    if run.request.skip_train:
        return Outcome(key="skipped (--skip-train)", skipped=True)
    if _train_complete(train_dir):
        return Outcome(key="complete", path=train_dir, detail="already trained", skipped=True)
    resume = "latest" if checkpoint.step_dirs(train_dir) else None
    plan = train_launch.plan(
        train_launch.TrainRequest(
            revision=run.request.revision,
            profile=run.request.profile,
            resume=resume,
            sets=list(run.request.sets),
            overrides={"output_dir": str(train_dir), "asset_lock": str(run.lock)},
        )
    )
    # The same checks as `gpt4allj-kit train`: a bad model or data row is one line before any launch.
    checked = train_launch.check_inputs(plan)
    run.facts["train_inputs"] = {
        "rows": checked.rows.rows if checked.rows is not None else None,
        "notes": checked.notes,
    }
    run.facts["train_command"] = plan.shell()
    total = plan.hyper.total_steps
    # Nothing to resume from: a training killed before its first saved state is moved aside, not reused.
    # The training stops with this process, however it ends (see train/lifecycle.py).
    with lifecycle.start(plan, force_new=resume is None) as training:
        if training.moved_aside is not None:
            run.facts["train_moved_aside"] = str(training.moved_aside)
        while (code := training.poll()) is None:
            run.hooks.progress("train", lifecycle.last_step(train_dir), total)
            time.sleep(1.0)
    if code != 0:
        raise KitError(
            f"training exited with code {code} (log: {training.log_file}); re-run the same command to resume",
            exit_code=ExitCode.ENVIRONMENT,
        )
    details = ([f"resumed from {resume}"] if resume else []) + checked.notes
    detail = "; ".join(details) or None
    return Outcome(key=f"{lifecycle.last_step(train_dir)} steps", path=train_dir, detail=detail)


# --- eval ---------------------------------------------------------------------------------------------


def _eval_sources(run: Run) -> list[Any]:
    from gpt4allj_kit.evaluate import harness

    sources: list[Any] = []
    if not run.request.skip_train:
        models = harness.training_run_models(run.run_dir / paths.TRAIN_DIR)
        sources += [harness.ModelSource(label=p.name, path=p.resolve()) for p in models]
    if run.tiny:
        # The smoke world has no published checkpoint: its untrained tiny model stands in for both.
        from gpt4allj_kit.assets import tiny_assets

        tiny = tiny_assets(paths.kit_cache_dir(), seed=run.profile.seed)
        stand_in = harness.ModelSource(label=paths.RELEASED_LABEL, path=tiny.model_dir.resolve())
        if run.request.skip_train or run.request.baseline:
            sources.append(stand_in)
        if run.request.baseline:
            sources.append(harness.ModelSource(label=paths.BASE_LABEL, path=tiny.model_dir.resolve()))
        return sources
    if run.request.skip_train or run.request.baseline:
        sources += harness.resolve_models(
            MODEL_REPO, revision=run.request.revision, label=paths.RELEASED_LABEL
        )
    if run.request.baseline:
        sources += harness.resolve_models(BASE_REPO, revision="main", label=paths.BASE_LABEL)
    return sources


def stage_eval(run: Run) -> Outcome:
    from gpt4allj_kit.evaluate import harness

    eval_dir = run.run_dir / paths.EVAL_DIR
    sources = _eval_sources(run)
    if not sources:
        raise ConfigError(f"nothing to evaluate: no epoch_N/ or final/ under {run.run_dir / paths.TRAIN_DIR}")
    todo = [s for s in sources if not (eval_dir / s.label / paths.SUMMARY).is_file()]
    settings = run.profile.eval
    options = harness.EvalOptions(
        tasks=harness.parse_tasks(settings.tasks),
        batch_size=settings.batch_size,
        limit=settings.limit,
        device=settings.device,
        include_path=run.fixtures if settings.fixtures else None,
        lock=None if run.tiny else run.lock,
        command=[*run.request.command.split()],
    )
    if todo:
        harness.evaluate(todo, options, eval_dir, progress=lambda msg: run.hooks.progress(msg, None, None))
    done = len(sources) - len(todo)
    labels = ", ".join(s.label for s in sources)
    return Outcome(
        key=f"{len(sources)} model(s)",
        path=eval_dir,
        detail=f"{labels}" + (f" ({done} already evaluated)" if done else ""),
        skipped=not todo,
    )


# --- compare ------------------------------------------------------------------------------------------


def _row_for(run: Run, label: str) -> Row:
    return run.table.row("base") if label == paths.BASE_LABEL else run.row


def stage_compare(run: Run) -> Outcome:
    from gpt4allj_kit.compare.stage import write_comparisons

    compare_dir = run.run_dir / paths.COMPARE_DIR
    written = write_comparisons(
        run.run_dir / paths.EVAL_DIR,
        compare_dir,
        against=lambda label: _row_for(run, label),
        table=run.table,
        note=NOT_COMPARABLE if run.tiny else None,
        comparable=False if run.tiny else None,
        command=run.request.command,
        attribute_against=run.row,
    )
    results = written.comparisons
    run.facts["comparisons"] = {label: c.differing for label, c in results.items()}
    headline = results.get("final") or next(iter(results.values()))
    cells = len(headline.cells)
    key = (
        "not comparable (tiny model)"
        if run.tiny
        else f"{cells - len(headline.differing)}/{cells} cells reproduced ({headline.measured.label})"
    )
    attribution = written.attribution
    split = "gap split" if attribution and attribution.split else "gap not split (no published eval)"
    return Outcome(key=key, path=compare_dir, detail=f"against {run.row.name}; {split}")


# --- report -------------------------------------------------------------------------------------------


def stage_report(run: Run) -> Outcome:
    from gpt4allj_kit.report.build import build_report

    # The comparisons are the compare stage's (compare/); the report reads them rather than choosing a row.
    result = build_report(
        run.run_dir, run.run_dir / paths.REPORT_DIR, command=run.request.command, table=run.table
    )
    details = [f"{len(result.missing)} missing item(s)"]
    if (compliance := result.compliance) is not None:
        # verify-run's verdicts, computed with the report (its "Recipe compliance" section).
        counts = compliance.counts
        run.facts["recipe_compliance"] = {"recipe": compliance.recipe, **counts}
        details.insert(0, f"recipe {compliance.recipe}: {counts['pass']} pass, {counts['differs']} differ, "
                          f"{counts['cannot tell']} cannot tell")  # fmt: skip
    return Outcome(key="html + markdown + png", path=result.html, detail="; ".join(details))


STAGE_FUNCTIONS: dict[str, Callable[[Run], Outcome]] = {
    "doctor": stage_doctor,
    "fetch": stage_fetch,
    "train": stage_train,
    "eval": stage_eval,
    "compare": stage_compare,
    "report": stage_report,
}


# --- the run ------------------------------------------------------------------------------------------


def row_for_revision(table: PublishedTable, revision: str, against: str | None) -> Row:
    """The published row a run is judged against: `--against`, else the row of the revision."""
    if against:
        return table.row(against)
    try:
        return table.row(ROW_OF_REVISION.get(revision, revision))
    except ConfigError:
        raise ConfigError(
            f"revision '{revision}' has no row in the published table; pass --against ROW "
            f"(rows: {'; '.join(table.row_names)})"
        ) from None


def _check_before_running(request: ReproduceRequest, profile: Profile, run_dir: Path) -> None:
    """What would otherwise fail only after minutes of work: a bad --set (read by the train stage), and a
    run directory, or a stage's folder in it, that cannot be written (the report is written last)."""
    sets = merged(parse_overrides(list(request.sets)), {"output_dir": str(run_dir / paths.TRAIN_DIR)})
    load_train_config(
        profile.train_config,
        sets,
        base_overrides=profile.train,
        base_source=str(profile_file(request.profile)),
    )
    check_writable(run_dir, "--output", directory=True)
    for name in (*STAGE_DIRS, paths.FIXTURES_DIR):
        if (run_dir / name).exists():
            check_writable(run_dir / name, directory=True)


def _state_for(request: ReproduceRequest, run_dir: Path, profile: Profile) -> RunState:
    if not state_path(run_dir).exists():
        return RunState.new(request.revision, profile.name, request.command)
    state = load_state(run_dir)
    if (state.revision, state.profile) != (request.revision, profile.name):
        raise ConfigError(
            f"{run_dir} holds a run of revision {state.revision}, profile {state.profile}; "
            "use another --output for a different run"
        )
    return state


def _write_run_manifest(run: Run, state: RunState, started: str) -> None:
    write_manifest(
        run.run_dir / paths.MANIFEST,
        stage="reproduce",
        command=run.request.command,
        config={
            "revision": run.request.revision,
            "profile": run.profile.model_dump(mode="json"),
            "skip_train": run.request.skip_train,
            "baseline": run.request.baseline,
            "against": run.row.name,
            "sets": list(run.request.sets),
        },
        started=started,
        profile=run.profile.name,
        revision=run.request.revision,
        lock_sha256=sha256_file(run.lock) if run.lock.exists() else None,
        stages={name: record.model_dump(mode="json") for name, record in state.stages.items()},
        facts=run.facts,
    )


def reproduce(request: ReproduceRequest, hooks: Hooks | None = None) -> RunState:
    """Runs (or resumes) every stage in order; a failing stage is recorded and its error re-raised."""
    hooks = hooks or Hooks()
    profile = load_profile(request.profile)
    table = load_published_table()
    load_eval_stack(table)  # a broken bands file stops the run before it starts, not at its compare stage
    row = row_for_revision(table, request.revision, request.against)
    run_dir = request.run_dir()
    _check_before_running(request, profile, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _state_for(request, run_dir, profile)
    run = Run(request=request, profile=profile, row=row, run_dir=run_dir, hooks=hooks, table=table)
    started = now_iso()
    for name in STAGES:
        record = state.stage(name)
        hooks.stage_started(name)
        record.status, record.started, record.ended, record.pid = "running", now_iso(), None, os.getpid()
        record.key = record.detail = None
        save_state(run_dir, state)
        clock = time.monotonic()
        try:
            outcome = STAGE_FUNCTIONS[name](run)
        except BaseException as exc:
            record.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            # Shown on the terminal as well as recorded: redacted here, where it is made.
            record.detail = redact(
                exc.message if isinstance(exc, KitError) else f"{type(exc).__name__}: {exc}"
            )
            _close(record, clock)
            save_state(run_dir, state)
            hooks.stage_ended(name, state)
            _write_run_manifest(run, state, started)
            raise
        record.status = "skipped" if outcome.skipped else "done"
        record.key, record.detail = outcome.key, outcome.detail
        record.path = str(outcome.path) if outcome.path else None
        _close(record, clock)
        save_state(run_dir, state)
        hooks.stage_ended(name, state)
    _write_run_manifest(run, state, started)
    return state


def _close(record: Any, clock: float) -> None:
    record.ended = now_iso()
    record.seconds = round(time.monotonic() - clock, 1)
    record.pid = None


def differs(run_dir: Path) -> bool:
    """Whether a comparable comparison of the run has a differing cell (for --fail-on-diff)."""
    from gpt4allj_kit.compare.stage import comparison_files

    for file in comparison_files(run_dir / paths.COMPARE_DIR).values():
        data = json.loads(file.read_text(encoding="utf-8"))
        if data.get("measured", {}).get("comparable", True) and data.get("differing"):
            return True
    return False
