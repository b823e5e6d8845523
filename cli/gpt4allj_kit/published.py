"""The published zero-shot table (reports/published/zero_shot.yaml) and the evaluation-stack bands
(reports/published/eval_stack.yaml), loaded and validated.

Every row names the document it was transcribed from (an id of the table's typed `sources`); the bands
file names its sources by the same ids, so each document is described once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpt4allj_kit import paths
from gpt4allj_kit.config import load_yaml, validate
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.recipe import EVAL_TASKS

# A printed one-decimal average is at most this far from the exact mean of its cells.
ROUNDING = 0.05
_EPS = 1e-9


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Frozen):
    """A document the published numbers come from, and which version of it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=1)
    url: str = Field(pattern=r"^https://\S+$")
    version: str = Field(min_length=1, description="revision or edition of the document transcribed")
    # Required, so that an unknown commit is said (null + commit_unknown), never left out.
    commit: str | None = Field(pattern=r"^[0-9a-f]{40}$")
    commit_unknown: str | None = Field(None, description="why `commit` is null")

    @model_validator(mode="after")
    def _commit_or_why_not(self) -> Source:
        if self.commit is None and not (self.commit_unknown or "").strip():
            raise ValueError(f"source '{self.id}': commit is null, so commit_unknown must say why")
        if self.commit is not None and self.commit_unknown is not None:
            raise ValueError(f"source '{self.id}': commit is known, so commit_unknown must be absent")
        return self

    def citation(self) -> str:
        commit = f"commit {self.commit}" if self.commit else f"commit unknown: {self.commit_unknown}"
        return f"[{self.id}] {self.title}; {self.url}; version {self.version}; {commit}"


class MetricConvention(_Frozen):
    source: str
    established_by: str = Field(min_length=1)


class Column(_Frozen):
    key: str
    label: str
    task: str = Field(description="lm-evaluation-harness task name")
    metric: Literal["acc", "acc_norm"]


class Row(_Frozen):
    name: str
    model: str | None = None
    revision: str | None = None
    aliases: tuple[str, ...] = ()
    source: str = Field(description="id of the source the values were transcribed from")
    printed_average: float | None = Field(None, description="the Avg the source prints; shown, never used")
    values: dict[str, float]

    def names(self) -> tuple[str, ...]:
        return (
            self.name,
            *self.aliases,
            *((self.revision,) if self.revision and self.revision != "main" else ()),
        )


def _unknown_source(where: str, source_id: str, ids: list[str]) -> ValueError:
    return ValueError(f"{where}: unknown source id '{source_id}' (sources: {', '.join(ids)})")


class PublishedTable(_Frozen):
    title: str
    num_fewshot: int
    unit: Literal["percent"]
    sources: tuple[Source, ...] = Field(min_length=1)
    metric_convention: MetricConvention
    columns: tuple[Column, ...] = Field(min_length=1)
    rows: tuple[Row, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _columns_are_the_suite(self) -> PublishedTable:
        tasks = tuple(c.task for c in self.columns)
        if tasks != EVAL_TASKS:
            raise ValueError(f"columns' tasks {', '.join(tasks)} are not the suite {', '.join(EVAL_TASKS)}")
        return self

    @model_validator(mode="after")
    def _sources_are_known(self) -> PublishedTable:
        ids = [s.id for s in self.sources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"source ids are not unique: {', '.join(ids)}")
        for row in self.rows:
            if row.source not in ids:
                raise _unknown_source(f"row '{row.name}'", row.source, ids)
        if self.metric_convention.source not in ids:
            raise _unknown_source("metric_convention", self.metric_convention.source, ids)
        return self

    @model_validator(mode="after")
    def _every_row_has_every_column(self) -> PublishedTable:
        keys = {c.key for c in self.columns}
        for row in self.rows:
            if set(row.values) != keys:
                missing = sorted(keys - set(row.values)) or sorted(set(row.values) - keys)
                raise ValueError(f"row '{row.name}' does not match the columns: {', '.join(missing)}")
            for key, value in (*row.values.items(), ("printed_average", row.printed_average)):
                if value is not None and not 0 <= value <= 100:
                    raise ValueError(f"row '{row.name}' column '{key}': {value} is not a percentage")
        return self

    @cached_property
    def row_names(self) -> list[str]:
        return [r.name for r in self.rows]

    @cached_property
    def citations(self) -> tuple[str, ...]:
        """Each source as one line: id, title, url, version and commit (or why it is unknown)."""
        return tuple(s.citation() for s in self.sources)

    def source(self, source_id: str) -> Source:
        return next(s for s in self.sources if s.id == source_id)

    def row(self, name: str) -> Row:
        """The row called `name` (case-insensitive), by its name, an alias or its revision."""
        wanted = name.strip().lower()
        for row in self.rows:
            if wanted in (n.lower() for n in row.names()):
                return row
        raise ConfigError(f"unknown row '{name}' of the published table (rows: {'; '.join(self.row_names)})")


def average(values: dict[str, float]) -> float:
    """The Avg column: the plain mean of the cells, computed, never copied."""
    return sum(values.values()) / len(values)


def printed_average_differs(computed: float, printed: float | None) -> bool:
    """A printed average that the mean of its cells does not round to (more than the rounding apart)."""
    return printed is not None and abs(computed - printed) > ROUNDING + _EPS


def load_published_table(path: Path | None = None) -> PublishedTable:
    file = path or paths.published_table_path()
    return validate(PublishedTable, load_yaml(file), str(file))


# --- evaluation-stack bands -----------------------------------------------------------------------------


class BandRow(_Frozen):
    row: str = Field(description="name of a row of the published table")
    model: str = Field(description="the checkpoint the source evaluated: must be the row's model")
    source: str = Field(description="id of one of the published table's sources")
    evaluation: str = Field(min_length=1)
    values: dict[str, float] = Field(description="the source's numbers, fractions, by column key")


class EvalStackFile(_Frozen):
    title: str
    unit: Literal["fraction"]
    derivation: str = Field(min_length=1)
    rows: tuple[BandRow, ...] = ()


@dataclass(frozen=True)
class Band:
    """One row's evaluation-stack band: per column and for the average, in percent points."""

    row: str
    source: Source
    cells: dict[str, float]
    average: float
    derivation: str


@dataclass(frozen=True)
class EvalStack:
    """The bands of the rows a source documents; every other row has none."""

    bands: dict[str, Band]

    def band(self, row: Row) -> Band | None:
        return self.bands.get(row.name)


def _checked_band_row(band: BandRow, table: PublishedTable, file: Path) -> Row:
    """The published row `band` belongs to; a one-line ConfigError naming the band row where it does not
    fit."""
    where = f"{file}: band row '{band.row}'"
    ids = [s.id for s in table.sources]
    if band.source not in ids:
        raise ConfigError(str(_unknown_source(where, band.source, ids)))
    try:
        row = table.row(band.row)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    if row.name != band.row:
        raise ConfigError(f"{where}: name the row exactly ('{row.name}'), not an alias")
    if (row.model or "").lower() != band.model.lower():
        raise ConfigError(
            f"{where}: model {band.model} is not the row's checkpoint ({row.model or 'none named'}); "
            "a band only holds for the checkpoint the source evaluated"
        )
    keys = [c.key for c in table.columns]
    if set(band.values) != set(keys):
        wrong = sorted(set(keys) - set(band.values)) or sorted(set(band.values) - set(keys))
        raise ConfigError(f"{where}: values do not match the table's columns: {', '.join(wrong)}")
    for key, value in band.values.items():
        if not 0 <= value <= 1:
            raise ConfigError(f"{where}: values.{key}: {value} is not a fraction")
    return row


def load_eval_stack(table: PublishedTable, path: Path | None = None) -> EvalStack:
    """The bands of eval_stack.yaml, checked against `table` (rows, models, columns, source ids)."""
    file = path or paths.eval_stack_path()
    data = validate(EvalStackFile, load_yaml(file), str(file))
    bands: dict[str, Band] = {}
    for entry in data.rows:
        row = _checked_band_row(entry, table, file)
        if row.name in bands:
            raise ConfigError(f"{file}: band row '{row.name}' appears twice")
        cells = {k: abs(row.values[k] - 100 * v) for k, v in entry.values.items()}
        bands[row.name] = Band(
            row=row.name,
            source=table.source(entry.source),
            cells=cells,
            average=average(cells),
            derivation=data.derivation,
        )
    return EvalStack(bands=bands)
