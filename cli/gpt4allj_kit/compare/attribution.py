"""Where the gap comes from: the published number P, our re-evaluation R of the published checkpoint and
each of our retrained checkpoints T, per task and for the average, in percent points.

The total gap T - P splits exactly into
- evaluation-stack drift R - P: the same weights, their published number against ours (lm-eval version,
  dtype, batch size, hardware). Unpaired: the published number has no documents and no stderr, so its only
  uncertainty is R's stderr, judged by the compare rule (|Δ| ≤ 2·stderr); where reports/published/
  eval_stack.yaml documents a band for the row, a second verdict with it is shown beside, never instead;
- training drift T - R: our training against the released one, both evaluated by us on the same documents.
  Paired (`paired.compare_paired(T, R)`): McNemar's exact test per task and a seeded paired bootstrap
  interval, per task and for the average.
The base model's row has only the first part (published base row against our `base` evaluation). A piece
that is not there (no `published` or `base` evaluation, no per-document samples) is said in `missing`, not
failed on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from gpt4allj_kit import paths
from gpt4allj_kit.compare.comparison import (
    RULE,
    Verdict,
    band_verdict,
    default_against,
    independent_mean,
    read_stored,
    verdict,
)
from gpt4allj_kit.compare.paired import PairedComparison, PairedVerdict, Settings, compare_paired
from gpt4allj_kit.compare.results import Measured, evaluations, label_order, read_measured
from gpt4allj_kit.errors import ConfigError, KitError
from gpt4allj_kit.files import read_json_object
from gpt4allj_kit.published import (
    Band,
    Column,
    EvalStack,
    PublishedTable,
    Row,
    average,
    load_eval_stack,
    load_published_table,
)
from gpt4allj_kit.recipe import ROW_OF_REVISION

# The eval labels `reproduce --baseline` gives our re-evaluations of the published and the base checkpoint.
RELEASED, BASE = paths.RELEASED_LABEL, paths.BASE_LABEL
AVERAGE_KEY = "average"
# A distance this close to the smallest one is a tie, not a winner by rounding.
_TIE = 1e-9

EVAL_STACK_UNCERTAINTY = (
    "unpaired: ± the stderr of our re-evaluation (the published number has no documents and no stderr), "
    "judged by the compare rule |Δ| ≤ 2·stderr"
)
TRAINING_UNCERTAINTY = (
    "paired: retrained and re-evaluated published checkpoint on the same documents; per task McNemar's exact "
    "test, per task and for the average a seeded paired-bootstrap 95% interval"
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class EvalStackDrift(_Model):
    """R - P: our evaluation of a published checkpoint minus its published number."""

    delta: float
    stderr: float  # R's: the published number has none
    verdict: Verdict
    uncertainty: Literal["unpaired"] = "unpaired"
    # The row's documented evaluation-stack band and the verdict with it; None: no documented band.
    band: float | None = None
    band_verdict: Verdict | None = None


class TrainingDrift(_Model):
    """T - R: a retrained checkpoint minus our re-evaluation of the released one, document by document."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float | None = None  # McNemar's per task; the average has the bootstrap interval only
    verdict: PairedVerdict
    uncertainty: Literal["paired"] = "paired"


class CheckpointGap(_Model):
    """One retrained checkpoint in one cell: T ± its stderr, the total gap T - P and its training part."""

    label: str
    value: float
    stderr: float
    total: float
    training: TrainingDrift | None = None  # None without R (or without the documents to pair)


class Closest(_Model):
    """The checkpoint(s) nearest the released one in a cell: smallest |T - R|; a tie lists every one. A
    checkpoint identical to it on every document (`same`) beats one whose mean merely equals R's."""

    labels: tuple[str, ...]
    distance: float
    verdicts: dict[str, PairedVerdict]

    @property
    def tie(self) -> bool:
        return len(self.labels) > 1


class GapCell(_Model):
    """One task (or the average) of a published row: P, our R, the drift R - P, and each checkpoint."""

    key: str
    label: str
    metric: str
    published: float
    ours: float | None = None
    ours_stderr: float | None = None
    eval_stack: EvalStackDrift | None = None
    checkpoints: tuple[CheckpointGap, ...] = ()
    closest: Closest | None = None


class GapRow(_Model):
    """A published row against our evaluation of its checkpoint (`label`, None when we have none)."""

    row: str
    label: str | None
    source: str | None
    cells: tuple[GapCell, ...]
    average: GapCell
    band_source: str | None = None  # where the row's evaluation-stack band comes from, if it has one

    @property
    def all_cells(self) -> tuple[GapCell, ...]:
        return (*self.cells, self.average)


class Attribution(_Model):
    """The gap of a run's checkpoints to its published row, split into evaluation-stack and training
    drift; and the base model's evaluation-stack drift."""

    run: str
    row: str
    checkpoints: tuple[str, ...]
    released: GapRow
    base: GapRow | None
    comparable: bool
    notes: tuple[str, ...]
    missing: tuple[str, ...]
    settings: Settings
    eval_stack_uncertainty: str = EVAL_STACK_UNCERTAINTY
    training_uncertainty: str = TRAINING_UNCERTAINTY
    rule: str = RULE

    @property
    def split(self) -> bool:
        """Whether the gap could be split (our re-evaluation of the published checkpoint is there)."""
        return self.released.label is not None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def read_attribution(path: Path) -> Attribution:
    """An attribution the compare stage wrote (`to_json`)."""
    return read_stored(path, Attribution, "attribution")


# --- cells ----------------------------------------------------------------------------------------------


def _eval_stack(ours: float, stderr: float, published: float, band: float | None) -> EvalStackDrift:
    delta = ours - published
    return EvalStackDrift(
        delta=delta,
        stderr=stderr,
        verdict=verdict(delta, stderr),
        band=band,
        band_verdict=band_verdict(delta, stderr, band),
    )


def _closest(checkpoints: Sequence[CheckpointGap]) -> Closest | None:
    paired = [(c.label, c.training) for c in checkpoints if c.training is not None]
    if not paired:
        return None
    distance = min(abs(t.delta) for _, t in paired)
    tied = [(label, t) for label, t in paired if abs(t.delta) <= distance + _TIE]
    identical = [(label, t) for label, t in tied if t.verdict == "same"]
    chosen = identical or tied
    return Closest(
        labels=tuple(label for label, _ in chosen),
        distance=distance,
        verdicts={label: t.verdict for label, t in chosen},
    )


def _gap_cell(
    column: Column | None,
    published: float,
    ours: tuple[float, float] | None,
    checkpoints: Sequence[tuple[str, float, float, TrainingDrift | None]],
    band: float | None = None,
) -> GapCell:
    """One cell from its numbers: `ours` is (R, stderr), each checkpoint (label, T, stderr, T - R paired),
    `band` the row's evaluation-stack band for the cell."""
    gaps = tuple(
        CheckpointGap(label=label, value=value, stderr=stderr, total=value - published, training=training)
        for label, value, stderr, training in checkpoints
    )
    return GapCell(
        key=column.key if column else AVERAGE_KEY,
        label=column.label if column else "Avg",
        metric=column.metric if column else "mean",
        published=published,
        ours=ours[0] if ours else None,
        ours_stderr=ours[1] if ours else None,
        eval_stack=_eval_stack(*ours, published, band) if ours else None,
        checkpoints=gaps,
        closest=_closest(gaps),
    )


def _percent(measured: Measured, column: Column) -> tuple[float, float]:
    score = measured.scores[column.key]
    return 100 * score.value, 100 * score.stderr


def _mean(measured: Measured, columns: Sequence[Column]) -> tuple[float, float]:
    """The average as the compare stage computes it."""
    return independent_mean([_percent(measured, c) for c in columns])


def _task_drift(
    ours: float, released: float, paired: PairedComparison | None, key: str
) -> TrainingDrift | None:
    if paired is None:
        return None
    task = next(t for t in paired.tasks if t.key == key)
    return TrainingDrift(
        delta=ours - released,
        ci_low=task.ci_low,
        ci_high=task.ci_high,
        p_value=task.p_value,
        verdict=task.verdict,
    )


def _average_drift(ours: float, released: float, paired: PairedComparison | None) -> TrainingDrift | None:
    if paired is None:
        return None
    a = paired.average
    return TrainingDrift(delta=ours - released, ci_low=a.ci_low, ci_high=a.ci_high, verdict=a.verdict)


def gap_row(
    row: Row,
    columns: Sequence[Column],
    ours: Measured | None,
    checkpoints: Mapping[str, tuple[Measured, PairedComparison | None]] | None = None,
    band: Band | None = None,
) -> GapRow:
    """`row` against our evaluation of its checkpoint (`ours`) and the retrained `checkpoints` (label →
    their numbers and their paired comparison with `ours`); `band`: the row's evaluation-stack band."""
    checkpoints = checkpoints or {}

    def cell(column: Column) -> GapCell:
        r = _percent(ours, column) if ours else None
        found = []
        for label, (measured, paired) in checkpoints.items():
            value, stderr = _percent(measured, column)
            found.append((label, value, stderr, _task_drift(value, r[0], paired, column.key) if r else None))
        return _gap_cell(column, row.values[column.key], r, found, band.cells[column.key] if band else None)

    mine = _mean(ours, columns) if ours else None
    averaged = []
    for label, (measured, paired) in checkpoints.items():
        value, stderr = _mean(measured, columns)
        averaged.append((label, value, stderr, _average_drift(value, mine[0], paired) if mine else None))
    return GapRow(
        row=row.name,
        label=ours.label if ours else None,
        source=ours.source if ours else None,
        cells=tuple(cell(c) for c in columns),
        average=_gap_cell(None, average(row.values), mine, averaged, band.average if band else None),
        band_source=band.source.citation() if band else None,
    )


# --- a run's evaluations --------------------------------------------------------------------------------


def _paired_with_released(
    label: str, folder: Path, released: Path, table: PublishedTable, settings: Settings, missing: list[str]
) -> PairedComparison | None:
    try:
        return compare_paired(folder, released, table=table, settings=settings)
    except KitError as exc:
        missing.append(
            f"{label}: no paired test against the re-evaluated published checkpoint ({exc.message})"
        )
        return None


def _agrees(paired: PairedComparison, ours: Measured, released: Measured) -> bool:
    """Whether the documents paired are the ones behind the results (their means are the results' values)."""
    return all(
        abs(task.a - 100 * ours.scores[task.key].value) <= 1e-6
        and abs(task.b - 100 * released.scores[task.key].value) <= 1e-6
        for task in paired.tasks
    )


def _to_run(model: str, eval_dir: Path) -> str:
    return (
        "run `gpt4allj-kit reproduce --baseline` again with the same --output, or "
        f"`gpt4allj-kit eval --model {model} --output {eval_dir}`"
    )


def attribute(
    folders: Mapping[str, Path],
    row: Row,
    *,
    run: str,
    table: PublishedTable | None = None,
    settings: Settings | None = None,
    note: str | None = None,
    comparable: bool | None = None,
    bands: EvalStack | None = None,
) -> Attribution:
    """The attribution of the evaluations `folders` (label → eval folder) against the published `row`:
    `published` is our re-evaluation of its checkpoint, `base` of the base model's, every other label a
    retrained checkpoint."""
    table = table or load_published_table()
    settings = settings or Settings()
    bands = bands if bands is not None else load_eval_stack(table)
    measured = {
        label: read_measured(folder, table=table, note=note, comparable=comparable)
        for label, folder in folders.items()
    }
    released, base = measured.get(RELEASED), measured.get(BASE)
    eval_dir = next(iter(folders.values())).parent if folders else Path(run) / paths.EVAL_DIR
    labels = sorted((label for label in measured if label not in (RELEASED, BASE)), key=label_order)
    missing: list[str] = []
    if released is None:
        missing.append(
            f"no evaluation of the published checkpoint ({paths.EVAL_DIR}/{RELEASED}/): no split of the gap "
            "into evaluation-stack and training drift; "
            + _to_run(
                f"{row.model or 'MODEL'} --revision {row.revision or 'main'} --label {RELEASED}", eval_dir
            )
        )
    if not labels:
        missing.append(
            f"no retrained checkpoint evaluated ({paths.EVAL_DIR}/epoch_N/, {paths.EVAL_DIR}/final/): "
            "no training drift"
        )
    checkpoints: dict[str, tuple[Measured, PairedComparison | None]] = {}
    for label in labels:
        paired = None
        if released is not None:
            paired = _paired_with_released(label, folders[label], folders[RELEASED], table, settings, missing)
        if paired is not None and not _agrees(paired, measured[label], released):
            missing.append(
                f"{label}: its per-document samples do not give its results' numbers (or the published "
                "checkpoint's): no paired test; evaluate it again"
            )
            paired = None
        checkpoints[label] = (measured[label], paired)
    base_row = table.row(BASE)
    if base is None:
        missing.append(
            f"no evaluation of the base model ({paths.EVAL_DIR}/{BASE}/): no base row; "
            + _to_run(f"{base_row.model or 'MODEL'} --label {BASE}", eval_dir)
        )
    notes = dict.fromkeys(n for m in measured.values() for n in m.notes)
    return Attribution(
        run=run,
        row=row.name,
        checkpoints=tuple(labels),
        released=gap_row(row, table.columns, released, checkpoints, bands.band(row)),
        base=gap_row(base_row, table.columns, base, band=bands.band(base_row)) if base is not None else None,
        comparable=all(m.comparable for m in measured.values()),
        notes=tuple(notes),
        missing=tuple(missing),
        settings=settings,
    )


def run_row(run_dir: Path, table: PublishedTable) -> Row | None:
    """The published row a run was judged against: its manifest's (`reproduce` records it), else its
    revision's; None for a directory that says neither (a bare eval dir)."""
    manifest = run_dir / paths.MANIFEST
    config = read_json_object(manifest).get("config") if manifest.is_file() else None
    if isinstance(config, dict) and isinstance(config.get("against"), str):
        return table.row(config["against"])
    state = run_dir / paths.RUN_STATE
    revision = read_json_object(state).get("revision") if state.is_file() else None
    if isinstance(revision, str):
        return table.row(ROW_OF_REVISION.get(revision, revision))
    return None


def attribute_run(
    run_dir: Path,
    *,
    against: str | None = None,
    table: PublishedTable | None = None,
    settings: Settings | None = None,
) -> Attribution:
    """The attribution of a reproduce run dir (or an eval dir holding `published`, `base`, checkpoints),
    against `against`, else the row the run was judged against, else the evaluated model's own row."""
    table = table or load_published_table()
    run_dir = Path(run_dir)
    folders = evaluations(run_dir)
    if not folders:
        raise ConfigError(
            f"{run_dir}: holds no evaluation ({paths.EVAL_DIR}/<label>/{paths.SUMMARY}); "
            "run the eval stage first"
        )
    row = table.row(against) if against else run_row(run_dir, table)
    if row is None:
        first = folders.get(RELEASED) or next(iter(folders.values()))
        row = default_against(read_measured(first, table=table), table)
    return attribute(folders, row, run=str(run_dir), table=table, settings=settings)
