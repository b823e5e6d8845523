"""The generated launch scripts, run by bash with stand-ins for the cluster tools they call.

`srun` is replaced by a script that starts the payload once per node with that node's SLURM_NODEID, and
`accelerate` by one that records its argv: what each node would launch, exactly as the shell expands it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gpt4allj_kit import cluster
from gpt4allj_kit.cluster import ClusterRequest
from gpt4allj_kit.config import LaunchConfig, load_profile
from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady, ExitCode

FAKE_SRUN = """#!/usr/bin/env bash
# srun stand-in: drop srun's options, run the command once per node as Slurm would.
while [[ "$1" == --* ]]; do echo "$1" >> "$FAKE_LOG/srun-options"; shift; done
for ((i = 0; i < ${FAKE_NODES:-1}; i++)); do SLURM_NODEID=$i SLURM_PROCID=$i "$@" || exit $?; done
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
[ "$1 $2" = "show hostnames" ] && [ "$3" = "$SLURM_JOB_NODELIST" ] || exit 9
printf 'gpu-node-07\\ngpu-node-08\\n'
"""
FAKE_ACCELERATE = """#!/usr/bin/env python3
import json, os, sys
rank = os.environ.get("SLURM_NODEID", "host")
suffix = sys.argv[-1] if rank == "host" else ""
path = os.path.join(os.environ["FAKE_LOG"], f"accelerate-{rank}-{suffix}.json")
with open(path, "w") as f:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "cpu": os.environ.get("ACCELERATE_USE_CPU")}, f)
"""


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """PATH with the srun/scontrol/accelerate stand-ins first; FAKE_LOG receives what they saw.

    The scripts put the kit's environment first on PATH; here that is the stand-ins' folder, so that no
    real training starts.
    """
    bin_dir, log = tmp_path / "fake-bin", tmp_path / "fake-log"
    bin_dir.mkdir()
    log.mkdir()
    _executable(bin_dir / "srun", FAKE_SRUN)
    _executable(bin_dir / "scontrol", FAKE_SCONTROL)
    _executable(bin_dir / "accelerate", FAKE_ACCELERATE.replace("python3", sys.executable, 1))
    monkeypatch.setattr(cluster, "environment_bin", lambda: bin_dir)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "SLURM_JOB_NODELIST": "gpu-node-[07-08]",
        "SLURM_JOB_NUM_NODES": "2",
    }


def _request(tmp_path: Path, **changes: object) -> ClusterRequest:
    fields: dict[str, object] = {
        "launcher": "slurm",
        "nodes": 2,
        "gpus_per_node": 8,
        "partition": "gpu",
        "container_image": None,
        "hostfile": None,
        "main_process_ip": None,
        "main_process_port": 29500,
        "job_name": "gpt4allj-train",
        "output_dir": tmp_path / "run",
    }
    fields.update(changes)
    return ClusterRequest(**fields)  # type: ignore[arg-type]


def _run(script: str, tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "job.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", str(path), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


RECORD_RANK = (
    "import json, os, sys; "
    "open(os.path.join(os.environ['FAKE_LOG'], f'node-{sys.argv[1]}.json'), 'w')"
    ".write(json.dumps({'rank': sys.argv[1], 'main': sys.argv[2], "
    "'cpu': os.environ.get('ACCELERATE_USE_CPU')}))"
)


def test_two_node_script_gives_each_node_its_rank_and_the_first_node_as_main(
    tmp_path: Path, fake_tools: dict[str, str]
) -> None:
    request = _request(tmp_path)
    payload = [sys.executable, "-c", RECORD_RANK, cluster.NODE_RANK, cluster.MAIN_IP]
    script = cluster.sbatch_script_for(request, payload, environment={"ACCELERATE_USE_CPU": "1"})
    header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert header == [
        "#SBATCH --job-name=gpt4allj-train",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        f"#SBATCH --output={(tmp_path / 'run').resolve()}/slurm-%j.out",
        f"#SBATCH --chdir={cluster.paths.project_root()}",
    ]
    result = _run(script, tmp_path, {**fake_tools, "FAKE_NODES": "2"})
    assert result.returncode == 0, result.stderr
    log = Path(fake_tools["FAKE_LOG"])
    nodes = [json.loads((log / f"node-{rank}.json").read_text()) for rank in (0, 1)]
    assert nodes == [
        {"rank": "0", "main": "gpu-node-07", "cpu": "1"},
        {"rank": "1", "main": "gpu-node-07", "cpu": "1"},
    ]
    options = (log / "srun-options").read_text().split()
    assert options == ["--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]


def test_explicit_main_process_ip_wins_over_the_allocation(
    tmp_path: Path, fake_tools: dict[str, str]
) -> None:
    request = _request(tmp_path, main_process_ip="10.1.2.3")
    payload = [sys.executable, "-c", RECORD_RANK, cluster.NODE_RANK, cluster.MAIN_IP]
    result = _run(cluster.sbatch_script_for(request, payload), tmp_path, {**fake_tools, "FAKE_NODES": "2"})
    assert result.returncode == 0, result.stderr
    node = json.loads((Path(fake_tools["FAKE_LOG"]) / "node-1.json").read_text())
    assert node == {"rank": "1", "main": "10.1.2.3", "cpu": None}


def test_arguments_are_quoted_literally_except_the_two_runtime_placeholders(
    tmp_path: Path, fake_tools: dict[str, str]
) -> None:
    tricky = ["it's", '"quoted"', "$HOME", "`date`", "a b", "$SLURM_NODEID", "${MAIN_PROCESS_IP}"]
    live = [f"--x={cluster.NODE_RANK}/$NOT_EXPANDED", f"{cluster.MAIN_IP}:29500"]
    payload = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *tricky, *live]
    result = _run(cluster.sbatch_script_for(_request(tmp_path, nodes=1), payload), tmp_path, fake_tools)
    assert result.returncode == 0, result.stderr
    # The text of a variable is a literal; only the kit's placeholders expand when the job runs.
    assert json.loads(result.stdout.splitlines()[-1]) == [*tricky, "--x=0/$NOT_EXPANDED", "gpu-node-07:29500"]


def test_pyxis_flags_mount_the_output_dir_and_use_the_image_workdir(
    tmp_path: Path, fake_tools: dict[str, str]
) -> None:
    request = _request(
        tmp_path, container_image="registry.example/gpt4allj-kit:0.1.0", container_mounts=("/data:/data",)
    )
    script = cluster.sbatch_script_for(request, ["true"])
    assert "--chdir" not in script  # the container's workdir holds the kit, not the submit host's cwd
    result = _run(script, tmp_path, {**fake_tools, "FAKE_NODES": "2"})
    assert result.returncode == 0, result.stderr
    out = (tmp_path / "run").resolve()
    options = (Path(fake_tools["FAKE_LOG"]) / "srun-options").read_text().split()
    assert options[-3:] == [
        "--container-image=registry.example/gpt4allj-kit:0.1.0",
        f"--container-mounts={out}:{out},/data:/data",
        f"--container-workdir={cluster.IMAGE_WORKDIR}",
    ]
    assert f"export PATH={cluster.IMAGE_VENV_BIN}:$PATH" in script


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nodes": 0}, "--nodes 0"),
        ({"gpus_per_node": 0}, "--gpus-per-node 0"),
        ({"job_name": "bad name\n#SBATCH --x"}, "job name"),
        ({"partition": "gpu;rm"}, "--partition"),
        ({"main_process_port": 70000}, "port"),
        ({"launcher": "accelerate", "container_image": "img"}, "--container-image needs --launcher slurm"),
        ({"container_mounts": ("/a:/a,/b:/b",)}, "container mount"),
    ],
)
def test_impossible_requests_are_one_line_config_errors(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        cluster.sbatch_script_for(_request(tmp_path, **changes), ["true"])
    assert message in error.value.message
    assert "\n" not in error.value.message


def test_submit_without_sbatch_is_an_environment_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    script = tmp_path / "job.sbatch"
    script.write_text("#!/bin/bash\ntrue\n")
    with pytest.raises(EnvironmentNotReady) as error:
        cluster.submit(script)
    assert error.value.exit_code == ExitCode.ENVIRONMENT
    assert error.value.message.startswith("sbatch not found")


def test_hostfile_hosts_read_one_per_line_with_comments_and_slots(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# cluster\nnode-a slots=8\n\nnode-b  # second\n10.0.0.3\n")
    assert cluster.hostfile_hosts(hostfile) == ["node-a", "node-b", "10.0.0.3"]
    hostfile.write_text("node-a\nnode-a\n")
    with pytest.raises(ConfigError, match="listed twice"):
        cluster.hostfile_hosts(hostfile)
    with pytest.raises(ConfigError, match="no such file"):
        cluster.hostfile_hosts(tmp_path / "missing")


# --- with the training launcher's real accelerate_command -------------------------------------------


@pytest.fixture
def accelerate_command() -> object:
    launch = pytest.importorskip("gpt4allj_kit.train.launch", reason="the training launcher is not there yet")
    return launch.accelerate_command


def _full_launch() -> LaunchConfig:
    return load_profile("full").launch


def _option(argv: list[str], name: str) -> str:
    """The value of `--name=value` or `--name value` in an accelerate argv."""
    for i, token in enumerate(argv):
        if token == name:
            return argv[i + 1]
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    raise AssertionError(f"{name} not in {argv}")


@pytest.mark.usefixtures("accelerate_command")
def test_sbatch_script_launches_accelerate_per_node_with_the_multinode_flags(
    tmp_path: Path, fake_tools: dict[str, str]
) -> None:
    config_file = Path("configs/train/finetune_gptj.yaml")
    train_args = ["--config", str(config_file)]
    script = cluster.sbatch_script(_request(tmp_path), _full_launch(), config_file)
    assert f'export PATH={cluster.environment_bin()}:"$PATH"' in script  # the kit's accelerate
    result = _run(script, tmp_path, {**fake_tools, "FAKE_NODES": "2"})
    assert result.returncode == 0, result.stderr
    log = Path(fake_tools["FAKE_LOG"])
    for rank in (0, 1):
        seen = json.loads((log / f"accelerate-{rank}-.json").read_text())
        argv = seen["argv"]
        assert argv[0] == "launch"
        assert _option(argv, "--num_machines") == "2"
        assert _option(argv, "--num_processes") == "16"
        assert _option(argv, "--machine_rank") == str(rank)
        assert _option(argv, "--main_process_ip") == "gpu-node-07"
        assert _option(argv, "--main_process_port") == "29500"
        assert _option(argv, "--deepspeed_multinode_launcher") == "standard"
        assert _option(argv, "--mixed_precision") == "bf16"
        assert _option(argv, "--deepspeed_config_file") == "configs/deepspeed/ds_config_gptj.json"
        assert "--use_deepspeed" in argv
        assert argv[-3:] == ["train.py", *train_args]
        assert seen["cpu"] is None
        assert Path(seen["cwd"]) == cluster.paths.project_root()


@pytest.mark.usefixtures("accelerate_command")
def test_write_sbatch_writes_the_script_next_to_the_slurm_log(tmp_path: Path) -> None:
    request = _request(tmp_path)
    config_file = tmp_path / "run" / "train_config.yaml"
    path = cluster.write_sbatch(request, _full_launch(), config_file)
    assert path == tmp_path / "run" / "gpt4allj-train.sbatch"
    assert path.read_text() == cluster.sbatch_script(request, _full_launch(), config_file)


@pytest.mark.usefixtures("accelerate_command")
def test_hostfile_script_runs_each_hosts_command_with_its_rank(
    tmp_path: Path, fake_tools: dict[str, str]
) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("alpha\nbeta\ngamma\n")
    request = _request(tmp_path, launcher="accelerate", nodes=1, hostfile=hostfile, partition=None)
    commands = cluster.hostfile_commands(request, _full_launch(), Path("c.yaml"))
    assert [_option(argv, "--machine_rank") for argv in commands] == ["0", "1", "2"]
    assert {_option(argv, "--main_process_ip") for argv in commands} == {"alpha"}
    assert {_option(argv, "--num_processes") for argv in commands} == {"24"}
    path = cluster.write_hostfile_script(request, _full_launch(), Path("c.yaml"))
    env = {k: v for k, v in fake_tools.items() if not k.startswith("SLURM")}
    result = subprocess.run(
        ["bash", str(path), "beta"], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads((Path(fake_tools["FAKE_LOG"]) / "accelerate-host-c.yaml.json").read_text())
    assert seen["argv"] == commands[1][1:]
    unknown = subprocess.run(["bash", str(path), "delta"], env={**os.environ, **env}, capture_output=True)
    assert unknown.returncode == 2


@pytest.mark.usefixtures("accelerate_command")
def test_hostfile_and_nodes_must_agree(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("alpha\nbeta\n")
    request = _request(tmp_path, launcher="accelerate", nodes=3, hostfile=hostfile)
    with pytest.raises(ConfigError, match="lists 2 hosts"):
        cluster.hostfile_commands(request, _full_launch(), Path("c.yaml"))
    with pytest.raises(ConfigError, match="needs --hostfile"):
        cluster.hostfile_commands(_request(tmp_path, launcher="accelerate"), _full_launch(), Path("c.yaml"))


@pytest.mark.usefixtures("accelerate_command")
def test_write_launch_writes_the_resolved_config_the_scripts_launch(tmp_path: Path) -> None:
    from gpt4allj_kit.config import load_train_config
    from gpt4allj_kit.train import launch

    out = tmp_path / "run"
    plan = launch.plan(launch.TrainRequest(profile="full", num_processes=8, sets=[f"output_dir={out}"]))
    written = cluster.write_launch(_request(tmp_path), plan)
    assert written.config_file == out / launch.CONFIG_FILE and written.script == out / "gpt4allj-train.sbatch"
    assert load_train_config(written.config_file) == plan.config
    assert f"train.py --config {written.config_file}" in written.script.read_text()
    hostfile = tmp_path / "hosts"
    hostfile.write_text("alpha\nbeta\n")
    per_host = cluster.write_launch(
        _request(tmp_path, launcher="accelerate", nodes=2, hostfile=hostfile, partition=None), plan
    )
    assert [argv[-3:] for argv in per_host.host_commands] == [
        ["train.py", "--config", str(written.config_file)]
    ] * 2
    with pytest.raises(ConfigError, match="lists 2 hosts"):
        cluster.write_launch(
            _request(tmp_path / "elsewhere", launcher="accelerate", nodes=3, hostfile=hostfile), plan
        )


# --- hostile values: quoted for whoever reads them, or refused before anything is written ---------------

# A directory name a user (or a shared config) can give: spaces, both quotes, command substitutions, a
# comment sign, a Slurm filename symbol and the text of a run-time variable. Each substitution would leave
# a PWNED file behind if it ever ran.
HOSTILE = "run dir 'single' \"double\" $(touch PWNED1) `touch PWNED2` #hash 100%j $SLURM_NODEID"
NEWLINE = "run\n#SBATCH --x\ntouch PWNED3\n"
RECORD_ACCELERATE = """#!/usr/bin/env python3
import json, os, sys
name = "accelerate-" + os.environ.get("SLURM_NODEID", "host") + ".json"
with open(os.path.join(os.environ["FAKE_LOG"], name), "w") as f:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd()}, f)
"""


def _no_payload_ran(*roots: Path) -> None:
    ran = [p for root in roots for p in root.rglob("PWNED*")]
    assert not ran, f"an injected command ran: {ran}"


def _sbatch_directive(script: str, option: str) -> str:
    """The value sbatch reads from `#SBATCH --option=VALUE`: double quotes with \\" inside, no expansion."""
    import shlex

    line = next(line for line in script.splitlines() if line.startswith(f"#SBATCH {option}="))
    words = shlex.split(line.split("=", 1)[1], comments=True)
    assert len(words) == 1, line
    return words[0]


@pytest.fixture
def hostile_plan(tmp_path: Path, fake_tools: dict[str, str]) -> Any:
    """A full-profile plan whose output dir is HOSTILE, with the recording accelerate first on PATH."""
    from gpt4allj_kit.train import launch

    _executable(Path(fake_tools["PATH"].split(os.pathsep)[0]) / "accelerate", RECORD_ACCELERATE)
    out = tmp_path / HOSTILE
    return launch.plan(
        launch.TrainRequest(profile="full", num_processes=8, overrides={"output_dir": str(out)})
    )


@pytest.fixture
def hostile_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / f"kit {HOSTILE}"
    root.mkdir()
    monkeypatch.setenv(cluster.paths.ROOT_ENV, str(root))
    return root


@pytest.mark.usefixtures("accelerate_command")
def test_a_hostile_output_dir_reaches_every_node_exactly_through_sbatch(
    tmp_path: Path, fake_tools: dict[str, str], hostile_plan: Any, hostile_root: Path
) -> None:
    written = cluster.write_launch(_request(tmp_path, output_dir=hostile_plan.output_dir), hostile_plan)
    out = hostile_plan.output_dir
    assert written.script == out / "gpt4allj-train.sbatch" and written.config_file.is_file()
    script = written.script.read_text()
    # What sbatch itself reads ('%%' is its literal '%'), checked for real on Slurm in test_slurm.py.
    assert _sbatch_directive(script, "--output") == str(out.resolve()).replace("%", "%%") + "/slurm-%j.out"
    assert _sbatch_directive(script, "--chdir") == str(hostile_root)
    result = subprocess.run(
        ["bash", str(written.script)],
        env={**os.environ, **fake_tools, "FAKE_NODES": "2"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    log = Path(fake_tools["FAKE_LOG"])
    for rank in ("0", "1"):
        argv = json.loads((log / f"accelerate-{rank}.json").read_text())["argv"]
        assert argv[-2:] == ["--config", str(written.config_file)]
        assert _option(argv, "--machine_rank") == rank
    _no_payload_ran(tmp_path, cluster.paths.project_root())


@pytest.mark.usefixtures("accelerate_command")
def test_a_hostile_hostfile_path_and_kit_dir_reach_the_host_exactly(
    tmp_path: Path, fake_tools: dict[str, str], hostile_plan: Any, hostile_root: Path
) -> None:
    hostfile = tmp_path / f"hosts {HOSTILE}"
    hostfile.write_text("alpha\nbeta\n")
    request = _request(
        tmp_path, launcher="accelerate", nodes=2, hostfile=hostfile, partition=None,
        output_dir=hostile_plan.output_dir,
    )  # fmt: skip
    written = cluster.write_launch(request, hostile_plan)
    env = {**os.environ, **{k: v for k, v in fake_tools.items() if not k.startswith("SLURM")}}
    run = subprocess.run(
        ["bash", str(written.script), "beta"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads((Path(fake_tools["FAKE_LOG"]) / "accelerate-host.json").read_text())
    assert seen["argv"][-2:] == ["--config", str(written.config_file)] and seen["cwd"] == str(hostile_root)
    usage = subprocess.run(
        ["bash", str(written.script)], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert usage.returncode == 2 and "one of: alpha beta" in usage.stderr
    _no_payload_ran(tmp_path, cluster.paths.project_root())


def test_a_hostile_container_image_reaches_srun_exactly(tmp_path: Path, fake_tools: dict[str, str]) -> None:
    image = "registry.example/kit:1'\"$(touch${IFS}PWNED1)`touch${IFS}PWNED2`"  # no whitespace: allowed
    out = tmp_path / "run 'a' \"b\" $(touch PWNED3)"
    request = _request(tmp_path, container_image=image, output_dir=out)
    result = _run(cluster.sbatch_script_for(request, ["true"]), tmp_path, {**fake_tools, "FAKE_NODES": "1"})
    assert result.returncode == 0, result.stderr
    options = (Path(fake_tools["FAKE_LOG"]) / "srun-options").read_text().splitlines()
    resolved = out.resolve()
    assert options[-3:-1] == [f"--container-image={image}", f"--container-mounts={resolved}:{resolved}"]
    _no_payload_ran(tmp_path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"output_dir": NEWLINE}, ("output_dir '", "run\\n#SBATCH --x\\ntouch PWNED3\\n': contains a line")),
        ({"output_dir": NEWLINE, "launcher": "accelerate"}, ("output_dir '", "run\\n#SBATCH")),
        ({"output_dir": "run\0x"}, "line break or NUL"),
        ({"output_dir": "back\\slash"}, "backslash, which an #SBATCH line cannot hold"),
        ({"hostfile": NEWLINE, "launcher": "accelerate"}, ("--hostfile '", "run\\n#SBATCH")),
        ({"output_dir": "a,b", "container_image": "img"}, "--container-mounts cannot hold"),
        ({"output_dir": "a:b", "container_image": "img"}, "--container-mounts cannot hold"),
        *(({"job_name": f"job {HOSTILE}"[:n]}, "job name") for n in (5, 12, 25, 40, 55)),
        ({"job_name": "job\ntouch PWNED"}, "job name"),
        *(({"partition": f"gpu{c}x"}, "--partition") for c in (" ", "'", '"', "$(", "`", "\n")),
        ({"container_image": "img\ntouch PWNED"}, "--container-image"),
        ({"container_image": "img touch"}, "--container-image"),
    ],
)
def test_values_no_script_can_hold_are_refused_before_anything_is_written(
    tmp_path: Path, changes: dict[str, object], message: str | tuple[str, ...]
) -> None:
    from gpt4allj_kit.train import launch

    changes = {"output_dir": "run", **changes}
    out = tmp_path / str(changes.pop("output_dir"))
    if isinstance(changes.get("hostfile"), str):
        changes["hostfile"] = tmp_path / str(changes["hostfile"])
    plan = launch.plan(
        launch.TrainRequest(profile="full", num_processes=8, overrides={"output_dir": str(out)})
    )
    request = _request(tmp_path, output_dir=plan.output_dir, **changes)
    with pytest.raises(ConfigError) as error:
        cluster.write_launch(request, plan)
    fragments = (message,) if isinstance(message, str) else message
    assert all(f in error.value.message for f in fragments), error.value.message
    assert "\n" not in error.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing is written"


def test_a_kit_dir_sbatch_cannot_hold_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpt4allj_kit.train import launch

    plan = launch.plan(
        launch.TrainRequest(profile="full", num_processes=8, overrides={"output_dir": str(tmp_path / "run")})
    )
    monkeypatch.setenv(cluster.paths.ROOT_ENV, str(tmp_path / "kit\ntouch PWNED"))
    with pytest.raises(ConfigError, match=r"the kit directory '.*kit\\ntouch PWNED'"):
        cluster.write_launch(_request(tmp_path, output_dir=plan.output_dir), plan)
    assert not list(tmp_path.iterdir())


def test_train_on_slurm_from_the_cli_quotes_the_output_dir_and_refuses_a_newline(
    tmp_path: Path, kit_cli: Any
) -> None:
    out = tmp_path / "out dir 'q' $(touch PWNED1)"
    done = kit_cli(
        "train", "--launcher", "slurm", "--nodes", "2", "--gpus-per-node", "8", "--set", f"output_dir={out}"
    )
    assert done.returncode == 0, done.stderr
    script = (out / "gpt4allj-full.sbatch").read_text()
    assert _sbatch_directive(script, "--output") == f"{out}/slurm-%j.out"
    import yaml

    config = yaml.safe_load((cluster.paths.project_root() / "configs/train/finetune_gptj.yaml").read_text())
    config["output_dir"] = str(tmp_path / NEWLINE)
    shared = tmp_path / "shared.yaml"
    shared.write_text(yaml.safe_dump(config))
    refused = kit_cli(
        "train", "--launcher", "slurm", "--nodes", "2", "--gpus-per-node", "8", "--config", shared
    )
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and "output_dir" in line and "line break" in line, refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out dir 'q' $(touch PWNED1)", "shared.yaml"]
    _no_payload_ran(tmp_path)


def test_a_cluster_job_into_an_earlier_training_is_refused_or_moves_it_aside(
    tmp_path: Path, kit_cli: Any
) -> None:
    """A job written into an earlier run's output dir would append to its metrics and overwrite its
    states, as a local launch would: the same refusal, and the same --force-new."""
    out = tmp_path / "run"
    (out / "step_2").mkdir(parents=True)
    (out / "step_2" / "trainer_state.json").write_text('{"step": 2, "epoch": 0, "batches_done": 2}')
    (out / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    args = ("train", "--launcher", "slurm", "--gpus-per-node", "8", "--set", f"output_dir={out}")
    refused = kit_cli(*args)
    assert refused.returncode == 2, refused.stderr
    assert "--resume latest" in refused.stderr and "--force-new" in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "step_2"]
    moved = kit_cli(*args, "--force-new")
    assert moved.returncode == 0, moved.stderr
    aside = tmp_path / "run.previous-1"
    assert sorted(p.name for p in aside.iterdir()) == ["metrics.jsonl", "step_2"]
    assert (out / "gpt4allj-full.sbatch").is_file() and not (out / "metrics.jsonl").exists()
