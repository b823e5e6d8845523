"""The published zero-shot table as data: columns, metrics, rows, computed averages, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from gpt4allj_kit import paths
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.published import PublishedTable, average, load_published_table

GPT4ALLJ_REVISIONS = ("v1.0", "v1.1-breezy", "v1.2-jazzy", "v1.3-groovy")
# The Avg column as published (one decimal) for the GPT4All-J rows and GPT-J: the computed mean rounds to it.
PUBLISHED_AVG = {"v1.0": 58.2, "v1.1-breezy": 57.8, "v1.2-jazzy": 58.6, "v1.3-groovy": 58.1, "gpt-j": 58.4}


@pytest.fixture(scope="module")
def table() -> PublishedTable:
    return load_published_table()


def test_seven_columns_with_task_and_metric(table: PublishedTable) -> None:
    metrics = {c.task: c.metric for c in table.columns}
    assert list(metrics) == [
        "boolq", "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa",
    ]  # fmt: skip
    assert {t for t, m in metrics.items() if m == "acc"} == {"boolq", "winogrande"}
    assert table.num_fewshot == 0 and table.unit == "percent"
    assert any("huggingface.co/nomic-ai/gpt4all-j" in s for s in table.sources)


def test_every_gpt4allj_revision_and_the_base_are_rows(table: PublishedTable) -> None:
    for revision in GPT4ALLJ_REVISIONS:
        row = table.row(revision)
        assert row.model == "nomic-ai/gpt4all-j" and row.revision == revision
    assert table.row("gpt-j").model == "EleutherAI/gpt-j-6B"
    assert table.row("GPT4ALL-J V1.2-JAZZY").revision == "v1.2-jazzy"
    assert table.row("v1.0").values["boolq"] == 73.4
    assert len(table.rows) == 12


def test_average_is_computed_not_stored(table: PublishedTable) -> None:
    raw = yaml.safe_load(paths.published_table_path().read_text())
    assert all("avg" not in {k.lower() for k in row["values"]} for row in raw["rows"])
    for name, published in PUBLISHED_AVG.items():
        assert round(average(table.row(name).values), 1) == published, name
    assert average({"a": 1.0, "b": 2.0}) == 1.5


def test_unknown_row_is_a_config_error(table: PublishedTable) -> None:
    with pytest.raises(ConfigError, match=r"unknown row 'v9-nope'.*v1\.3-groovy"):
        table.row("v9-nope")


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda t: t["rows"][0]["values"].pop("piqa"), "does not match the columns: piqa"),
        (lambda t: t["rows"][1]["values"].update(boolq=740), "740"),
        (lambda t: t["columns"][0].update(metric="f1"), "columns.0.metric"),
        (lambda t: t.pop("sources"), "sources"),
        (lambda t: t["rows"][0].update(avg=58.2), "unknown key"),
    ],
)
def test_malformed_table_is_rejected(mutate, problem: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(paths.published_table_path().read_text())
    mutate(data)
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_published_table(path)
    assert str(path) in info.value.message and problem in info.value.message
