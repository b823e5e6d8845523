"""Multi-node training on an existing cluster: a Slurm sbatch script, or per-host commands from a hostfile.

Both run one `accelerate launch ... train.py --config FILE` per node (the documented flags, plus
`--num_machines`, `--machine_rank` and `--main_process_ip`), FILE being the run's resolved config, written
into its output dir beside the script; accelerate starts that node's processes. On Slurm the node rank is
the task's `$SLURM_NODEID` and the main node is the first of `scontrol show hostnames`, both resolved when
the job runs, so one script serves any allocation. Tokens are never written: srun passes the submitting
environment (HF_TOKEN, WANDB_API_KEY) through to every task.

Every value written into a script is quoted for whoever reads it: shell words with the shell's rules
(`shell_word`), `#SBATCH` values with sbatch's own (`sbatch_value`). A value no script line can carry (a
line break, a NUL) or that sbatch cannot represent (a backslash) is a one-line ConfigError before anything is
written.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gpt4allj_kit import __version__, paths
from gpt4allj_kit.config import LaunchConfig
from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady
from gpt4allj_kit.files import atomic_write_text, disk_errors, read_text
from gpt4allj_kit.redaction import refuse_secrets

if TYPE_CHECKING:
    from gpt4allj_kit.train.launch import LaunchPlan

# The image's layout (Dockerfile): where the kit and its virtualenv live inside the container.
IMAGE_WORKDIR = "/opt/gpt4allj-kit"
IMAGE_VENV_BIN = "/opt/venv/bin"

MAIN_IP_VARIABLE = "MAIN_PROCESS_IP"


def runtime_value(variable: str) -> str:
    """A placeholder, in a generated command's argv, for a shell variable expanded when the job runs.

    Marked by NULs, which no value a user gives can hold (`one_line` refuses them): a path that contains the
    text `$SLURM_NODEID` stays that text, and only the kit's own placeholders become live.
    """
    return f"\0{variable}\0"


NODE_RANK = runtime_value("SLURM_NODEID")  # the task's node rank
MAIN_IP = runtime_value(MAIN_IP_VARIABLE)  # the main node's address, set by the script
_RUNTIME_VARIABLE = re.compile(r"\0(SLURM_NODEID|MAIN_PROCESS_IP)\0")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PARTITION = re.compile(r"^[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*$")
_NO_SPACE = re.compile(r"^\S+$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:%-]*$")  # a name, IPv4 or IPv6 address (zone included)
# What an #SBATCH value may hold without quotes; anything else is double-quoted.
_SBATCH_PLAIN = re.compile(r"^[A-Za-z0-9@%+=:,./_-]+$")


@dataclass
class ClusterRequest:
    """What the `train --launcher slurm|accelerate` options ask for."""

    launcher: Literal["slurm", "accelerate"]
    nodes: int
    gpus_per_node: int
    partition: str | None
    container_image: str | None
    hostfile: Path | None
    main_process_ip: str | None
    main_process_port: int
    job_name: str
    output_dir: Path
    cpu: bool = False
    # pyxis/enroot: extra "SRC:DST" mounts (the output dir is always mounted) and the container's cwd.
    container_mounts: tuple[str, ...] = ()
    container_workdir: str = IMAGE_WORKDIR
    # Slurm gives each task one CPU unless told; data loading and tokenization want more.
    cpus_per_task: int | None = None


def one_line(what: str, value: str) -> str:
    """`value`, or a ConfigError when it holds a line break or NUL: no script line (a comment, an `#SBATCH`
    directive) can carry one, and a line break there starts a new shell line."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise ConfigError(
            f"{what} {value!r}: contains a line break or NUL, which a launch script cannot hold"
        )
    return value


def sbatch_value(what: str, value: str) -> str:
    """`value` as an `#SBATCH --option=` value. sbatch (not the shell) reads these lines: it takes a value in
    double quotes with `\\"` inside (no expansion at all; an unquoted `#` or space would end the value), and
    has no way to write a backslash."""
    one_line(what, value)
    if "\\" in value:
        raise ConfigError(f"{what} {value!r}: contains a backslash, which an #SBATCH line cannot hold")
    return value if _SBATCH_PLAIN.match(value) else '"' + value.replace('"', '\\"') + '"'


def _validated(request: ClusterRequest) -> ClusterRequest:
    """`request` unchanged, or a one-line ConfigError for the first option that cannot work."""
    one_line("output_dir", str(request.output_dir))
    if request.hostfile is not None:
        one_line("--hostfile", str(request.hostfile))
    if request.launcher == "slurm":
        sbatch_value("output_dir", str(request.output_dir))
    if request.nodes < 1:
        raise ConfigError(f"--nodes {request.nodes}: need at least 1 node")
    if request.gpus_per_node < (0 if request.cpu else 1):
        raise ConfigError(f"--gpus-per-node {request.gpus_per_node}: need at least 1 GPU per node (or --cpu)")
    if not 0 < request.main_process_port < 65536:
        raise ConfigError(f"main process port {request.main_process_port}: not a TCP port")
    if not _NAME.match(request.job_name):
        raise ConfigError(f"job name {request.job_name!r}: use letters, digits, '.', '_' and '-' only")
    if request.partition is not None and not _PARTITION.match(request.partition):
        raise ConfigError(f"--partition {request.partition!r}: not a Slurm partition name")
    if request.container_image is not None:
        if request.launcher != "slurm":
            raise ConfigError("--container-image needs --launcher slurm (it runs through pyxis/enroot)")
        if not _NO_SPACE.match(request.container_image):
            raise ConfigError(f"--container-image {request.container_image!r}: contains whitespace")
        if re.search(r"[,:]", str(request.output_dir)):
            # pyxis reads --container-mounts as SRC:DST[,SRC:DST]: the output dir is one of them.
            raise ConfigError(
                f"output_dir {str(request.output_dir)!r}: contains ',' or ':', which --container-mounts "
                "cannot hold (use another output dir with --container-image)"
            )
    if not _NO_SPACE.match(request.container_workdir):
        raise ConfigError(f"container workdir {request.container_workdir!r}: contains whitespace")
    for mount in request.container_mounts:
        if not _NO_SPACE.match(mount) or "," in mount:
            raise ConfigError(f"container mount {mount!r}: expected SRC:DST without spaces or commas")
    if request.main_process_ip is not None and not _NO_SPACE.match(request.main_process_ip):
        raise ConfigError(f"--main-process-ip {request.main_process_ip!r}: contains whitespace")
    if request.cpus_per_task is not None and request.cpus_per_task < 1:
        raise ConfigError(f"cpus per task {request.cpus_per_task}: need at least 1")
    return request


def _is_cpu(request: ClusterRequest, launch: LaunchConfig) -> bool:
    return request.cpu or launch.cpu


def processes_per_node(request: ClusterRequest, launch: LaunchConfig) -> int:
    """GPUs per node; on CPU the launch config's process count (accelerate needs a number there)."""
    if not _is_cpu(request, launch):
        return request.gpus_per_node
    return launch.num_processes if isinstance(launch.num_processes, int) else 1


def _node_launch(request: ClusterRequest, launch: LaunchConfig) -> LaunchConfig:
    return launch.model_copy(update={"num_machines": request.nodes, "cpu": _is_cpu(request, launch)})


def node_command(
    request: ClusterRequest,
    launch: LaunchConfig,
    config_file: Path,
    *,
    machine_rank: int | str,
    main_process_ip: str,
) -> list[str]:
    """The `accelerate launch ... train.py --config FILE` argv one node runs; `--num_processes` counts all
    nodes. `config_file` must be where every node can read it (the output dir, shared or mounted)."""
    from gpt4allj_kit.train.launch import accelerate_command

    # accelerate's --num_processes is the total over all machines; it starts its share on each.
    return accelerate_command(
        _node_launch(request, launch),
        ["--config", str(config_file)],
        num_processes=request.nodes * processes_per_node(request, launch),
        num_machines=request.nodes,
        machine_rank=machine_rank,
        main_process_ip=main_process_ip,
        main_process_port=request.main_process_port,
    )


def launch_environment(request: ClusterRequest, launch: LaunchConfig) -> dict[str, str]:
    """Variables every node's launch needs besides the submitting environment (the training launcher's)."""
    from gpt4allj_kit.train.launch import launch_env

    return launch_env(_node_launch(request, launch))


def _double_quoted(text: str) -> str:
    return re.sub(r'([\\"$`])', r"\\\1", text)


def shell_word(token: str) -> str:
    """`token` quoted for bash; only the `NODE_RANK` and `MAIN_IP` placeholders become live variables."""
    if not _RUNTIME_VARIABLE.search(token):
        return shlex.quote(token)
    parts: list[str] = []
    position = 0
    for match in _RUNTIME_VARIABLE.finditer(token):
        parts.append(_double_quoted(token[position : match.start()]))
        parts.append("${" + match.group(1) + "}")
        position = match.end()
    parts.append(_double_quoted(token[position:]))
    return '"' + "".join(parts) + '"'


def shell_command(argv: list[str]) -> str:
    return " ".join(shell_word(token) for token in argv)


def environment_bin() -> Path:
    """This Python environment's bin/ (accelerate, the kit), which the nodes must see at the same path."""
    return Path(sys.executable).parent


def _environment_path_line() -> str:
    return f'export PATH={shlex.quote(one_line("the environment", str(environment_bin())))}:"$PATH"'


def _container_mounts(request: ClusterRequest) -> list[str]:
    output = str(request.output_dir.resolve())
    mounts = [f"{output}:{output}"]
    return mounts + [m for m in request.container_mounts if m not in mounts]


def _srun_argv(request: ClusterRequest, cpus_per_task: int | None) -> list[str]:
    argv = ["srun", f"--nodes={request.nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    if cpus_per_task is not None:
        argv.append(f"--cpus-per-task={cpus_per_task}")
    if request.container_image is not None:
        argv += [
            f"--container-image={request.container_image}",
            f"--container-mounts={','.join(_container_mounts(request))}",
            f"--container-workdir={request.container_workdir}",
        ]
    return argv


def _sbatch_header(request: ClusterRequest, cpus_per_task: int | None, cpu: bool) -> list[str]:
    output_dir = request.output_dir.resolve()
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={request.job_name}",
        f"#SBATCH --nodes={request.nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if not cpu:
        lines.append(f"#SBATCH --gpus-per-node={request.gpus_per_node}")
    if cpus_per_task is not None:
        lines.append(f"#SBATCH --cpus-per-task={cpus_per_task}")
    if request.partition:
        lines.append(f"#SBATCH --partition={request.partition}")
    # In --output a '%' starts a replacement symbol (%j: the job id); '%%' is a literal one.
    log = str(output_dir).replace("%", "%%") + "/slurm-%j.out"
    lines.append(f"#SBATCH --output={sbatch_value('output_dir', log)}")
    if request.container_image is None:
        # Outside a container the kit's checkout is the working directory: train.py and configs/ are there.
        lines.append(f"#SBATCH --chdir={sbatch_value('the kit directory', str(paths.project_root()))}")
    return lines


def sbatch_script_for(
    request: ClusterRequest, node_argv: list[str], *, environment: dict[str, str] | None = None
) -> str:
    """An sbatch script running `node_argv` once per node through srun.

    `node_argv` may hold the placeholders `NODE_RANK` (the task's node rank) and `MAIN_IP` (the first node of
    the allocation, or the requested main process IP); both are expanded on each node, nothing else is.
    """
    request = _validated(request)
    cpu = request.cpu or request.gpus_per_node == 0
    cpus_per_task = request.cpus_per_task
    main_ip = (
        shlex.quote(request.main_process_ip)
        if request.main_process_ip
        # awk reads the whole list: `head` would close the pipe early, a failure under pipefail (SIGPIPE)
        else "$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | awk 'NR == 1')"
    )
    payload = "exec " + shell_command(node_argv)
    if request.container_image is not None:
        # pyxis hands the job's PATH to the container; the image's virtualenv must come first.
        workdir = shlex.quote(request.container_workdir)
        payload = f"export PATH={IMAGE_VENV_BIN}:$PATH GPT4ALLJ_KIT_ROOT={workdir}; {payload}"
    lines = [
        *_sbatch_header(request, cpus_per_task, cpu),
        f"# Generated by gpt4allj-kit {__version__}. Submit: sbatch {request.job_name}.sbatch",
        "# HF_TOKEN / WANDB_API_KEY reach every task from the submitting shell; they are never written here.",
        "set -euo pipefail",
        *([_environment_path_line()] if request.container_image is None else []),
        f"{MAIN_IP_VARIABLE}={main_ip}",
        f"export {MAIN_IP_VARIABLE}",
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in (environment or {}).items()]
    lines += [
        f'echo "gpt4allj-kit: $SLURM_JOB_NUM_NODES node(s), main process on ${MAIN_IP_VARIABLE}"',
        "# One task per node; each runs the launcher for its node, with its own $SLURM_NODEID as rank.",
        f"{shell_command(_srun_argv(request, cpus_per_task))} \\",
        f"  bash -c {shlex.quote(payload)}",
    ]
    return "\n".join(lines) + "\n"


def sbatch_script(request: ClusterRequest, launch: LaunchConfig, config_file: Path) -> str:
    """The sbatch script for a multi-node training run of `train.py --config <config_file>`."""
    request = _validated(request)
    if _is_cpu(request, launch):
        cpus = request.cpus_per_task or processes_per_node(request, launch)
        request = replace(request, cpu=True, cpus_per_task=cpus)
    argv = node_command(request, launch, config_file, machine_rank=NODE_RANK, main_process_ip=MAIN_IP)
    return sbatch_script_for(request, argv, environment=launch_environment(request, launch))


def sbatch_path(request: ClusterRequest) -> Path:
    return request.output_dir / f"{request.job_name}.sbatch"


def _write_script(path: Path, text: str) -> Path:
    refuse_secrets(text, str(path))  # a script runs as written: never masked, never holding a secret
    with disk_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        path.chmod(0o755)
    return path


def write_sbatch(request: ClusterRequest, launch: LaunchConfig, config_file: Path) -> Path:
    """The sbatch script written to `<output_dir>/<job_name>.sbatch` (the dir also takes Slurm's log)."""
    return _write_script(sbatch_path(request), sbatch_script(request, launch, config_file))


class JobFailed(EnvironmentNotReady):
    """A submitted job that ran and failed (known only when waiting for it)."""


def submit(script: Path, *, wait: bool = False) -> str:
    """The Slurm job id of `script` once `sbatch` accepted it; with `wait`, once the job has ended well."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise EnvironmentNotReady(
            "sbatch not found: submit from a Slurm login node, or run the script there (it was written)"
        )
    if not script.is_file():
        raise ConfigError(f"{script}: no such sbatch script")
    argv = [sbatch, "--parsable", *(["--wait"] if wait else []), str(script)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    job_id = result.stdout.strip().split(";")[0].splitlines()[0] if result.stdout.strip() else ""
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        if job_id:
            raise JobFailed(f"Slurm job {job_id} failed: {detail} (log in the script's --output)")
        raise EnvironmentNotReady(f"sbatch {script.name} failed: {detail}")
    if not job_id.isdigit():
        raise EnvironmentNotReady(f"sbatch {script.name}: unexpected answer {result.stdout.strip()!r}")
    return job_id


def hostfile_hosts(path: Path) -> list[str]:
    """Host names or IPs, one per line (first is the main host); `#` comments and `slots=` are ignored."""
    text = read_text(path, f"--hostfile {path}")
    numbered = [
        (number, line.split("#", 1)[0].split()[0])
        for number, line in enumerate(text.splitlines(), 1)
        if line.split("#", 1)[0].strip()
    ]
    for number, host in numbered:
        if not _HOST.match(host):
            raise ConfigError(f"--hostfile {path} line {number}: {host!r} is not a host name or address")
    hosts = [host for _, host in numbered]
    if not hosts:
        raise ConfigError(f"--hostfile {path}: lists no host")
    duplicates = sorted({h for h in hosts if hosts.count(h) > 1})
    if duplicates:
        raise ConfigError(f"--hostfile {path}: host {duplicates[0]} is listed twice")
    return hosts


def _hosts(request: ClusterRequest) -> list[str]:
    if request.hostfile is None:
        raise ConfigError("--launcher accelerate needs --hostfile (one host per line, the first is main)")
    hosts = hostfile_hosts(request.hostfile)
    if request.nodes not in (1, len(hosts)):
        raise ConfigError(
            f"--nodes {request.nodes} but --hostfile {request.hostfile} lists {len(hosts)} hosts"
        )
    return hosts


def hostfile_commands(request: ClusterRequest, launch: LaunchConfig, config_file: Path) -> list[list[str]]:
    """One `accelerate launch` argv per host of the hostfile, in its order (machine rank = line)."""
    request = _validated(request)
    hosts = _hosts(request)
    request = replace(request, nodes=len(hosts))
    main_ip = request.main_process_ip or hosts[0]
    return [
        node_command(request, launch, config_file, machine_rank=rank, main_process_ip=main_ip)
        for rank in range(len(hosts))
    ]


def hostfile_script(request: ClusterRequest, launch: LaunchConfig, config_file: Path) -> str:
    """A bash script that, started on each host with that host's name, runs the host's launch."""
    hosts = _hosts(_validated(request))
    commands = hostfile_commands(request, launch, config_file)
    environment = launch_environment(request, launch)
    name = f"{request.job_name}.sh"
    root = shlex.quote(one_line("the kit directory", str(paths.project_root())))
    # The remote command of the example, double-quoted for the local shell: only $h stays live.
    remote = '"' + _double_quoted(f"cd {root} && bash {shlex.quote(name)} ") + '$h"'
    listed = shlex.quote(" ".join(hosts))
    lines = [
        "#!/usr/bin/env bash",
        f"# Generated by gpt4allj-kit {__version__}: {len(hosts)} hosts from {request.hostfile}, "
        f"main process on {request.main_process_ip or hosts[0]}.",
        "# Start it on every host (all at once), in the kit's directory, with that host's name, e.g.:",
        f'#   for h in {" ".join(hosts)}; do ssh "$h" {remote} & done; wait',
        "set -euo pipefail",
        f"cd {root}",
        _environment_path_line(),
        *(f"export {key}={shlex.quote(value)}" for key, value in environment.items()),
        f'[ "$#" -ge 1 ] || {{ printf \'usage: %s HOST (one of: %s)\\n\' "$0" {listed} >&2; exit 2; }}',
        'case "$1" in',
    ]
    for host, argv in zip(hosts, commands, strict=True):
        lines.append(f"  {shlex.quote(host)}) exec {shell_command(argv)} ;;")
    lines += ["  *) echo \"$0: host '$1' is not in the hostfile\" >&2; exit 2 ;;", "esac"]
    return "\n".join(lines) + "\n"


def hostfile_script_path(request: ClusterRequest) -> Path:
    return request.output_dir / f"{request.job_name}.sh"


def write_hostfile_script(request: ClusterRequest, launch: LaunchConfig, config_file: Path) -> Path:
    """The per-host launch script written to `<output_dir>/<job_name>.sh`."""
    return _write_script(hostfile_script_path(request), hostfile_script(request, launch, config_file))


@dataclass(frozen=True)
class ClusterLaunch:
    """What `write_launch` wrote: the resolved config, the script, and each host's command (hostfile)."""

    config_file: Path
    script: Path
    host_commands: list[list[str]]


def write_launch(request: ClusterRequest, plan: LaunchPlan) -> ClusterLaunch:
    """The planned run's resolved config and its sbatch (`slurm`) or per-host (`accelerate`) script."""
    from gpt4allj_kit.train.launch import write_config

    request = _validated(request)
    slurm = request.launcher == "slurm"
    commands = [] if slurm else hostfile_commands(request, plan.launch, plan.config_file)
    # The script first: a request, hostfile or value it cannot hold stops before anything is written.
    script = (sbatch_script if slurm else hostfile_script)(request, plan.launch, plan.config_file)
    config_file = write_config(plan)
    path = _write_script(sbatch_path(request) if slurm else hostfile_script_path(request), script)
    return ClusterLaunch(config_file, path, commands)
