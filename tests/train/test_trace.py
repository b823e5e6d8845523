"""trace.jsonl on real 2-process trainings of the tiny GPT-J (the session's reference runs): it equals the
expected trace (rows and token content), a killed-and-resumed run's equals the uninterrupted run's, and
1 process x accumulation 2 reads the 2-process steps except where accelerate's sharding says otherwise -
which the kit computes before any run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gpt4allj_kit.config import load_train_config
from gpt4allj_kit.trace import expected
from gpt4allj_kit.trace.layout import LAYOUT_FILE, Layout, compare_layouts, layout_json
from gpt4allj_kit.trace.records import read_trace

pytestmark = pytest.mark.slow

TRAIN_ROWS = 38  # 40 rows less the 5% validation split
# The runs' own settings as a recipe: what each real run must meet (the smoke recipe's values differ).
OWN_RULES = """\
recipe: reference-runs
description: the reference runs' own settings
profile: smoke
rules:
  - {id: data-trace, checks: rows and content of every step, check: data-trace, layout: run}
  - {id: no-skip-no-repeat, checks: contiguous steps and rows, check: no-skip-no-repeat}
  - id: lr-schedule
    checks: WarmupLR at every step
    check: lr-schedule
    lr: run.config.lr
    min_lr: run.config.min_lr
    warmup_steps: run.config.warmup_steps
  - {id: processes, checks: processes, check: value, found: run.num_processes, expected: 2}
"""


def expected_steps(run: Any, layout: Layout) -> list:
    config = load_train_config(run.output_dir / "train_config.yaml")
    rows = expected.from_dataset(config)
    assert rows.content
    return list(expected.expected_steps(rows, layout, expected.Schedule.of(config)))


def step_lines(run: Any) -> list[dict]:
    lines = (run.output_dir / "trace.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if not r.get("launch")]


@pytest.fixture(scope="module")
def own_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "reference-runs.yaml"
    path.write_text(OWN_RULES)
    return path


def test_ddp_trace_is_the_expected_trace(ddp_reference: Any) -> None:
    trace = read_trace(ddp_reference.output_dir / "trace.jsonl")
    assert not trace.torn and len(trace.launches) == 1
    launch = trace.launches[0]
    assert (launch.step, launch.num_processes, launch.gradient_accumulation_steps) == (0, 2, 1)
    assert (launch.data_rows, launch.train_rows, launch.steps_per_epoch, launch.shuffle) == (40, 38, 5, True)
    comparison = expected.compare_steps(
        trace.steps, expected_steps(ddp_reference, Layout(2, 4, 1)), complete=True
    )
    assert comparison.same and comparison.compared == comparison.content_compared == 10
    # Each epoch reads every training row once, plus the 2 rows even_batches repeats from its start.
    for epoch in (0, 1):
        rows = [r for s in trace.steps if s.epoch == epoch for r in s.row_list()]
        assert len(rows) == 40 and len(set(rows)) == TRAIN_ROWS
    assert trace.steps[0].rows != trace.steps[5].rows  # shuffled: another order in epoch 2
    # The step's numbers are the metrics' numbers; tokens count every row's max_length positions.
    metrics = ddp_reference.train_metrics()
    assert [(s.step, s.loss, s.lr, s.grad_norm) for s in trace.steps] == [
        (m["step"], m["train_loss"], m["lr"], m["grad_norm"]) for m in metrics
    ]
    assert all(s.tokens == s.n_rows * 64 and 0 < s.nonpad_tokens <= s.tokens for s in trace.steps)
    assert ddp_reference.manifest()["trace"] == "trace.jsonl"


def test_deepspeed_trace_with_accumulation_is_the_expected_trace(deepspeed_reference: Any) -> None:
    """ZeRO-2, bf16, inductor, accumulation 2: each step holds 2 batches per process (16 rows), the
    epoch's last step 1 (8 rows), as accelerate syncs at the loader's end."""
    trace = read_trace(deepspeed_reference.output_dir / "trace.jsonl")
    assert [(s.window, s.n_rows) for s in trace.steps[:3]] == [((0, 1), 16), ((2, 3), 16), ((4, 4), 8)]
    comparison = expected.compare_steps(
        trace.steps, expected_steps(deepspeed_reference, Layout(2, 4, 2)), complete=True
    )
    assert comparison.same and comparison.compared == comparison.content_compared == 6
    assert trace.launches[0].model_dump()["zero_stage"] == 2


def test_the_trace_command_computes_a_runs_trace_without_training(
    ddp_reference: Any, kit_cli, tmp_path: Path
) -> None:
    out = tmp_path / "expected.jsonl"
    config = ddp_reference.output_dir / "train_config.yaml"
    result = kit_cli(
        "trace", "--config", config, "--num-processes", "2", "--output", out, env=kit_cli.OFFLINE
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "token hashes of every step" in result.stdout and "time" in result.stdout
    ours = read_trace(out)
    assert ours.launches[0].model_dump()["expected"] is True
    comparison = expected.compare_steps(
        read_trace(config.with_name("trace.jsonl")).steps, ours.steps, complete=True
    )
    assert comparison.same and comparison.content_compared == 10
    assert [s.lr for s in ours.steps] == [m["lr"] for m in ddp_reference.train_metrics()]


def test_a_killed_and_resumed_run_traces_as_the_uninterrupted_one(
    launch_train, tmp_path: Path, ddp_reference: Any, kit_cli, own_rules: Path, reference_sets
) -> None:
    """SIGKILLed after step 7, a torn line left behind; the resume (from step_3: 4 steps) redoes steps 5-7
    across the epoch boundary. The trace ends equal to the uninterrupted run's, field for field."""
    out, sets = tmp_path / "out", reference_sets["ddp"]
    killed = launch_train(out, deepspeed=False, sets=sets, kill_after_step=7)
    assert killed.returncode != 0
    assert [s["step"] for s in step_lines(killed)] == list(range(1, 8))
    with (out / "trace.jsonl").open("a") as fh:
        fh.write('{"step": 8, "epoch": 1, "win')  # as a kill in the middle of a write leaves it
    assert read_trace(out / "trace.jsonl").torn
    resumed = launch_train(out, deepspeed=False, sets={**sets, "checkpoint": "latest"})
    assert resumed.returncode == 0, resumed.log[-4000:]
    trace = read_trace(out / "trace.jsonl")
    assert not trace.torn
    assert [(r.step, bool(r.resumed_from)) for r in trace.launches] == [(0, False), (4, True)]
    assert step_lines(resumed) == step_lines(ddp_reference)

    verified = kit_cli(
        "verify-run", out, "--recipe", own_rules, "--against", ddp_reference.output_dir, "--json"
    )
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-2000:]
    verdicts = {v["id"]: v for v in json.loads(verified.stdout)["verdicts"]}
    assert {k: v["verdict"] for k, v in verdicts.items()} == dict.fromkeys(verdicts, "pass")
    assert "resumed after step 4 (step_3)" in verdicts["no-skip-no-repeat"]["found"]
    assert "10 steps equal: rows, content of 10" in verdicts["data-trace"]["found"]


def test_one_process_with_accumulation_reads_the_two_process_steps_but_at_the_epoch_tails(
    launch_train, tmp_path: Path, ddp_reference: Any, kit_cli, own_rules: Path, reference_sets
) -> None:
    """2 processes x accumulation 1 and 1 process x accumulation 2 make the same global batches, except
    where even_batches repeats rows at an epoch's end: the steps `compare_layouts` names before any run."""
    predicted = compare_layouts(TRAIN_ROWS, Layout(2, 4, 1), Layout(1, 4, 2), epochs=2)
    assert [d.step for d in predicted.differing] == [5, 10]
    # What `gpt4allj-kit train` writes beside the config when the layout is not the recipe's.
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / LAYOUT_FILE).write_text(json.dumps({"reference": layout_json(Layout(2, 4, 1))}))
    one = launch_train(
        tmp_path / "one",
        deepspeed=False,
        sets={**reference_sets["ddp"], "gradient_accumulation_steps": 2},
        num_processes=1,
    )
    assert one.returncode == 0, one.log[-4000:]
    recorded = one.manifest()["data_layout"]  # the training's own comparison, on its exact rows
    assert (recorded["differing_steps"], recorded["same"]) == ("5, 10", False)
    assert read_trace(one.output_dir / "trace.jsonl").launches[0].model_dump()["data_layout"] == recorded
    ours, theirs = (
        read_trace(one.output_dir / "trace.jsonl").steps,
        read_trace(ddp_reference.output_dir / "trace.jsonl").steps,
    )
    assert len(ours) == len(theirs) == 10
    differing = [a.step for a, b in zip(ours, theirs, strict=True) if a.rows != b.rows]
    assert differing == [d.step for d in predicted.differing]
    for a, b in zip(ours, theirs, strict=True):
        if a.step in differing:  # the 2-process step also reads 2 rows from its epoch's start again
            assert set(a.row_list()) <= set(b.row_list()) and (a.n_rows, b.n_rows) == (6, 8)
        else:
            assert a.batch_sha256 == b.batch_sha256  # the same rows, the same tokens
    # Its own trace is its layout's expected trace.
    own = expected.compare_steps(ours, expected_steps(one, Layout(1, 4, 2)), complete=True)
    assert own.same and own.content_compared == 10

    against = kit_cli(
        "verify-run", one.output_dir, "--recipe", own_rules, "--against", ddp_reference.output_dir, "--json"
    )
    assert against.returncode == 1, against.stderr[-2000:]
    verdicts = {v["id"]: v for v in json.loads(against.stdout)["verdicts"]}
    assert verdicts["data-trace"]["verdict"] == "differs"
    assert "2 of 10 steps differ (steps 5, 10)" in verdicts["data-trace"]["found"]
    assert verdicts["processes"]["verdict"] == "differs" and verdicts["processes"]["found"] == "1"
