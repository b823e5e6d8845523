"""`gpt4allj-kit trace`: the expected trace without training, with or without the data at hand."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gpt4allj_kit.trace.records import read_trace

RELEASED_ROWS = 808_812  # nomic-ai/gpt4all-j-prompt-generations v1.0 (the dataset card)


def test_the_released_datas_trace_takes_seconds_from_its_row_count(kit_cli, tmp_path: Path) -> None:
    """808,812 rows, 8 processes x 32 x 1 (the recipe), 2 epochs: the rows of 6004 steps, no data needed."""
    out = tmp_path / "expected.jsonl"
    clock = time.monotonic()
    result = kit_cli(
        "trace", "--revision", "v1.0", "--rows", str(RELEASED_ROWS), "--output", out, env=kit_cli.OFFLINE
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - clock < 120
    trace = read_trace(out)
    header = trace.launches[0]
    assert (header.data_rows, header.train_rows, header.steps_per_epoch) == (RELEASED_ROWS, 768_371, 3002)
    assert len(trace.steps) == 6004 and trace.steps[-1].step == 6004
    assert all(s.n_rows == 256 for s in trace.steps) and trace.steps[0].batch_sha256 is None
    # Unshuffled (the recipe): epoch 2 reads epoch 1's rows again, in the same order.
    assert trace.steps[0].rows == trace.steps[3002].rows
    out_text = " ".join(result.stdout.split())
    assert "row numbers only" in out_text and "time" in out_text and "order, shard and step" in out_text
    manifest = json.loads((tmp_path / "expected.jsonl.manifest.json").read_text())
    assert manifest["stage"] == "trace" and manifest["output"] == str(out)
    assert manifest["config"]["revision"] == "v1.0" and manifest["expected_trace"]["total_steps"] == 6004
    assert manifest["environment"]["kit_version"] and "hardware" in manifest["environment"]


def test_four_gpus_with_the_global_batch_kept_are_compared_with_the_recipes_eight(kit_cli) -> None:
    result = kit_cli(
        "trace", "--revision", "v1.0", "--rows", str(RELEASED_ROWS), "--num-processes", "4",
        "--gradient-accumulation-steps", "2", "--json", env=kit_cli.OFFLINE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["layout"] == "4 processes x batch 32 x accumulation 2" and summary["global_batch"] == 256
    against = summary["against_recipe"]
    assert against["differing_steps"] == "3002, 6004" and not against["same"]
    assert set(summary["seconds"]) >= {"order, shard and step", "compare with the recipe's layout"}


def test_the_smoke_datas_trace_hashes_every_step(kit_cli, tmp_path: Path) -> None:
    out = tmp_path / "smoke.jsonl"
    result = kit_cli(
        "trace", "--profile", "smoke", "--output", out, "--json", env=kit_cli.OFFLINE, timeout=300
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (
        summary["content_hashes"] is True and summary["train_rows"] == 2850 and summary["total_steps"] == 358
    )
    assert (
        summary["against_recipe"] is None
        and summary["recipe_layout"] == "2 processes x batch 8 x accumulation 1"
    )
    steps = read_trace(out).steps
    assert all(len(s.batch_sha256 or "") == 64 for s in steps)


def test_data_not_fetched_is_said_with_what_to_do(kit_cli) -> None:
    result = kit_cli("trace", "--revision", "v1.2-jazzy", env=kit_cli.OFFLINE)
    assert result.returncode == 3, result.stderr
    assert "not fetched" in result.stderr and "--rows" in result.stderr
    assert "Traceback" not in result.stderr
