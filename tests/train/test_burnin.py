"""`train --burn-in N`: its arithmetic on hand-made inputs with known answers, the peak table, its folder,
the run's schedule replayed against a real run's, and one real 2-process burn-in of the smoke profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpt4allj_kit import paths
from gpt4allj_kit.config import load_train_config
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.trace.layout import Layout, steps_per_epoch
from gpt4allj_kit.trace.records import read_trace
from gpt4allj_kit.train import burnin, lifecycle
from gpt4allj_kit.train.checkpoint import step_dirs
from gpt4allj_kit.train.launch import CONFIG_FILE
from gpt4allj_kit.train.peaks import load_peak_table

BASE = {"model_name": "m", "tokenizer_name": "t", "dataset_path": "d.jsonl", "output_dir": "out"}


def config(**values: object):
    return load_train_config(None, {**BASE, **values})


# --- arithmetic ------------------------------------------------------------------------------------------


def test_mfu_is_six_flops_per_parameter_and_token_over_the_peak() -> None:
    # 6 x 1e9 parameters x 1e3 tokens/s = 6e12 FLOP/s of a 1e14 FLOP/s device.
    assert burnin.mfu(10**9, 1_000.0, 1e14) == pytest.approx(0.06)


def test_projection_adds_steps_evaluations_and_each_kind_of_save() -> None:
    schedule = burnin.Schedule(steps=100, steps_per_epoch=50, evaluations=4, state_saves=2, weight_saves=3)
    projection = burnin.project(schedule, step_seconds=2.0, eval_pass=10.0, state_save=5.0, weight_save=7.0)
    assert (projection.steps, projection.evaluations, projection.saves) == (200.0, 40.0, 31.0)
    assert projection.total == 271.0


def test_a_validation_pass_is_extrapolated_from_its_timed_batches() -> None:
    sampled = burnin.EvalTiming(batches=100, timed=8, seconds=4.0, warmup=1)
    assert sampled.per_pass == pytest.approx(50.0)
    assert "8 of 100 batches" in sampled.method
    whole = burnin.EvalTiming(batches=5, timed=4, seconds=2.0, warmup=1)
    assert whole.per_pass == pytest.approx(2.5)  # the warm-up batch counted at the others' mean
    assert whole.method.startswith("whole pass")
    single = burnin.EvalTiming(batches=1, timed=1, seconds=3.0, warmup=0)
    assert single.per_pass == 3.0
    assert burnin.EvalTiming(batches=0, timed=0, seconds=0.0, warmup=0).per_pass == 0.0


def test_step_times_are_the_deltas_after_the_warm_up_and_tokens_their_sum() -> None:
    times = [(1.0, 0.5), (2.0, 0.8), (3.0, 1.8), (4.0, 2.9), (5.0, 3.9)]
    tokens = {1: (99, 9), 2: (99, 9), 3: (100, 40), 4: (100, 50), 5: (100, 60)}
    steps = burnin.timed_steps(times, tokens, warmup=2)
    assert steps.seconds == pytest.approx((1.0, 1.1, 1.0))
    assert (steps.tokens, steps.nonpad_tokens) == (300, 150)
    assert steps.tokens_per_s() == pytest.approx(300 / 3.1)
    assert steps.median == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="warm-up"):
        burnin.timed_steps(times[:2], tokens, warmup=2)


def test_the_schedule_of_upstreams_cadence() -> None:
    # 38 rows, batch 4, one process: 10 batches per epoch; validation after batch indices 3 and 6 and at
    # the epoch's end, step_N/ after indices 3, 6 and 9 (upstream's batch-index cadence).
    layout = Layout(1, 4, 1)
    whole = burnin.run_schedule(config(batch_size=4, eval_every=3, save_every=3, num_epochs=2), 38, layout)
    assert whole == burnin.Schedule(20, 10, evaluations=6, state_saves=6, weight_saves=3)
    cut = config(batch_size=4, eval_every=3, save_every=3, num_epochs=2, max_steps=12)
    assert burnin.run_schedule(cut, 38, layout) == burnin.Schedule(12, 10, 3, 3, 2)


def test_the_schedule_of_optimizer_steps_with_accumulation() -> None:
    # 40 rows, batch 4, 2 processes: 5 batches each per epoch, synced at indices 1, 3, 4 (3 steps); steps
    # 2 and 4 validate mid-epoch (step 6 is at the epoch's end, which validates anyway).
    values = {"batch_size": 4, "eval_every": 2, "save_every": 2, "num_epochs": 2, "padding": "dynamic"}
    schedule = burnin.run_schedule(config(**values, gradient_accumulation_steps=2), 40, Layout(2, 4, 2))
    assert schedule == burnin.Schedule(6, 3, evaluations=4, state_saves=3, weight_saves=3)


@pytest.mark.slow
def test_the_schedule_matches_what_a_real_run_did(ddp_reference) -> None:
    """The replay against a real 2-process run (the shared DDP reference): its validation lines, its
    step_N/ states and its weights."""
    out = ddp_reference.output_dir
    run_config = load_train_config(out / CONFIG_FILE)
    launch = read_trace(out / paths.TRACE).launches[0]
    layout = Layout(launch.num_processes, launch.batch_size, launch.gradient_accumulation_steps)
    schedule = burnin.run_schedule(run_config, launch.train_rows, layout)
    assert schedule.steps == launch.total_steps
    assert schedule.evaluations == sum("val_loss" in m for m in ddp_reference.metrics())
    assert schedule.state_saves == len(step_dirs(out))
    assert schedule.weight_saves == len([p for p in out.iterdir() if p.name.startswith(("epoch_", "final"))])


# --- the peak table ---------------------------------------------------------------------------------------


def test_the_peak_table_validates_and_names_map_to_their_part() -> None:
    table = load_peak_table()
    assert all(d.source and d.tflops > 0 for d in table.devices)
    expected = {
        "NVIDIA H100 80GB HBM3": 989.5,
        "NVIDIA H100 PCIe": 756.5,
        "NVIDIA H200": 989.5,
        "NVIDIA A100-SXM4-40GB": 312.0,
        "NVIDIA A100 80GB PCIe": 312.0,
        "NVIDIA A10G": 70.0,
        "NVIDIA L4": 121.0,
        "NVIDIA L40S": 362.05,
        "NVIDIA GeForce RTX 4090": 165.2,
        "NVIDIA RTX A6000": 154.8,
    }
    for name, tflops in expected.items():
        found = table.lookup(name)
        assert found is not None and found.tflops == tflops, name
    assert table.lookup("Tesla V100-SXM2-16GB") is None  # no bf16


def test_an_unknown_device_has_mfu_unknown_with_its_name() -> None:
    shown = burnin.utilisation(load_peak_table(), "CPU (some core)", 100, 10.0, 5.0)
    assert shown["tokens"] == shown["nonpad_tokens"] == "unknown"
    assert "CPU (some core)" in shown["source"]
    known = burnin.utilisation(load_peak_table(), "NVIDIA A100-SXM4-80GB", 10**9, 1e4, 5e3)
    assert known["tokens"] == pytest.approx(6e13 / 312e12)
    assert known["nonpad_tokens"] == pytest.approx(known["tokens"] / 2)


def test_a_bad_peak_table_is_one_line_naming_it(tmp_path: Path) -> None:
    table = tmp_path / "peaks.yaml"
    table.write_text("devices:\n  - {name: x, pattern: '(', tflops: 1, source: s}\n")
    with pytest.raises(ConfigError, match=str(table)):
        load_peak_table(table)


# --- its folder --------------------------------------------------------------------------------------


def test_an_earlier_burn_in_is_replaced_and_anything_else_refused(tmp_path: Path) -> None:
    folder = tmp_path / "run" / paths.BURN_IN_DIR
    burnin.prepare_folder(folder)
    (folder / paths.BURN_IN).write_text("{}")
    burnin.prepare_folder(folder)
    assert sorted(p.name for p in folder.iterdir()) == [burnin.MARKER]
    foreign = tmp_path / "other" / paths.BURN_IN_DIR
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=str(foreign)):
        burnin.prepare_folder(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


# --- a real burn-in -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_smoke_burn_in_on_cpu_measures_and_projects_the_run(kit_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = kit_cli(
        "train", "--profile", "smoke", "--burn-in", "3", "--set", f"output_dir={out}",
        env=kit_cli.OFFLINE, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert burnin.CPU_NOTE in done.stdout
    assert "projected run:" in done.stdout

    folder = out / paths.BURN_IN_DIR
    result = json.loads((folder / paths.BURN_IN).read_text())
    assert result["note"] == burnin.CPU_NOTE
    assert result["timed_steps"] == 3 and result["warmup_steps"] == burnin.WARMUP_STEPS
    manifest = json.loads((folder / f"{paths.BURN_IN}.{paths.MANIFEST}").read_text())
    assert manifest["stage"] == "burn-in" and manifest["environment"]["packages"]["torch"]
    assert manifest["timings"]["projection"] == result["projection"]

    # The projection counts the run's steps as the trace (and the layout's one formula) does.
    launch = read_trace(folder / paths.TRACE).launches[0]
    run = result["run"]
    assert run["steps"] == launch.total_steps
    assert run["steps"] == steps_per_epoch(launch.train_rows, Layout(2, 8, 1)) * run["epochs"]
    assert run["train_rows"] == launch.train_rows and run["output_dir"] == str(out)
    projection = result["projection"]
    assert projection["steps_seconds"] == pytest.approx(run["steps"] * result["step_seconds"]["mean"])
    assert projection["total_seconds"] == pytest.approx(
        projection["steps_seconds"] + projection["evaluations_seconds"] + projection["saves_seconds"]
    )
    assert projection["evaluations_seconds"] == pytest.approx(
        run["evaluations"] * result["evaluation"]["seconds_per_pass"]
    )

    throughput = result["throughput"]
    assert throughput["tokens_per_s"] == pytest.approx(throughput["tokens"] / throughput["seconds"])
    assert throughput["tokens_per_s_per_device"] == pytest.approx(throughput["tokens_per_s"] / 2)
    assert 0 < throughput["nonpad_tokens"] <= throughput["tokens"]
    # faithful padding: every timed step computes 2 processes x batch 8 x 128 positions
    assert throughput["tokens"] == 3 * 2 * 8 * 128
    assert throughput["seconds"] == pytest.approx(sum(result["step_seconds"]["each"]))
    assert all(s > 0 for s in result["step_seconds"]["each"])
    assert [d["process"] for d in result["devices"]] == [0, 1]
    assert all(d["peak_with_evaluation_and_saves"]["rss_bytes"] > 0 for d in result["devices"])
    assert result["mfu"]["tokens"] == "unknown"
    assert result["model"]["parameters"] > 0
    assert result["evaluation"]["seconds_per_pass"] > 0
    assert result["saves"]["state_seconds"] > 0 and result["saves"]["weights_seconds"] > 0

    # Never a resumable run, and nothing of it in the run's own output dir.
    assert step_dirs(folder) == [] and not (folder / "final").exists()
    assert not (folder / burnin.SCRATCH).exists()
    assert lifecycle.earlier_run(out) is None
