"""Crafted lm-eval results files, written as lm-eval writes them (fractions, with stderrs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from gpt4allj_kit.published import PublishedTable, load_published_table

STDERR = 0.012  # a fraction, as lm-eval reports it (1.2 percent points)

Writer = Callable[..., Path]


@pytest.fixture(scope="session")
def table() -> PublishedTable:
    return load_published_table()


def results_document(
    table: PublishedTable,
    values: dict[str, float],
    *,
    layout: str = "0.4",
    stderr: float | str = STDERR,
    drop: tuple[str, ...] = (),
) -> dict:
    """lm-eval's results JSON for `values` (percent, by column key): both acc and acc_norm per task."""
    results = {}
    for column in table.columns:
        if column.task in drop:
            continue
        value = values[column.key] / 100
        other = round(value - 0.03, 4)  # the metric the report does not use: must not be picked up
        acc, acc_norm = (value, other) if column.metric == "acc" else (other, value)
        if layout == "0.4":
            results[column.task] = {
                "alias": column.task,
                "acc,none": acc,
                "acc_stderr,none": stderr,
                "acc_norm,none": acc_norm,
                "acc_norm_stderr,none": stderr,
            }
        else:
            results[column.task] = {
                "acc": acc,
                "acc_stderr": stderr,
                "acc_norm": acc_norm,
                "acc_norm_stderr": stderr,
            }
    if layout == "0.4":
        return {
            "results": results,
            "configs": {},
            "versions": {t: 1.0 for t in results},
            "n-shot": {t: 0 for t in results},
            "n-samples": {t: {"original": 1000, "effective": 1000} for t in results},
            "config": {
                "model": "hf",
                "model_args": "pretrained=nomic-ai/gpt4all-j,revision=v1.2-jazzy",
                "limit": None,
            },
            "lm_eval_version": "0.4.13",
        }
    return {
        "results": results,
        "versions": {t: 0 for t in results},
        "config": {"model": "gpt2", "num_fewshot": 0},
    }


@pytest.fixture
def write_results(tmp_path: Path, table: PublishedTable) -> Writer:
    def write(values: dict[str, float], name: str = "results.json", **kwargs: object) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results_document(table, values, **kwargs)))  # type: ignore[arg-type]
        return path

    return write
