"""A real Slurm (munge + slurmctld + two slurmd) on this machine, started once per test session.

Partition `debug` is this host's node (`hostname -s`); partition `pair` adds a second node served by a
second slurmd on another port of the same host, so a two-node job runs for real. Everything lives in a
temp dir: its own munge key and socket, its own slurm.conf on free ports, so it neither needs nor touches
a system Slurm. Without the binaries the tests skip, except in CI (CI=true),
where scripts/ci-system-deps.sh installs them and a skip would hide a broken cluster path.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo")


@dataclass(frozen=True)
class SlurmCluster:
    conf: Path
    node: str
    second_node: str
    cpus: int
    env: dict[str, str]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start_munge(base: Path) -> tuple[Path, Path]:
    """munged on its own key and socket; returns (socket, pid file)."""
    key = base / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock, pid = base / "munge.socket", base / "munged.pid"
    # --force: this temp dir is not the hardened /run/munge layout munged prefers.
    subprocess.run(
        ["munged", "--force", f"--key-file={key}", f"--socket={sock}", f"--pid-file={pid}",
         f"--log-file={base / 'munged.log'}", f"--seed-file={base / 'munged.seed'}"],
        check=True, timeout=30, capture_output=True,
    )  # fmt: skip
    return sock, pid


def _slurm_conf(base: Path, nodes: tuple[str, str], cpus: int, munge_socket: Path) -> Path:
    ctld_port, port_a, port_b = _free_ports(3)
    node, second = nodes
    memory_mb = int(psutil.virtual_memory().total / 2**20 * 0.8)
    conf = base / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=kittest",
                f"SlurmctldHost={node}",
                f"SlurmctldPort={ctld_port}",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={munge_socket}",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"StateSaveLocation={base / 'state'}",
                f"SlurmdSpoolDir={base / 'spool.%n'}",
                f"SlurmctldPidFile={base / 'slurmctld.pid'}",
                f"SlurmdPidFile={base / 'slurmd.%n.pid'}",
                f"SlurmctldLogFile={base / 'slurmctld.log'}",
                f"SlurmdLogFile={base / 'slurmd.%n.log'}",
                "ProctrackType=proctrack/pgid",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "SchedulerType=sched/backfill",
                "ReturnToService=2",
                # `sbatch --wait` polls after 2 s, then 4x longer while that stays under MinJobAge/2: the
                # default (300) makes a 3-second job wait 10 s; 4 keeps the poll at 2 s.
                "MinJobAge=4",
                "MpiDefault=none",
                "JobAcctGatherType=jobacct_gather/none",
                "SlurmdTimeout=30",
                "InactiveLimit=0",
                "KillWait=5",
                f"NodeName={node} NodeAddr=127.0.0.1 Port={port_a} CPUs={cpus} RealMemory={memory_mb}",
                f"NodeName={second} NodeHostname={node} NodeAddr=127.0.0.1 Port={port_b} CPUs={cpus} "
                f"RealMemory={memory_mb}",
                f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
                f"PartitionName=pair Nodes={node},{second} MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    for sub in ("state", f"spool.{node}", f"spool.{second}"):
        (base / sub).mkdir()
    return conf


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and psutil.pid_exists(pid):
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.2)
    if psutil.pid_exists(pid):
        os.kill(pid, signal.SIGKILL)


def _wait_idle(env: dict[str, str], nodes: tuple[str, str], base: Path) -> None:
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        result = subprocess.run(
            ["sinfo", "-h", "-N", "-n", ",".join(nodes), "-o", "%N %T"],
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
        )
        state = " ".join(sorted(set(result.stdout.split())))
        if sorted(set(result.stdout.split())) == sorted([*nodes, "idle"]):
            return
        time.sleep(0.5)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted(base.glob("slurm*.log")))
    raise RuntimeError(f"slurm nodes {nodes} not idle after 60 s ({state!r}):\n{logs}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        message = f"Slurm/munge binaries missing ({', '.join(missing)}): run scripts/ci-system-deps.sh"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    if os.geteuid() != 0 and not _in_ci():
        pytest.skip("the one-node Slurm runs its daemons as root")
    base = tmp_path_factory.mktemp("slurm")
    base.chmod(0o755)
    node = socket.gethostname().split(".")[0]
    nodes = (node, f"{node}-b")
    cpus = os.cpu_count() or 1
    munge_socket, munge_pid = _start_munge(base)
    conf = _slurm_conf(base, nodes, cpus, munge_socket)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True, timeout=30, capture_output=True)
        for name in nodes:
            subprocess.run(
                ["slurmd", "-f", str(conf), "-N", name], env=env, check=True, timeout=30, capture_output=True
            )
        _wait_idle(env, nodes, base)
        yield SlurmCluster(conf=conf, node=node, second_node=nodes[1], cpus=cpus, env=env)
    finally:
        for name in nodes:
            _stop(base / f"slurmd.{name}.pid")
        _stop(base / "slurmctld.pid")
        _stop(munge_pid)
