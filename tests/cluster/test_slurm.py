"""Generated sbatch scripts submitted to a real one-node Slurm (see conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gpt4allj_kit import cluster
from gpt4allj_kit.cluster import ClusterRequest

# Each test waits for a real Slurm job (seconds each): outside the edit loop's `-m "not slow"`.
pytestmark = pytest.mark.slow

RECORD = (
    "import json, os, sys; "
    "open(sys.argv[3], 'w').write(json.dumps({'rank': sys.argv[1], 'main': sys.argv[2], "
    "'cpu': os.environ.get('ACCELERATE_USE_CPU'), 'job': os.environ.get('SLURM_JOB_ID'), "
    "'cwd': os.getcwd()}))"
)


@pytest.fixture
def slurm(slurm_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    return slurm_cluster


def _request(output_dir: Path, **changes: object) -> ClusterRequest:
    fields: dict[str, object] = {
        "launcher": "slurm",
        "nodes": 1,
        "gpus_per_node": 0,
        "partition": "debug",
        "container_image": None,
        "hostfile": None,
        "main_process_ip": None,
        "main_process_port": 29511,
        "job_name": "kit-test",
        "output_dir": output_dir,
        "cpu": True,
    }
    fields.update(changes)
    return ClusterRequest(**fields)  # type: ignore[arg-type]


def _write(request: ClusterRequest, text: str) -> Path:
    path = cluster.sbatch_path(request)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_sbatch_script_runs_on_slurm_with_rank_main_node_and_environment(slurm: Any, tmp_path: Path) -> None:
    out = tmp_path / "job"
    request = _request(out, cpus_per_task=slurm.cpus)
    record = out / "node.json"
    payload = [sys.executable, "-c", RECORD, cluster.NODE_RANK, cluster.MAIN_IP, str(record)]
    script = _write(
        request, cluster.sbatch_script_for(request, payload, environment={"ACCELERATE_USE_CPU": "1"})
    )
    job_id = cluster.submit(script, wait=True)
    seen = json.loads(record.read_text())
    assert seen == {
        "rank": "0",
        "main": slurm.node,
        "cpu": "1",
        "job": job_id,
        "cwd": str(cluster.paths.project_root()),
    }
    log = out / f"slurm-{job_id}.out"
    assert f"main process on {slurm.node}" in log.read_text()


def test_sbatch_reads_quoted_directives_of_a_hostile_output_dir_and_kit_dir(
    slurm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sbatch (not bash) parses `#SBATCH` lines: its log lands in the output dir, its job in the kit dir."""
    name = "out dir 'q' \"dq\" $(touch PWNED) #h 100%j"
    out, root = tmp_path / name, tmp_path / f"kit {name}"
    root.mkdir()
    monkeypatch.setenv(cluster.paths.ROOT_ENV, str(root))
    record = tmp_path / "node.json"
    payload = [sys.executable, "-c", RECORD, cluster.NODE_RANK, cluster.MAIN_IP, str(record)]
    request = _request(out)
    job_id = cluster.submit(_write(request, cluster.sbatch_script_for(request, payload)), wait=True)
    assert json.loads(record.read_text())["cwd"] == str(root)
    assert f"main process on {slurm.node}" in (out / f"slurm-{job_id}.out").read_text()
    assert not list(tmp_path.rglob("PWNED"))


def test_two_node_job_runs_one_task_per_node_with_its_own_rank(slurm: Any, tmp_path: Path) -> None:
    out = tmp_path / "pair"
    request = _request(out, nodes=2, partition="pair", job_name="kit-pair")
    payload = [
        sys.executable,
        "-c",
        RECORD,
        cluster.NODE_RANK,
        cluster.MAIN_IP,
        f"{out}/node-{cluster.NODE_RANK}.json",
    ]
    job_id = cluster.submit(_write(request, cluster.sbatch_script_for(request, payload)), wait=True)
    seen = [json.loads((out / f"node-{rank}.json").read_text()) for rank in (0, 1)]
    assert [(s["rank"], s["main"], s["job"]) for s in seen] == [
        ("0", slurm.node, job_id),
        ("1", slurm.node, job_id),
    ]


def test_submit_without_wait_returns_the_queued_job_id(slurm: Any, tmp_path: Path) -> None:
    request = _request(tmp_path / "queued")
    script = _write(request, cluster.sbatch_script_for(request, ["true"]))
    job_id = cluster.submit(script)
    assert job_id.isdigit()
    shown = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30, check=True
    )
    assert f"JobId={job_id} JobName=kit-test" in shown.stdout


def test_a_failing_job_is_one_line_naming_the_job(slurm: Any, tmp_path: Path) -> None:
    request = _request(tmp_path / "failing")
    script = _write(request, cluster.sbatch_script_for(request, ["false"]))
    with pytest.raises(cluster.JobFailed) as error:
        cluster.submit(script, wait=True)
    assert error.value.message.startswith("Slurm job ")
    assert "failed" in error.value.message
    assert "\n" not in error.value.message


def test_smoke_training_through_slurm(slurm: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Two CPU processes of the smoke training, launched through srun by the generated sbatch script.

    DDP rather than the profile's DeepSpeed: this proves the cluster path (sbatch, srun, rank, main node,
    environment); DeepSpeed on CPU is the training stage's tests' job and costs minutes of op compilation.
    """
    pytest.importorskip("gpt4allj_kit.train.launch", reason="the training launcher is not there yet")
    from gpt4allj_kit.config import load_profile, load_train_config, train_config_yaml

    tiny = request.getfixturevalue("tiny")
    profile = load_profile("smoke")
    launch = profile.launch.model_copy(update={"use_deepspeed": False})
    train_dir = tmp_path / "train"
    sets = {
        **profile.train,
        "model_name": str(tiny.model_dir),
        "tokenizer_name": str(tiny.tokenizer_dir),
        "dataset_path": str(tiny.jsonl),
        "output_dir": str(train_dir),
        "max_steps": 2,
        "eval_every": 1,  # upstream's cadence: after batch index 1, i.e. at step 2
        "save_every": 2,
    }
    # What the kit's launch does: the resolved config written into the output dir, read by every node.
    config_file = train_dir / "train_config.yaml"
    train_dir.mkdir(parents=True)
    config_file.write_text(train_config_yaml(load_train_config(None, sets)))
    job = _request(tmp_path / "job")
    script = cluster.write_sbatch(job, launch, config_file)
    text = script.read_text()
    assert "export ACCELERATE_USE_CPU=1" in text  # with --multi_gpu: two gloo processes, not one
    assert "--multi_gpu" in text
    assert "#SBATCH --cpus-per-task=2" in text
    try:
        job_id = cluster.submit(script, wait=True)
    except cluster.JobFailed:
        logs = [p.read_text()[-4000:] for p in (tmp_path / "job").glob("slurm-*.out")]
        pytest.fail("the smoke training job failed:\n" + "\n".join(logs))
    log = (tmp_path / "job" / f"slurm-{job_id}.out").read_text()
    assert f"main process on {slurm.node}" in log
    assert (train_dir / "final" / "model.safetensors").is_file()
    metrics = [json.loads(line) for line in (train_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(m["step"] for m in metrics) == 2
    assert any("val_loss" in m for m in metrics)
    manifest = json.loads((train_dir / "manifest.json").read_text())
    assert manifest["accelerate"]["num_processes"] == 2
