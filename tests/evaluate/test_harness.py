"""The kit's lm-eval runs: all seven tasks through their real definitions, numbers equal to `lm_eval`'s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gpt4allj_kit.evaluate.fixtures import EVAL_SPLIT, task_fixtures
from gpt4allj_kit.evaluate.harness import parse_tasks, resolve_models, task_metrics
from gpt4allj_kit.files import sha256_file
from gpt4allj_kit.recipe import EVAL_TASKS

pytestmark = pytest.mark.slow


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _comparable(configs: dict) -> dict:
    """Task configs without what legitimately differs between two processes: the command line copies its
    model args into each task's metadata, and function reprs carry memory addresses."""
    drop = ("metadata", "fewshot_config", "doc_to_text", "doc_to_target", "doc_to_choice", "process_docs")
    return {task: {k: v for k, v in cfg.items() if k not in drop} for task, cfg in configs.items()}


def test_training_dir_evaluates_every_epoch_and_final(runs: Any) -> None:
    labels = sorted(p.name for p in runs.kit_out.iterdir() if p.is_dir())
    assert labels == ["epoch_1", "final"]
    for label in labels:
        for name in ("results.json", "summary.json", "manifest.json", "lm-eval.log"):
            assert (runs.kit_out / label / name).is_file(), (label, name)
        assert sorted(p.stem for p in (runs.kit_out / label / "samples").iterdir()) == sorted(EVAL_TASKS)
    assert "epoch_1: zero-shot" in runs.kit_stdout and "final: zero-shot" in runs.kit_stdout


def test_numbers_equal_the_lm_eval_command_line(runs: Any) -> None:
    ours = _json(runs.kit_out / "final" / "results.json")
    theirs = _json(runs.cli_results)
    assert set(ours["results"]) == set(EVAL_TASKS)
    assert ours["results"] == theirs["results"]
    assert ours["n-samples"] == theirs["n-samples"]
    assert ours["versions"] == theirs["versions"]
    assert _comparable(ours["configs"]) == _comparable(theirs["configs"])
    assert ours["task_hashes"] == theirs["task_hashes"] and len(ours["task_hashes"]) == 7
    # The same weights in another folder give the same numbers.
    assert _json(runs.kit_out / "epoch_1" / "results.json")["results"] == ours["results"]


def test_every_task_ran_its_real_definition_on_the_fixtures(runs: Any) -> None:
    results = _json(runs.kit_out / "final" / "results.json")
    for task in EVAL_TASKS:
        config = results["configs"][task]
        assert config["task"] == task
        assert config["dataset_path"] == "json"
        assert Path(config["dataset_kwargs"]["data_files"][EVAL_SPLIT[task]]).parent.name == "data"
        assert results["n-samples"][task] == {"original": runs.fixture_docs, "effective": runs.limit}
        assert "acc,none" in results["results"][task]
        expected_norm = task not in ("boolq", "winogrande")
        assert ("acc_norm,none" in results["results"][task]) is expected_norm
    # The real prompts: lm-eval's own templates of each task.
    assert results["configs"]["piqa"]["doc_to_text"] == "Question: {{goal}}\nAnswer:"
    assert results["configs"]["boolq"]["doc_to_choice"] == ["no", "yes"]
    first = json.loads((runs.kit_out / "final" / "samples" / "hellaswag.jsonl").read_text().splitlines()[0])
    assert "[title]" not in first["arguments"]["gen_args_0"]["arg_1"]  # hellaswag's preprocess ran


def test_results_json_is_lm_evals_file_unchanged(runs: Any) -> None:
    out = runs.kit_out / "final"
    manifest = _json(out / "manifest.json")
    assert manifest["results_sha256"] == sha256_file(out / "results.json")
    assert set(_json(out / "results.json")) == set(_json(runs.cli_results))


def test_summary_and_manifest(runs: Any, tiny) -> None:
    out = runs.kit_out / "final"
    summary = _json(out / "summary.json")
    results = _json(out / "results.json")
    assert summary["label"] == "final"
    assert summary["model"] == str(runs.train_dir.resolve() / "final")
    assert summary["suite"] == "common-sense"
    assert summary["lm_eval_version"] == "0.4.13"
    for task in EVAL_TASKS:
        assert summary["tasks"][task] == task_metrics(results["results"][task])
        assert summary["tasks"][task]["acc"] == results["results"][task]["acc,none"]
        assert 0.0 <= summary["tasks"][task]["acc"] <= 1.0
        dataset = summary["task_datasets"][task]
        assert dataset["source"] == "local-files"
        assert dataset["fixtures"]["seed"] == runs.fixture_seed
        (split,) = dataset["data_files"].values()
        assert split["sha256"] == sha256_file(Path(split["path"]))
    assert summary["task_hashes"] == results["task_hashes"]
    assert (summary["batch_size"], summary["batch_sizes_detected"]) == (4, [])
    assert (summary["dtype"], summary["model_dtype"]) == ("float32", "torch.float32")
    assert summary["device"] == "cpu"
    assert summary["task_versions"] == results["versions"]
    manifest = _json(out / "manifest.json")
    assert manifest["stage"] == "eval"
    assert manifest["model"]["label"] == "final"
    assert manifest["task_hashes"] == results["task_hashes"]
    assert manifest["task_datasets"] == summary["task_datasets"]
    assert manifest["settings"] == {k: summary[k] for k in manifest["settings"]}
    assert manifest["config"]["trust_remote_code"] is False
    assert manifest["command"].startswith("gpt4allj-kit eval --model")
    assert manifest["environment"]["packages"]["lm-eval"] == "0.4.13"


def test_fixtures_are_deterministic_in_the_seed(tmp_path: Path) -> None:
    a = task_fixtures(tmp_path / "a", seed=3, n=4).parent / "data"
    b = task_fixtures(tmp_path / "b", seed=3, n=4).parent / "data"
    c = task_fixtures(tmp_path / "c", seed=4, n=4).parent / "data"
    names = sorted(p.name for p in a.iterdir())
    assert len(names) == 7
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    assert any((a / n).read_bytes() != (c / n).read_bytes() for n in names)


def test_task_specs() -> None:
    assert parse_tasks("common-sense") == EVAL_TASKS
    assert parse_tasks("piqa, boolq,piqa") == ("piqa", "boolq")


def test_model_resolution(tmp_path: Path, tiny) -> None:
    (single,) = resolve_models(str(tiny.model_dir), label="mine")
    assert (single.label, single.path, single.sha) == ("mine", tiny.model_dir.resolve(), None)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "/nonexistent/model-dir"], "no such model folder"),
        (["--limit", "0"], "--limit must be a positive"),
        (["--limit", "many"], "Invalid value for '--limit'"),
        (["--tasks", "piqa,hellaswagg"], "unknown task 'hellaswagg' (did you mean hellaswag?)"),
        (["--batch-size", "0"], "--batch-size"),
        (["--suite", "self-instruct"], "needs --data"),
    ],
)
def test_bad_inputs_are_one_line_exit_2(args: list[str], needle: str, tiny, tmp_path: Path, run_kit) -> None:
    base = ["eval", "--model", str(tiny.model_dir), "--device", "cpu", "--output", str(tmp_path / "out")]
    done = run_kit(*base, *args)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr
    if "Invalid value" not in needle:  # click's own usage errors are a few lines; the kit's are one
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*/results.json"))
