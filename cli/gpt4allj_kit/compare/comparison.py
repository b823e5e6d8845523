"""Our numbers against a row of the published table, cell by cell, judged by our stderr.

A cell is `reproduced` when |ours - report| <= 2 * our stderr (percent points), `differs` otherwise. The
report's metric is used per column (acc_norm for PIQA, HellaSwag, ARC-e, ARC-c, OBQA; acc for BoolQ and
WinoGrande). The average is computed, never copied; its stderr assumes the tasks' errors are independent:
sqrt(sum of squared stderrs) / number of tasks.

Beside that verdict, never instead of it: where reports/published/eval_stack.yaml documents an
evaluation-stack band for the row compared with, each cell also gets a second verdict, |ours - report| <=
2 * our stderr + band, so that a reader sees which part of a verdict rests on the band. Rows without a band
say so; the band changes neither `reproduced` nor `--fail-on-diff`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from gpt4allj_kit.compare.results import Measured, read_measured
from gpt4allj_kit.errors import ConfigError
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
from gpt4allj_kit.recipe import DEFAULT_REVISION, EVAL_TASKS

SIGMAS = 2.0
RULE = (
    "reproduced when |Δ| ≤ 2·stderr (our stderr, percent points), differs otherwise; the average's stderr "
    f"is sqrt(Σ stderr²)/{len(EVAL_TASKS)}, assuming the {len(EVAL_TASKS)} tasks' errors are independent"
)
BAND_RULE = (
    "reproduced when |Δ| ≤ 2·stderr + band, the band being the row's documented evaluation-stack "
    "difference (|published - a source's lm-eval value for the same checkpoint|); shown beside the verdict, "
    "it never changes it"
)
NO_BAND = "no documented band"
# Floating-point slack so that a difference of exactly 2·stderr still counts as reproduced.
_EPS = 1e-9

Verdict = Literal["reproduced", "differs"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Cell(_Model):
    """One column of the comparison, in percent points."""

    key: str
    label: str
    task: str
    metric: str
    reported: float
    ours: float
    delta: float
    stderr: float
    verdict: Verdict
    n: int | None = None
    # The row's evaluation-stack band (percent points) and the verdict with it; None: no documented band.
    band: float | None = None
    band_verdict: Verdict | None = None


class AverageCell(_Model):
    reported: float
    ours: float
    delta: float
    stderr: float
    verdict: Verdict
    band: float | None = None
    band_verdict: Verdict | None = None


class BandSource(_Model):
    """Where the band of the row compared with comes from, and how it is derived."""

    row: str
    source: str
    derivation: str


class TableRow(_Model):
    """A row of the regenerated published table (percent); `ours` marks the inserted row."""

    name: str
    values: dict[str, float]
    average: float
    ours: bool = False
    compared: bool = False
    # A published row's source id and the Avg it prints (shown, flagged when it is not its cells' mean).
    source: str | None = None
    printed_average: float | None = None


class Comparison(_Model):
    against: str
    against_aliases: tuple[str, ...]
    ours_name: str
    measured: Measured
    columns: tuple[Column, ...]
    cells: tuple[Cell, ...]
    average: AverageCell
    band: BandSource | None = None
    band_rule: str = BAND_RULE
    table: tuple[TableRow, ...]
    table_title: str
    sources: tuple[str, ...]
    rule: str = RULE

    @property
    def differing(self) -> list[str]:
        return [c.label for c in self.cells if c.verdict == "differs"]

    @property
    def reproduced(self) -> bool:
        """Every task cell is within 2·stderr (the average informs, it does not decide)."""
        return not self.differing

    @property
    def differing_with_band(self) -> list[str] | None:
        """The cells outside 2·stderr + band; None when the row has no documented band."""
        if self.band is None:
            return None
        return [c.label for c in self.cells if c.band_verdict == "differs"]

    @property
    def band_note(self) -> str | None:
        """What a comparison with a row that has no band says instead of a second verdict."""
        return None if self.band else f"{NO_BAND} for {self.against}: only the 2·stderr verdict applies"

    @property
    def notes(self) -> tuple[str, ...]:
        return self.measured.notes

    def to_json(self) -> str:
        """The comparison as the compare stage stores it: every field, plus the verdicts spelled out."""
        data = self.model_dump(mode="json")
        data["reproduced"] = self.reproduced
        data["differing"] = self.differing
        data["differing_with_band"] = self.differing_with_band
        if self.band_note:
            data["band_note"] = self.band_note
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def read_stored[M: BaseModel](path: Path, model: type[M], what: str) -> M:
    """A `what` the compare stage wrote (`model` as JSON); a one-line ConfigError when it is not one."""
    try:
        return model.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise ConfigError(f"{path}: not a stored {what} ({where}: {first['msg']})") from None


def read_comparison(path: Path) -> Comparison:
    """A comparison the compare stage wrote (`to_json`)."""
    return read_stored(path, Comparison, "comparison")


def independent_mean(values: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The mean of (value, stderr) pairs and its stderr, the tasks' errors taken as independent (`RULE`):
    sqrt(Σ stderr²) / n."""
    n = len(values)
    return sum(v for v, _ in values) / n, math.sqrt(sum(s**2 for _, s in values)) / n


def verdict(delta: float, stderr: float, band: float = 0.0) -> Verdict:
    return "reproduced" if abs(delta) <= SIGMAS * stderr + band + _EPS else "differs"


def band_verdict(delta: float, stderr: float, band: float | None) -> Verdict | None:
    """The verdict with the evaluation-stack band; None where there is no documented band."""
    return None if band is None else verdict(delta, stderr, band)


def default_against(measured: Measured, table: PublishedTable, fallback: str | None = None) -> Row:
    """The row our model is: the one whose model and revision it was evaluated at, else `fallback`."""
    for row in table.rows:
        same_model = bool(row.model and measured.model and row.model.lower() == measured.model.lower())
        if same_model and (row.revision or "main") == (measured.revision or "main"):
            return row
    return table.row(fallback or DEFAULT_REVISION)


def regenerated_table(
    table: PublishedTable, ours: Sequence[tuple[str, dict[str, float], str]] = ()
) -> tuple[TableRow, ...]:
    """Every published row with its computed average; each of `ours` (name, values, row compared with)
    inserted right after the row it was compared with, and that row marked."""
    rows: list[TableRow] = []
    for row in table.rows:
        mine = [(name, values) for name, values, after in ours if after == row.name]
        rows.append(
            TableRow(
                name=row.name,
                values=dict(row.values),
                average=average(row.values),
                compared=bool(mine),
                source=row.source,
                printed_average=row.printed_average,
            )
        )
        rows += [TableRow(name=n, values=v, average=average(v), ours=True) for n, v in mine]
    return tuple(rows)


def combined_table(comparisons: Sequence[Comparison], table: PublishedTable) -> tuple[TableRow, ...]:
    """The published table with the row of every comparison inserted (a run evaluates several epochs)."""
    return regenerated_table(
        table, [(c.ours_name, {x.key: x.ours for x in c.cells}, c.against) for c in comparisons]
    )


def _ours_name(measured: Measured) -> str:
    # The model and revision go in the provenance line; a local checkpoint path would drown the label.
    return f"ours: {measured.label}"


def _band_source(band: Band | None) -> BandSource | None:
    if band is None:
        return None
    return BandSource(row=band.row, source=band.source.citation(), derivation=band.derivation)


def compare(
    measured: Measured,
    against: str | Row | None = None,
    table: PublishedTable | None = None,
    bands: EvalStack | None = None,
) -> Comparison:
    """`measured` judged cell by cell against a published row (by name, alias or revision), and, where the
    row has a documented evaluation-stack band, also with that band (shown apart)."""
    table = table or load_published_table()
    bands = bands if bands is not None else load_eval_stack(table)
    row = (
        against
        if isinstance(against, Row)
        else (table.row(against) if against else default_against(measured, table))
    )
    band = bands.band(row)
    cells = []
    for column in table.columns:
        score = measured.scores[column.key]
        ours, stderr = score.value * 100, score.stderr * 100
        delta = ours - row.values[column.key]
        cell_band = band.cells[column.key] if band else None
        cells.append(
            Cell(
                key=column.key,
                label=column.label,
                task=column.task,
                metric=column.metric,
                reported=row.values[column.key],
                ours=ours,
                delta=delta,
                stderr=stderr,
                verdict=verdict(delta, stderr),
                n=score.n,
                band=cell_band,
                band_verdict=band_verdict(delta, stderr, cell_band),
            )
        )
    ours_avg, avg_stderr = independent_mean([(c.ours, c.stderr) for c in cells])
    reported_avg = average(row.values)
    avg_band = band.average if band else None
    avg = AverageCell(
        reported=reported_avg,
        ours=ours_avg,
        delta=ours_avg - reported_avg,
        stderr=avg_stderr,
        verdict=verdict(ours_avg - reported_avg, avg_stderr),
        band=avg_band,
        band_verdict=band_verdict(ours_avg - reported_avg, avg_stderr, avg_band),
    )
    name = _ours_name(measured)
    return Comparison(
        against=row.name,
        against_aliases=row.names()[1:],
        ours_name=name,
        measured=measured,
        columns=table.columns,
        cells=tuple(cells),
        average=avg,
        band=_band_source(band),
        table=regenerated_table(table, [(name, {c.key: c.ours for c in cells}, row.name)]),
        table_title=table.title,
        sources=table.citations,
    )


def compare_path(
    path: Path,
    against: str | Row | None = None,
    *,
    note: str | None = None,
    comparable: bool | None = None,
    table: PublishedTable | None = None,
) -> Comparison:
    """`compare` for a results file, kit summary or directory; every bad input is a one-line ConfigError.

    Without `against`, the row is the evaluated model's (its model and revision), else the default
    revision's."""
    table = table or load_published_table()
    row = table.row(against) if isinstance(against, str) else against
    return compare(read_measured(path, table=table, note=note, comparable=comparable), row, table)
