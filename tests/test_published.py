"""The published zero-shot table as data: columns, metrics, rows with their sources, computed averages beside
the printed ones, the evaluation-stack bands, validation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from gpt4allj_kit import paths
from gpt4allj_kit.compare import Measured, Score, compare
from gpt4allj_kit.compare.comparison import regenerated_table
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.published import (
    PublishedTable,
    average,
    load_eval_stack,
    load_published_table,
    printed_average_differs,
)
from gpt4allj_kit.report import render
from gpt4allj_kit.report.view import table_view

GPT4ALLJ_REVISIONS = ("v1.0", "v1.1-breezy", "v1.2-jazzy", "v1.3-groovy")
# The Avg column as the model card prints it, for every row: the computed mean rounds to each.
PRINTED_AVG = {
    "v1.0": 58.2, "v1.1-breezy": 57.8, "v1.2-jazzy": 58.6, "v1.3-groovy": 58.1, "GPT4All-J Lora 6B": 58.1,
    "GPT4All LLaMa Lora 7B": 60.3, "GPT4All 13B snoozy": 65.3, "Dolly 6B": 60.1, "Alpaca 7B": 62.5,
    "LLama 7B": 61.0, "gpt-j": 58.4, "Pythia 6.7B": 56.9,
}  # fmt: skip
# The lm-eval numbers the dolly-v2 model card publishes for EleutherAI/gpt-j-6B (fractions).
DOLLY_GPTJ = {
    "openbookqa": 0.382, "arc_easy": 0.621633, "winogrande": 0.651144, "hellaswag": 0.662617,
    "arc_challenge": 0.363481, "piqa": 0.761153, "boolq": 0.655963,
}  # fmt: skip

Mutation = Callable[[dict[str, Any]], object]


@pytest.fixture(scope="module")
def table() -> PublishedTable:
    return load_published_table()


def _raw(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _written(data: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_seven_columns_with_task_and_metric(table: PublishedTable) -> None:
    metrics = {c.task: c.metric for c in table.columns}
    assert list(metrics) == [
        "boolq", "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa",
    ]  # fmt: skip
    assert {t for t, m in metrics.items() if m == "acc"} == {"boolq", "winogrande"}
    assert table.num_fewshot == 0 and table.unit == "percent"
    # How the convention was established is data too, and names its source.
    assert table.metric_convention.source == "dolly-v2-model-card"
    assert "EleutherAI/gpt-j-6B" in table.metric_convention.established_by


def test_every_gpt4allj_revision_and_the_base_are_rows(table: PublishedTable) -> None:
    for revision in GPT4ALLJ_REVISIONS:
        row = table.row(revision)
        assert row.model == "nomic-ai/gpt4all-j" and row.revision == revision
    assert table.row("gpt-j").model == "EleutherAI/gpt-j-6B"
    assert table.row("GPT4ALL-J V1.2-JAZZY").revision == "v1.2-jazzy"
    assert table.row("v1.0").values["boolq"] == 73.4
    assert len(table.rows) == 12


def test_lora_rows_name_their_models_and_nothing_is_invented(table: PublishedTable) -> None:
    assert table.row("GPT4All-J Lora 6B").model == "nomic-ai/gpt4all-j-lora"
    assert table.row("GPT4All LLaMa Lora 7B").model == "nomic-ai/gpt4all-lora"
    # No source names a revision of these, nor a checkpoint for Alpaca 7B and LLama 7B.
    assert table.row("GPT4All-J Lora 6B").revision is None
    assert table.row("Alpaca 7B").model is None and table.row("LLama 7B").model is None


def test_every_row_names_a_typed_source(table: PublishedTable) -> None:
    ids = [s.id for s in table.sources]
    assert ids == [
        "gpt4all-j-model-card", "gpt4all-j-technical-report-2", "gpt4all-technical-report-3",
        "dolly-v2-model-card",
    ]  # fmt: skip
    assert {row.source for row in table.rows} == {"gpt4all-j-model-card"}
    card = table.source("gpt4all-j-model-card")
    assert card.url == "https://huggingface.co/nomic-ai/gpt4all-j" and card.version.startswith("main")
    for source in table.sources:
        # No commit was seen from here: each is null with the reason, and the citation says so.
        assert source.commit is None and source.commit_unknown
        assert f"commit unknown: {source.commit_unknown}" in source.citation()
        assert source.url in source.citation() and source.version in source.citation()


def test_average_is_computed_and_the_printed_one_kept_apart(table: PublishedTable) -> None:
    raw = _raw(paths.published_table_path())
    assert all("avg" not in {k.lower() for k in row["values"]} for row in raw["rows"])
    for name, printed in PRINTED_AVG.items():
        row = table.row(name)
        assert row.printed_average == printed, name
        assert round(average(row.values), 1) == printed, name
        # No real row's printed average is off by more than rounding.
        assert not printed_average_differs(average(row.values), row.printed_average), name
    assert average({"a": 1.0, "b": 2.0}) == 1.5
    assert printed_average_differs(46.1, 42.2) and not printed_average_differs(58.4143, 58.4)
    assert not printed_average_differs(58.45, 58.4) and printed_average_differs(58.46, 58.4)
    assert not printed_average_differs(58.4, None)


def test_real_table_shows_no_printed_flag(table: PublishedTable) -> None:
    view = table_view(regenerated_table(table), table)
    assert not any("printed" in row.cells[-1].text for row in view.grid.rows)
    assert "every printed Avg agrees with it to rounding (0.05)" in view.note
    assert "Rows: all 12 from [gpt4all-j-model-card]" in view.note
    # The terminal shows the note whole (wrapped), "[id]" kept as text rather than read as rich markup.
    text = " ".join(render.plain_text(render.published_table_renderable(table), width=220).split())
    assert "Rows: all 12 from [gpt4all-j-model-card]" in text and "(printed" not in text


def test_a_printed_average_that_is_not_the_mean_is_flagged(table: PublishedTable, tmp_path: Path) -> None:
    """A hand-made table whose printed averages disagree with their cells, like the model card's StableLM
    Base row (42.2 printed, 46.1 the mean of its cells)."""
    data = _raw(paths.published_table_path())
    data["rows"][0]["printed_average"] = 42.2  # v1.0: cells mean 58.2
    data["rows"][1]["printed_average"] = 57.85  # breezy: 57.8, within rounding
    made = load_published_table(_written(data, tmp_path / "table.yaml"))
    view = table_view(regenerated_table(made), made)
    averages = {row.cells[0].text: row.cells[-1].text for row in view.grid.rows}
    assert averages["GPT4All-J 6B v1.0"] == "58.2 (printed 42.2)"
    assert averages["GPT4All-J v1.1-breezy"] == "57.8" and averages["GPT-J 6.7B"] == "58.4"
    assert "'X (printed Y)'" in view.note and "GPT4All-J 6B v1.0" in view.note
    assert "GPT4All-J v1.1-breezy" not in view.note
    assert "58.2 (printed 42.2)" in render.plain_text(render.published_renderable(view), width=220)
    # A comparison against that table carries the flag into its Markdown and HTML.
    scores = {
        c.key: Score(task=c.task, metric=c.metric, value=made.row("v1.0").values[c.key] / 100, stderr=0.01)
        for c in made.columns
    }
    c = compare(Measured(source="r.json", layout="lm-eval 0.4", label="x", scores=scores), "v1.0", made)
    assert "| 58.2 (printed 42.2) |" in render.comparison_markdown(c)
    assert '<td class="num">58.2 (printed 42.2)</td>' in render.comparison_html(c)


def test_unknown_row_is_a_config_error(table: PublishedTable) -> None:
    with pytest.raises(ConfigError, match=r"unknown row 'v9-nope'.*v1\.3-groovy"):
        table.row("v9-nope")


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda t: t["rows"][0]["values"].pop("piqa"), "does not match the columns: piqa"),
        (lambda t: t["rows"][1]["values"].update(boolq=740), "740"),
        (lambda t: t["rows"][2].update(printed_average=586), "column 'printed_average': 586"),
        (lambda t: t["columns"][0].update(metric="f1"), "columns.0.metric"),
        (lambda t: t.pop("sources"), "sources"),
        (lambda t: t["rows"][0].update(avg=58.2), "unknown key"),
        (lambda t: t["rows"][0].pop("source"), "rows.0.source"),
        (
            lambda t: t["rows"][4].update(source="gpt4all-j-modelcard"),
            "row 'GPT4All-J Lora 6B': unknown source id 'gpt4all-j-modelcard' (sources: gpt4all-j-model-card",
        ),
        (
            lambda t: t["metric_convention"].update(source="nope"),
            "metric_convention: unknown source id 'nope'",
        ),
        (lambda t: t["sources"][0].pop("commit"), "sources.0.commit"),
        (lambda t: t["sources"][0].pop("commit_unknown"), "commit_unknown must say why"),
        (lambda t: t["sources"][1].update(commit="abc123"), "sources.1.commit"),
        (lambda t: t["sources"][2].update(commit="a" * 40), "commit_unknown must be absent"),
        (lambda t: t["sources"].append(dict(t["sources"][0])), "source ids are not unique"),
    ],
)
def test_malformed_table_is_rejected(mutate: Mutation, problem: str, tmp_path: Path) -> None:
    data = _raw(paths.published_table_path())
    mutate(data)
    path = _written(data, tmp_path / "table.yaml")
    with pytest.raises(ConfigError) as info:
        load_published_table(path)
    message = info.value.message
    assert str(path) in message and problem in message and "\n" not in message


# --- evaluation-stack bands -----------------------------------------------------------------------------


def test_only_the_gpt_j_row_has_a_band_derived_from_its_source(table: PublishedTable) -> None:
    stack = load_eval_stack(table)
    assert list(stack.bands) == ["GPT-J 6.7B"]
    band = stack.band(table.row("base"))
    assert band is not None and band.source.id == "dolly-v2-model-card"
    gptj = table.row("gpt-j").values
    for key, documented in DOLLY_GPTJ.items():
        assert band.cells[key] == pytest.approx(abs(gptj[key] - 100 * documented))
    # The figures: BoolQ 65.6 vs 65.4, WinoGrande 65.1 vs 64.1, ARC-c 36.3 vs 36.6.
    assert band.cells["winogrande"] == pytest.approx(1.0144)
    assert band.cells["boolq"] == pytest.approx(0.1963)
    assert band.cells["arc_challenge"] == pytest.approx(0.2519)
    assert band.cells["openbookqa"] == pytest.approx(0.0)
    assert band.average == pytest.approx(sum(band.cells.values()) / 7)
    assert "mean of the cell bands" in band.derivation
    for name in ("v1.2-jazzy", "v1.0", "Pythia 6.7B", "Dolly 6B"):
        assert stack.band(table.row(name)) is None, name


def _bad_band(mutate: Mutation, table: PublishedTable, tmp_path: Path) -> str:
    data = _raw(paths.eval_stack_path())
    mutate(data)
    path = _written(data, tmp_path / "eval_stack.yaml")
    with pytest.raises(ConfigError) as info:
        load_eval_stack(table, path)
    message = info.value.message
    assert message.startswith(str(path)) and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda d: d["rows"][0].update(source="dolly-card"),
            "band row 'GPT-J 6.7B': unknown source id 'dolly-card' (sources: gpt4all-j-model-card,",
        ),
        (lambda d: d["rows"][0].update(row="GPT-X"), "band row 'GPT-X': unknown row 'GPT-X'"),
        (lambda d: d["rows"][0].update(row="gpt-j"), "name the row exactly ('GPT-J 6.7B')"),
        (lambda d: d["rows"][0].update(model="EleutherAI/pythia-6.9b"), "is not the row's checkpoint"),
        (lambda d: d["rows"][0]["values"].pop("piqa"), "values do not match the table's columns: piqa"),
        (lambda d: d["rows"][0]["values"].update(piqa=76.1), "values.piqa: 76.1 is not a fraction"),
        (lambda d: d["rows"].append(dict(d["rows"][0])), "band row 'GPT-J 6.7B' appears twice"),
        (lambda d: d["rows"][0].update(band=1.0), "rows.0.band': unknown key"),
        (lambda d: d.update(unit="percent"), "key 'unit'"),
        (lambda d: d.pop("derivation"), "key 'derivation': required key is missing"),
    ],
)
def test_malformed_band_file_is_one_line(
    mutate: Mutation, problem: str, table: PublishedTable, tmp_path: Path
) -> None:
    assert problem in _bad_band(mutate, table, tmp_path)


def test_band_file_that_is_not_yaml_is_one_line(table: PublishedTable, tmp_path: Path) -> None:
    path = tmp_path / "eval_stack.yaml"
    path.write_text("rows: [\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_eval_stack(table, path)
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such config file"):
        load_eval_stack(table, tmp_path / "missing.yaml")
