"""`reproduce`: doctor → fetch → train → eval → compare → report, one directory per run, resumable.

Each stage records itself in `RUN_DIR/run.json` (see `runstate`). Re-running the same command skips the
stages whose outputs are complete, resumes a killed training from its last `step_N/`, and evaluates only the
checkpoints that have no results yet. `RUN_DIR/manifest.json` ties the stages' own manifests together.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt4allj_kit import paths
from gpt4allj_kit.config import Profile, load_profile
from gpt4allj_kit.errors import ConfigError, ExitCode, KitError
from gpt4allj_kit.files import atomic_write_text, sha256_file
from gpt4allj_kit.manifest import now_iso, write_manifest
from gpt4allj_kit.published import PublishedTable, Row, load_published_table
from gpt4allj_kit.recipe import BASE_REPO, MODEL_REPO, ROW_OF_REVISION
from gpt4allj_kit.runstate import STAGES, RunState, load_state, save_state, state_path

TRAIN_DIR, EVAL_DIR, COMPARE_DIR, REPORT_DIR, FIXTURES_DIR = "train", "eval", "compare", "report", "fixtures"
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
        default = Path("outputs") / "reproduce" / f"{Path(self.profile).stem}-{self.revision}"
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
    try:
        readiness = doctor.preflight(profile, force=run.request.force)
    except doctor.NotReady as exc:
        run.facts["doctor"] = exc.readiness.model_dump(mode="json")
        raise
    run.facts["doctor"] = readiness.model_dump(mode="json")
    key = "can run" if readiness.can_run else f"forced past {len(readiness.reasons)} problem(s)"
    return Outcome(key=key, detail="; ".join(readiness.notes) or None)


# --- fetch --------------------------------------------------------------------------------------------


def _content_sha(files: list[tuple[str, int, str]]) -> str:
    """A 40-hex digest of a local asset's file list, standing where a hub commit sha stands."""
    digest = hashlib.sha1(usedforsecurity=False)
    for path, size, sha in sorted(files):
        digest.update(f"{path}\0{size}\0{sha}\n".encode())
    return digest.hexdigest()


def _local_asset(repo_id: str, repo_type: str, revision: str, folder: Path, names: list[Path]) -> Any:
    from gpt4allj_kit.hub import FileEntry, LockedAsset

    files = [(str(p.relative_to(folder)), p.stat().st_size, sha256_file(p)) for p in names]
    entries = tuple(FileEntry(path, size, sha) for path, size, sha in sorted(files))
    return LockedAsset(repo_id, repo_type, revision, _content_sha(files), entries)


def _tiny_lock(run: Run) -> Any:
    """The smoke world as lock entries: the generated model, tokenizer, data and task fixtures."""
    from gpt4allj_kit.assets import tiny_assets
    from gpt4allj_kit.evaluate.fixtures import task_fixtures
    from gpt4allj_kit.hub import AssetLock

    tiny = tiny_assets(paths.kit_cache_dir(), seed=run.profile.seed)
    n = run.profile.eval.limit or 16
    run.fixtures = task_fixtures(run.run_dir / FIXTURES_DIR, run.profile.seed, n)
    revision = f"seed{run.profile.seed}"
    fixture_root = run.run_dir / FIXTURES_DIR
    return AssetLock(
        [
            _local_asset("kit/tiny-gptj", "model", revision, tiny.root, sorted(tiny.model_dir.rglob("*.*"))),
            _local_asset(
                "kit/tiny-gptj-tokenizer", "model", revision, tiny.root, sorted(tiny.tokenizer_dir.glob("*"))
            ),
            _local_asset("kit/tiny-prompt-generations", "dataset", revision, tiny.root, [tiny.jsonl]),
            _local_asset(
                "kit/task-fixtures", "dataset", revision, fixture_root, sorted(fixture_root.rglob("*.jsonl"))
            ),
        ]
    )


def _check_same_assets(previous: Any, current: Any) -> None:
    for asset in current.assets:
        before = previous.find(asset.repo_id, asset.repo_type, asset.revision)
        if before is not None and before.sha != asset.sha:
            raise ConfigError(
                f"{asset.repo_id}: the generated assets differ from the run's lock ({before.sha[:12]} -> "
                f"{asset.sha[:12]}); the kit's asset generator changed - use a new --output directory"
            )


def _fetch_tiny(run: Run) -> Outcome:
    from gpt4allj_kit.hub import read_lock, write_lock

    current = _tiny_lock(run)
    if run.lock.exists():
        _check_same_assets(read_lock(run.lock), current)
    write_lock(run.lock, current)
    return Outcome(
        key=f"{len(current.assets)} local assets locked", path=run.lock, detail="offline: generated"
    )


def _hub_what(run: Run) -> list[str]:
    what = ["tasks"]
    if not run.request.skip_train:
        what += ["data", "base"]
    if run.request.skip_train or run.request.baseline:
        what += ["model"]
    if run.request.baseline and "base" not in what:
        what += ["base"]
    return what


def _fetch_hub(run: Run) -> Outcome:
    from gpt4allj_kit import hub

    requests = hub.asset_requests(_hub_what(run), revision=run.request.revision)
    locked = run.lock.exists()

    def on_file(event: Any) -> None:
        run.hooks.progress(f"fetch {event.repo_id}/{event.path}", event.done, event.total)

    fetched = hub.fetch(requests, lock_path=run.lock, locked=locked, progress=on_file)
    shas = ", ".join(f"{f.what} {f.snapshot.sha[:12]}" for f in fetched)
    return Outcome(key=f"{len(fetched)} assets locked", path=run.lock, detail=shas)


def stage_fetch(run: Run) -> Outcome:
    return _fetch_tiny(run) if run.tiny else _fetch_hub(run)


# --- train --------------------------------------------------------------------------------------------


def _train_complete(train_dir: Path) -> bool:
    manifest = train_dir / "manifest.json"
    return (train_dir / "final" / "config.json").is_file() and manifest.is_file()


def stage_train(run: Run) -> Outcome:
    from gpt4allj_kit.train import checkpoint
    from gpt4allj_kit.train import launch as train_launch

    train_dir = run.run_dir / TRAIN_DIR
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
    log = train_dir / "launch.log"
    run.facts["train_command"] = plan.shell()
    total = plan.hyper.total_steps
    # Refuses (exit 3) while a launch orphaned by a killed CLI still trains into train_dir.
    with train_launch.start(plan, log_file=log) as training:
        while (code := training.poll()) is None:
            run.hooks.progress("train", train_launch.last_step(train_dir), total)
            time.sleep(1.0)
    if code != 0:
        raise KitError(
            f"training exited with code {code} (log: {log}); re-run the same command to resume",
            exit_code=ExitCode.ENVIRONMENT,
        )
    detail = f"resumed from {resume}" if resume else None
    return Outcome(key=f"{train_launch.last_step(train_dir)} steps", path=train_dir, detail=detail)


# --- eval ---------------------------------------------------------------------------------------------


def _eval_sources(run: Run) -> list[Any]:
    from gpt4allj_kit.evaluate import harness

    sources: list[Any] = []
    if not run.request.skip_train:
        models = harness.training_run_models(run.run_dir / TRAIN_DIR)
        sources += [harness.ModelSource(label=p.name, path=p.resolve()) for p in models]
    if run.tiny:
        # The smoke world has no published checkpoint: its untrained tiny model stands in for both.
        from gpt4allj_kit.assets import tiny_assets

        tiny = tiny_assets(paths.kit_cache_dir(), seed=run.profile.seed)
        stand_in = harness.ModelSource(label="published", path=tiny.model_dir.resolve())
        if run.request.skip_train or run.request.baseline:
            sources.append(stand_in)
        if run.request.baseline:
            sources.append(harness.ModelSource(label="base", path=tiny.model_dir.resolve()))
        return sources
    if run.request.skip_train or run.request.baseline:
        sources += harness.resolve_models(MODEL_REPO, revision=run.request.revision, label="published")
    if run.request.baseline:
        sources += harness.resolve_models(BASE_REPO, revision="main", label="base")
    return sources


def stage_eval(run: Run) -> Outcome:
    from gpt4allj_kit.evaluate import harness

    eval_dir = run.run_dir / EVAL_DIR
    sources = _eval_sources(run)
    if not sources:
        raise ConfigError(f"nothing to evaluate: no epoch_N/ or final/ under {run.run_dir / TRAIN_DIR}")
    todo = [s for s in sources if not (eval_dir / s.label / "summary.json").is_file()]
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
    return run.table.row("base") if label == "base" else run.row


def stage_compare(run: Run) -> Outcome:
    from gpt4allj_kit import render
    from gpt4allj_kit.compare import compare_path

    compare_dir = run.run_dir / COMPARE_DIR
    results: dict[str, Any] = {}
    for label_dir in sorted(p for p in (run.run_dir / EVAL_DIR).iterdir() if (p / "summary.json").is_file()):
        comparison = compare_path(
            label_dir,
            _row_for(run, label_dir.name).name,
            note=NOT_COMPARABLE if run.tiny else None,
            comparable=False if run.tiny else None,
            table=run.table,
        )
        atomic_write_text(compare_dir / f"{label_dir.name}.json", render.json_text(comparison))
        atomic_write_text(compare_dir / f"{label_dir.name}.md", render.markdown(comparison))
        results[label_dir.name] = comparison
    run.facts["comparisons"] = {label: c.differing for label, c in results.items()}
    headline = results.get("final") or next(iter(results.values()), None)
    if headline is None:
        raise ConfigError(f"no evaluation results under {run.run_dir / EVAL_DIR}")
    cells = len(headline.cells)
    key = (
        "not comparable (tiny model)"
        if run.tiny
        else f"{cells - len(headline.differing)}/{cells} cells reproduced ({headline.measured.label})"
    )
    return Outcome(key=key, path=compare_dir, detail=f"against {run.row.name}")


# --- report -------------------------------------------------------------------------------------------


def stage_report(run: Run) -> Outcome:
    from gpt4allj_kit.report import build_report

    result = build_report(
        run.run_dir, run.run_dir / REPORT_DIR, against=run.row.name, command=run.request.command
    )
    return Outcome(
        key="html + markdown + png", path=result.html, detail=f"{len(result.missing)} missing item(s)"
    )


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
        run.run_dir / "manifest.json",
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
    row = row_for_revision(table, request.revision, request.against)
    run_dir = request.run_dir()
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
            record.detail = exc.message if isinstance(exc, KitError) else f"{type(exc).__name__}: {exc}"
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
    for file in (run_dir / COMPARE_DIR).glob("*.json"):
        data = json.loads(file.read_text(encoding="utf-8"))
        if data.get("measured", {}).get("comparable", True) and data.get("differing"):
            return True
    return False
