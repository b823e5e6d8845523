"""How much the batch size moves lm-eval's numbers: the tiny GPT-J evaluated on the task fixtures with batch
sizes 1, 4 and auto, on CPU in fp32, through the CLI.

Measured here: every task metric identical; per-document log-likelihoods equal to within 4e-6 (about 1e-7
relative). lm-eval pads each batch to its longest request, so a document is scored inside tensors whose
length depends on its batch-mates, and fp32 matmuls and attention over a different length add in a different
order: rounding in the last bits, far below anything that changes a choice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gpt4allj_kit.evaluate.harness import EvalOptions, eval_settings
from gpt4allj_kit.recipe import EVAL_TASKS

BATCH_SIZES = ("1", "4", "auto")
# Per-document log-likelihood (nats, summed over a continuation's tokens): fp32 rounding, 25x what was seen.
LL_TOLERANCE = 1e-4


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _per_document(folder: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (task, doc_id), from samples/<task>.jsonl: each choice's log-likelihood, the document's metrics."""
    found = {}
    for task in EVAL_TASKS:
        for line in (folder / "samples" / f"{task}.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            found[(task, record["doc_id"])] = {
                "ll": [float(resp[0]) for resp in record["filtered_resps"]],
                "metrics": {m: record[m] for m in record["metrics"]},
            }
    return found


@pytest.fixture(scope="module")
def by_batch_size(
    tiny, eval_fixtures: Path, run_kit, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """One evaluation per batch size of the same model on the same documents (every fixture document)."""
    out = tmp_path_factory.mktemp("batch-sizes")
    folders = {}
    for size in BATCH_SIZES:
        done = run_kit(
            "eval", "--model", str(tiny.model_dir), "--label", f"bs-{size}", "--tasks", "common-sense",
            "--batch-size", size, "--device", "cpu", "--dtype", "float32",
            "--fixtures", str(eval_fixtures), "--output", str(out),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
        folders[size] = out / f"bs-{size}"
    return folders


@pytest.mark.slow
def test_each_run_records_its_settings(by_batch_size: dict[str, Path]) -> None:
    for size, folder in by_batch_size.items():
        summary, manifest = _json(folder / "summary.json"), _json(folder / "manifest.json")
        asked: int | str = size if size == "auto" else int(size)
        assert summary["batch_size"] == asked and manifest["config"]["batch_size"] == asked
        # lm-eval's own choice for auto (it says which size its detection picked); none for a fixed size.
        detected = summary["batch_sizes_detected"]
        assert (len(detected) == 1 and detected[0] >= 1) if size == "auto" else detected == []
        assert summary["dtype"] == "float32" and summary["model_dtype"] == "torch.float32"
        assert summary["device"] == "cpu" and summary["lm_eval_version"] == "0.4.13"
        assert set(summary["task_versions"]) == set(EVAL_TASKS)
        assert {t: d["source"] for t, d in summary["task_datasets"].items()} == dict.fromkeys(
            EVAL_TASKS, "local-files"
        )
        settings = manifest["settings"]
        assert settings == {k: summary[k] for k in settings}
        assert set(settings) >= {"batch_size", "batch_sizes_detected", "dtype", "model_dtype", "device"}


@pytest.mark.slow
def test_batch_size_does_not_move_the_numbers_on_cpu_fp32(by_batch_size: dict[str, Path]) -> None:
    reference = _json(by_batch_size["1"] / "results.json")["results"]
    documents = _per_document(by_batch_size["1"])
    assert len(documents) == 35  # 7 tasks x 5 fixture documents
    for size in ("4", "auto"):
        results = _json(by_batch_size[size] / "results.json")["results"]
        assert results == reference, size  # every metric and stderr, exactly
        other = _per_document(by_batch_size[size])
        assert other.keys() == documents.keys()
        worst = 0.0
        for key, doc in documents.items():
            assert other[key]["metrics"] == doc["metrics"], (size, key)
            assert len(other[key]["ll"]) == len(doc["ll"])
            worst = max(worst, *(abs(a - b) for a, b in zip(other[key]["ll"], doc["ll"], strict=True)))
        assert worst <= LL_TOLERANCE, f"batch size {size}: a log-likelihood moved by {worst:g}"


def test_settings_say_what_was_asked_and_what_lm_eval_applied() -> None:
    results = {
        "config": {"batch_sizes": [64], "model_dtype": "torch.bfloat16"},
        "lm_eval_version": "0.4.13",
        "versions": {"piqa": 1.0},
    }
    settings = eval_settings(results, EvalOptions(batch_size="auto", dtype="auto"), "cuda")
    assert settings == {
        "batch_size": "auto", "batch_sizes_detected": [64], "dtype": "auto", "model_dtype": "torch.bfloat16",
        "device": "cuda", "lm_eval_version": "0.4.13", "task_versions": {"piqa": 1.0},
    }  # fmt: skip
    bare = eval_settings({}, EvalOptions(batch_size=4, dtype="float32"), "cpu")
    assert bare["batch_sizes_detected"] == [] and bare["model_dtype"] is None and bare["task_versions"] == {}
