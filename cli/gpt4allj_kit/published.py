"""The published zero-shot table (reports/published/zero_shot.yaml), loaded and validated."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpt4allj_kit import paths
from gpt4allj_kit.config import load_yaml, validate
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.recipe import EVAL_TASKS


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    values: dict[str, float]

    def names(self) -> tuple[str, ...]:
        return (
            self.name,
            *self.aliases,
            *((self.revision,) if self.revision and self.revision != "main" else ()),
        )


class PublishedTable(_Frozen):
    title: str
    sources: tuple[str, ...] = Field(min_length=1)
    num_fewshot: int
    unit: Literal["percent"]
    columns: tuple[Column, ...] = Field(min_length=1)
    rows: tuple[Row, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _columns_are_the_suite(self) -> PublishedTable:
        tasks = tuple(c.task for c in self.columns)
        if tasks != EVAL_TASKS:
            raise ValueError(f"columns' tasks {', '.join(tasks)} are not the suite {', '.join(EVAL_TASKS)}")
        return self

    @model_validator(mode="after")
    def _every_row_has_every_column(self) -> PublishedTable:
        keys = {c.key for c in self.columns}
        for row in self.rows:
            if set(row.values) != keys:
                missing = sorted(keys - set(row.values)) or sorted(set(row.values) - keys)
                raise ValueError(f"row '{row.name}' does not match the columns: {', '.join(missing)}")
            for key, value in row.values.items():
                if not 0 <= value <= 100:
                    raise ValueError(f"row '{row.name}' column '{key}': {value} is not a percentage")
        return self

    @cached_property
    def row_names(self) -> list[str]:
        return [r.name for r in self.rows]

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


def load_published_table(path: Path | None = None) -> PublishedTable:
    file = path or paths.published_table_path()
    return validate(PublishedTable, load_yaml(file), str(file))
