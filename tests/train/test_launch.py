"""The command, the dry run, the schedule and config checks: fast, nothing is launched."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from gpt4allj_kit import paths
from gpt4allj_kit.config import LaunchConfig, load_profile, load_train_config
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.train import checkpoint, launch, optim
from gpt4allj_kit.train.loop import launcher_dynamo_backend

DOCUMENTED = (
    "accelerate launch --dynamo_backend=inductor --num_processes=8 --num_machines=1 --machine_rank=0 "
    "--deepspeed_multinode_launcher standard --mixed_precision=bf16 --use_deepspeed "
    "--deepspeed_config_file=configs/deepspeed/ds_config_gptj.json train.py --config "
    "configs/train/finetune_gptj.yaml"
)


def test_full_profile_builds_the_documented_command() -> None:
    argv = launch.accelerate_command(
        load_profile("full").launch, ["--config", "configs/train/finetune_gptj.yaml"], num_processes=8
    )
    assert " ".join(argv) == DOCUMENTED


def test_cpu_launch_without_deepspeed_uses_multi_gpu_and_env() -> None:
    cpu = LaunchConfig(cpu=True, use_deepspeed=False, dynamo_backend="no", mixed_precision="no")
    argv = launch.accelerate_command(cpu, [], num_processes=2)
    assert "--multi_gpu" in argv and "--cpu" not in argv
    assert launch.launch_env(cpu) == {"ACCELERATE_USE_CPU": "1"}
    # DeepSpeed must not see ACCELERATE_USE_CPU: accelerate would silently run plain MULTI_CPU instead.
    deepspeed_cpu = cpu.model_copy(update={"use_deepspeed": True})
    assert "ACCELERATE_USE_CPU" not in launch.launch_env(deepspeed_cpu)
    assert "--multi_gpu" not in launch.accelerate_command(deepspeed_cpu, [], num_processes=2)


def test_launcher_dynamo_backend_is_read_from_the_accelerate_argv() -> None:
    parent = ["/venv/bin/python", "/venv/bin/accelerate", "launch", "--dynamo_backend=inductor", "train.py"]
    assert launcher_dynamo_backend([["python", "-u", "train.py"], parent]) == "inductor"
    assert launcher_dynamo_backend([["accelerate", "launch", "--dynamo_backend", "eager", "x.py"]]) == "eager"
    assert launcher_dynamo_backend([["python", "train.py", "--dynamo_backend=inductor"]]) is None


@pytest.mark.parametrize("warmup", [1, 3, 500])
def test_torch_schedule_equals_deepspeed_warmup_lr(warmup: int) -> None:
    from deepspeed.runtime.lr_schedules import WarmupLR

    lr = 2e-5
    ours = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    theirs = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = optim.build_scheduler(ours, lr=lr, min_lr=0.0, warmup_steps=warmup, ds_config=None)
    # The recipe's JSON: warmup_min_lr 0, warmup_type linear.
    reference = WarmupLR(
        theirs, warmup_min_lr=0, warmup_max_lr=lr, warmup_num_steps=warmup, warmup_type="linear"
    )
    for _ in range(warmup + 5):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], abs=1e-15)
        ours.step()
        theirs.step()
        schedule.step()
        reference.step()


def test_deepspeed_optimizer_gets_the_config_weight_decay() -> None:
    import json

    ds = json.loads(paths.default_deepspeed_config().read_text())
    assert "weight_decay" not in ds["optimizer"]["params"]
    optim.fill_weight_decay(ds)
    assert ds["optimizer"]["params"]["weight_decay"] == "auto"


def test_resume_rejects_missing_states(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no saved state"):
        checkpoint.resolve_resume("latest", tmp_path)
    with pytest.raises(ConfigError, match="not a saved training state"):
        checkpoint.resolve_resume(str(tmp_path), tmp_path)
    for step in (2, 10):
        (tmp_path / f"step_{step}").mkdir()
        (tmp_path / f"step_{step}" / checkpoint.STATE_FILE).write_text("{}")
    (tmp_path / "step_12").mkdir()  # incomplete: no trainer state
    assert checkpoint.resolve_resume("latest", tmp_path).name == "step_10"


def test_dry_run_smoke_prints_command_and_hyperparameters(kit_cli, tmp_path: Path) -> None:
    sets = ["--set", "num_epochs=3", "--set", "batch_size=4"]  # independent of the profile's own values
    result = kit_cli("train", "--profile", "smoke", "--dry-run", *sets, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    deepspeed = load_profile("smoke").launch.use_deepspeed
    assert "accelerate launch" in out and "train.py --config" in out
    assert ("--use_deepspeed" in out) is deepspeed and ("--multi_gpu" in out) is not deepspeed
    # The command reads the resolved config it will write into the output dir; the dry run writes nothing.
    written = tmp_path / "outputs" / "smoke" / launch.CONFIG_FILE
    assert f"train.py --config {written}" in out
    assert f"{written} (written at launch) = configs/train/finetune_gptj.yaml with:" in out
    assert "num_epochs: 3" in out
    assert f"output_dir: {tmp_path / 'outputs' / 'smoke'}" in out
    assert not (tmp_path / "outputs").exists()
    # 3000 synthetic rows, 150 held out; 4 per process x 2 processes -> 357 steps per epoch.
    for label, value in [("global batch", "8"), ("gradient accumulation", "1"), ("steps per epoch", "357"),
                         ("total optimizer steps", "1071"),
                         ("ZeRO stage", "2" if deepspeed else r"none \(DDP\)")]:  # fmt: skip
        assert re.search(rf"{label}\s*│\s*{value}\s*│", result.stdout), label
    assert "WarmupLR" in out and "AdamW" in out  # DeepSpeed's, or the torch LambdaLR equal to it
    assert re.search(r"validation\s*│\s*after batch index N > 0 with N % 100 == 0", result.stdout)
    assert "(upstream's cadence)" in out


def test_dry_run_keep_global_batch_raises_accumulation(kit_cli) -> None:
    result = kit_cli(
        "train", "--revision", "v1.0", "--num-processes", "2", "--keep-global-batch", "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert "gradient accumulation 1 -> 4" in " ".join(result.stderr.split())
    assert "gradient_accumulation_steps: 4" in result.stdout
    assert "revision: v1.0" in result.stdout
    assert "--num_processes=2" in result.stdout
    assert re.search(r"global batch\s*│\s*256\s*│", result.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "dataset_path=# CHANGE"], "dataset_path"),
        (["--set", "lr=fast"], "lr"),
        (["--set", "learning_rate=1"], "unknown key"),
        (["--profile", "nope"], "unknown profile"),
        (["--padding", "sometimes"], "--padding"),
        (["--resume", "latest", "--set", "output_dir=/nonexistent/run"], "no saved state"),
    ],
)
def test_bad_configs_are_rejected_before_launch(kit_cli, args: list[str], message: str) -> None:
    result = (
        kit_cli("train", "--profile", "smoke", *args) if "--profile" not in args else kit_cli("train", *args)
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "accelerate launch" not in result.stdout


def test_placeholder_config_file_is_rejected(kit_cli, tmp_path: Path) -> None:
    text = (
        paths.default_train_config()
        .read_text()
        .replace('output_dir: "outputs/finetune_gptj"', "output_dir: # CHANGE")
    )
    config = tmp_path / "finetune.yaml"
    config.write_text(text)
    result = kit_cli("train", "--config", str(config), "--dry-run")
    assert result.returncode == 2
    assert "output_dir" in result.stderr and "Traceback" not in result.stderr


def test_full_profile_fails_preflight_on_a_cpu_machine(kit_cli) -> None:
    result = kit_cli("train", "--revision", "v1.2-jazzy")
    assert result.returncode == 3, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "preflight" in errors[0] and "--force" in errors[0]
    assert "no CUDA GPU" in errors[0] and "Traceback" not in result.stderr


def test_root_train_py_rejects_a_bad_config_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "train.py", "--config", "configs/train/finetune_gptj.yaml", "--set", "batch_size=0"],
        cwd=paths.project_root(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "batch_size" in result.stderr and "Traceback" not in result.stderr


# --- the written config, and resuming through it --------------------------------------------------------


def _smoke_plan(output_dir: Path, *sets: str, resume: str | None = None) -> launch.LaunchPlan:
    request = launch.TrainRequest(profile="smoke", resume=resume, sets=[f"output_dir={output_dir}", *sets])
    return launch.plan(request)


def _saved_state(output_dir: Path, step: int) -> Path:
    state = output_dir / f"step_{step}"
    state.mkdir(parents=True)
    (state / checkpoint.STATE_FILE).write_text("{}")
    return state


def test_checkpoint_key_resumes_like_resume_and_is_resolved_in_the_plan(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"^checkpoint latest: no saved state"):
        _smoke_plan(out, "checkpoint=latest")
    _saved_state(out, 2)
    newest = _saved_state(out, 4)
    assert _smoke_plan(out, "checkpoint=latest").config.checkpoint == str(newest)
    assert _smoke_plan(out, f"checkpoint={out / 'step_2'}").config.checkpoint == str(out / "step_2")
    # --resume wins over the file's key; the command itself stays `train.py --config FILE`.
    plan = _smoke_plan(out, f"checkpoint={out / 'step_2'}", resume="latest")
    assert plan.config.checkpoint == str(newest) and plan.changes["checkpoint"] == str(newest)
    assert plan.argv[-3:] == ["train.py", "--config", str(out / launch.CONFIG_FILE)]


# --- checks before anything is launched --------------------------------------------------------------------


def _refused_before_launch(result: subprocess.CompletedProcess[str], code: int, cwd: Path) -> str:
    """The one error line of a command that stopped before launching anything."""
    assert result.returncode == code, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "accelerate launch" not in result.stdout
    assert not (cwd / "outputs").exists()  # nothing written, nothing started
    return errors[0]


def test_bad_data_and_models_stop_before_launch_with_one_line(kit_cli, tmp_path: Path, tiny) -> None:
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"prompt": "p", "response": "r"}\n{"prompt": "caf\xe9", "response": "r"}\n')
    error = _refused_before_launch(
        kit_cli("train", "--profile", "smoke", "--set", f"dataset_path={latin1}", cwd=tmp_path), 2, tmp_path
    )
    assert f"{latin1}: line 2 (row 1): column 'prompt' holds bytes that are not UTF-8" in error

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": None}))
    error = _refused_before_launch(
        kit_cli("train", "--profile", "smoke", "--set", f"model_name={model}", cwd=tmp_path), 2, tmp_path
    )
    assert f"{model / 'config.json'}: key 'model_type' is None" in error


def test_more_processes_than_cores_are_refused_unless_forced(kit_cli, tmp_path: Path) -> None:
    import os

    cores = len(os.sched_getaffinity(0))
    result = kit_cli("train", "--profile", "smoke", "--num-processes", str(cores + 1), cwd=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert f"{cores + 1} CPU processes but {cores} usable CPU core" in errors[0]
    assert f"pass --num-processes {cores}" in errors[0] and "--force" in errors[0]
    # --force goes on with the reason shown (checked without launching: the plan's preflight).
    plan = _smoke_plan(tmp_path / "out", f"num_proc={1}")
    plan = replace(plan, hyper=replace(plan.hyper, num_processes=cores + 1))
    forced = launch.preflight(plan, force=True)
    assert not forced.can_run and any("usable CPU core" in r for r in forced.reasons)


def test_dry_run_counts_the_rows_of_the_fetched_hub_dataset(kit_cli, tmp_path: Path) -> None:
    """After `gpt4allj-kit fetch`, the dry run counts rows and steps from the fetched snapshot (found through
    the lock and the hub cache, as the training finds it), and checks those rows before any launch."""
    from fetch.conftest import DATA, jsonl
    from fetch.standin import HubStandIn
    from gpt4allj_kit.assets import synthetic_rows

    hub = HubStandIn().start()
    try:
        rows = synthetic_rows(seed=11, rows=45)
        hub.repo(DATA, "dataset").commit({"data/train-00000-of-00001.jsonl": jsonl(rows)}, "v1.0")
        rows[7]["response"] = None  # type: ignore[assignment]
        hub.repo(DATA, "dataset").commit({"data/train-00000-of-00001.jsonl": jsonl(rows)}, "v1.1-breezy")
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf")}
        args = ("train", "--revision", "v1.0", "--num-processes", "2", "--dry-run")
        fetched = kit_cli("fetch", "--revision", "v1.0", "--what", "data", env=env, cwd=tmp_path)
        assert fetched.returncode == 0, fetched.stderr
        after = kit_cli(*args, env=env, cwd=tmp_path)
        assert after.returncode == 0, after.stderr
        # 45 rows, 3 held out; 32 per process x 2 processes -> 1 step per epoch, 2 epochs.
        for label, value in (
            ("training rows", "42"),
            ("steps per epoch", "1"),
            ("total optimizer steps", "2"),
        ):
            assert re.search(rf"{label}\s*│\s*{value}\s*│", after.stdout), (label, after.stdout)
        # The base model was not fetched: online the training fetches it (a note), offline it cannot (exit 3).
        assert "model EleutherAI/gpt-j-6B@main (model_name) is not fetched yet" in " ".join(
            after.stderr.split()
        )
        offline = kit_cli(*args, env={**env, **kit_cli.OFFLINE}, cwd=tmp_path)
        error = _refused_before_launch(offline, 3, tmp_path)
        assert "model EleutherAI/gpt-j-6B@main (model_name) is not in the hub cache" in error

        # The rows of a fetched snapshot are checked before launch: file, line and column.
        assert (
            kit_cli("fetch", "--revision", "v1.1-breezy", "--what", "data", env=env, cwd=tmp_path).returncode
            == 0
        )
        bad = kit_cli("train", "--revision", "v1.1-breezy", "--num-processes", "2", env=env, cwd=tmp_path)
        error = _refused_before_launch(bad, 2, tmp_path)
        assert "train-00000-of-00001.jsonl: line 8 (row 7): column 'response' is null" in error
    finally:
        hub.stop()


def test_count_rows_counts_the_files_the_training_reads(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def rows_of(path: Path | str) -> int | None:
        values = {"model_name": "m", "tokenizer_name": "t", "dataset_path": str(path), "output_dir": "o"}
        return launch.count_rows(load_train_config(None, values))

    row = json.dumps({"prompt": "p", "response": "r"})
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "a_clean.jsonl").write_text(f"{row}\n\n{row}\n{row}\n")
    (clean / "notes.jsonl").write_text(f"{row}\n" * 5)  # not *_clean: the training does not read it
    assert rows_of(clean) == 3
    array = tmp_path / "rows.json"
    array.write_text(json.dumps([{"prompt": "p", "response": "r"}] * 4, indent=1))
    assert rows_of(array) == 4
    hub = tmp_path / "hub" / "data"
    hub.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "response": "r"}] * 2), hub / "train-0.parquet")
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "response": "r"}]), hub / "test-0.parquet")
    assert rows_of(hub.parent) == 2
    assert rows_of("./missing.jsonl") is None  # the checks before launch say why


def test_a_layout_other_than_the_recipes_says_before_the_run_which_steps_read_other_rows(
    kit_cli, tmp_path: Path
) -> None:
    """1 process x accumulation 2 instead of the smoke recipe's 2 processes x 1: the same global batches but
    each epoch's last step (2 processes repeat rows from the epoch's start there: even_batches). Said by the
    dry run, kept in the plan, and written beside the config for the training's manifest and trace."""
    sets = ["--set", "gradient_accumulation_steps=2"]
    result = kit_cli("train", "--profile", "smoke", "--dry-run", "--num-processes", "1", *sets, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert (
        "data order: 1 process x batch 8 x accumulation 2 against 2 processes x batch 8 x accumulation 1: "
        "2 of 358 steps read other rows (steps 179, 358)"
    ) in said
    assert "2 processes x batch 8 x accumulation 1 repeats 14 rows at each epoch's end (even_batches)" in said
    request = launch.TrainRequest(profile="smoke", num_processes=1, sets=["gradient_accumulation_steps=2"])
    planned = launch.plan(request, cwd=tmp_path)
    assert planned.layout_check is not None
    assert [d.step for d in planned.layout_check.differing] == [179, 358]
    launch.write_layout(planned)
    written = json.loads((planned.output_dir / "data_layout.json").read_text())
    assert written["reference"] == {"num_processes": 2, "batch_size": 8, "gradient_accumulation_steps": 1}
    assert written["planned"]["differing_steps"] == "179, 358"
    as_recipe = launch.plan(launch.TrainRequest(profile="smoke"), cwd=tmp_path)
    assert as_recipe.layout_check is None and as_recipe.reference_layout == planned.layout_check.reference
