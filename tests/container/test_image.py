"""The built image, run as a user runs it: podman, the image's non-root user, no GPU, no network needed.

These tests need a built image named by GPT4ALLJ_KIT_TEST_IMAGE; `docker/ci-build.sh` builds one from the
Dockerfile and runs this module against it (CI runs that script). Without it every test here is skipped
with that reason. What needs a GPU (CUDA, NCCL, DeepSpeed's FusedAdam JIT build) is not tested here.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from gpt4allj_kit import __version__, cluster, paths
from gpt4allj_kit.files import sha256_file

IMAGE = os.environ.get("GPT4ALLJ_KIT_TEST_IMAGE", "")
PODMAN = shutil.which("podman") or "podman"
ROOT = paths.project_root()
KIT_UID = 1000
OUTPUTS = f"{cluster.IMAGE_WORKDIR}/outputs"
# Tokens given at run time, shaped like real ones; random per session so that a hit can only be a leak.
HF_CANARY = "hf_" + secrets.token_hex(17)
WANDB_CANARY = secrets.token_hex(20)
DOCUMENTED = (
    "accelerate launch --dynamo_backend=inductor --num_processes=8 --num_machines=1 --machine_rank=0 "
    "--deepspeed_multinode_launcher standard --mixed_precision=bf16 --use_deepspeed "
    "--deepspeed_config_file=configs/deepspeed/ds_config_gptj.json train.py "
    "--config configs/train/finetune_gptj.yaml"
)
# This machine's own tokens, read at import: the session's isolated environment drops them before tests run.
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
HOST_TOKENS = [os.environ[name] for name in TOKEN_VARIABLES if os.environ.get(name)]
# Where a token would be stored on disk by the hub client, git, or a careless build step.
TOKEN_FILES = (".huggingface/token", "huggingface/token", "huggingface/stored_tokens", ".netrc", ".env")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not IMAGE, reason="set GPT4ALLJ_KIT_TEST_IMAGE to a built image (docker/ci-build.sh)"),
]


# Rootful podman lowers its own process limit to this before it starts a container (seen with podman 4.3).
PODMAN_NPROC = 32768


def _ulimits() -> list[str]:
    """Limits no higher than podman's own: runc cannot raise them, and podman's defaults ask for more."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = PODMAN_NPROC if nproc == resource.RLIM_INFINITY else min(nproc, PODMAN_NPROC)
    args = ["--ulimit", f"nproc={nproc}:{nproc}"]
    if nofile != resource.RLIM_INFINITY:
        args += ["--ulimit", f"nofile={nofile}:{nofile}"]
    return args


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)


def run_image(
    *args: str, options: tuple[str, ...] = (), timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`podman run --rm IMAGE ARGS` as the image's own user (no --user override)."""
    return podman("run", "--rm", *_ulimits(), *options, IMAGE, *args, timeout=timeout)


def _clean(result: subprocess.CompletedProcess[str]) -> str:
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text[-4000:]
    return text


@dataclass
class Smoke:
    outputs: Path
    cache: Path
    result: subprocess.CompletedProcess[str]

    @property
    def run_dir(self) -> Path:
        return self.outputs / "reproduce" / "smoke-v1.2-jazzy"

    def require_success(self) -> None:
        """For the tests that inspect what the run left: its own failure is told once, by its own test."""
        if self.result.returncode != 0:
            pytest.fail(f"the smoke reproduction exited {self.result.returncode}: nothing to inspect")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Smoke]:
    """`reproduce --profile smoke` once, with an outputs dir and a cache volume the tests then inspect."""
    outputs = tmp_path_factory.mktemp("image-outputs")
    os.chown(outputs, KIT_UID, KIT_UID)
    volume = f"gpt4allj-kit-test-cache-{secrets.token_hex(4)}"
    created = podman("volume", "create", volume)
    assert created.returncode == 0, created.stderr
    try:
        mountpoint = podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip()
        result = run_image(
            "reproduce", "--profile", "smoke",
            options=(
                "-e", f"HF_TOKEN={HF_CANARY}", "-e", f"WANDB_API_KEY={WANDB_CANARY}",
                "-v", f"{volume}:/cache", "-v", f"{outputs}:{OUTPUTS}",
            ),
            timeout=1800,
        )  # fmt: skip
        yield Smoke(outputs=outputs, cache=Path(mountpoint), result=result)
    finally:
        podman("volume", "rm", "--force", volume)


def test_help_runs_as_the_entrypoint() -> None:
    result = run_image("--help")
    assert result.returncode == 0, _clean(result)
    for command in ("reproduce", "train", "eval", "doctor"):
        assert command in result.stdout


def test_python_is_a_final_release_of_the_locks_minor_and_imports_torch() -> None:
    probe = (
        "import json, sys, torch; v = sys.version_info; "
        "print(json.dumps({'minor': [v.major, v.minor], 'level': v.releaselevel, "
        "'torch': torch.__version__}))"
    )
    result = run_image("-c", probe, options=("--entrypoint", "python"))
    assert result.returncode == 0, _clean(result)
    found = json.loads(result.stdout)
    assert tuple(found["minor"]) == paths.locked_python()
    assert found["level"] == "final"
    assert found["torch"].startswith("2.14.1")


def _labels() -> dict[str, str]:
    result = podman("image", "inspect", "--format", "{{json .Labels}}", IMAGE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_labels_carry_the_kit_version_the_lock_hash_and_the_commit() -> None:
    labels = _labels()
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["gpt4allj-kit.lock.sha256"] == sha256_file(paths.lock_path())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert labels["org.opencontainers.image.revision"].removesuffix("-dirty") == head.stdout.strip()
    else:
        assert labels["org.opencontainers.image.revision"] == "unknown"


def test_the_smoke_reproduction_leaves_report_manifests_and_results(smoke: Smoke) -> None:
    assert smoke.result.returncode == 0, _clean(smoke.result)[-4000:]
    state = json.loads((smoke.run_dir / "run.json").read_text())
    assert {name: stage["status"] for name, stage in state["stages"].items()} == dict.fromkeys(
        ("doctor", "fetch", "train", "eval", "compare", "report"), "done"
    )
    for path in ("report/report.html", "report/report.md", "report/manifest.json", "manifest.json",
                 "train/manifest.json", "train/final/config.json", paths.LOCK_NAME):  # fmt: skip
        assert (smoke.run_dir / path).is_file(), path
    evaluated = sorted(p.name for p in (smoke.run_dir / "eval").iterdir() if p.is_dir())
    assert evaluated == ["epoch_1", "epoch_2", "final"]
    for label in evaluated:
        for name in ("results.json", "summary.json", "manifest.json"):
            assert (smoke.run_dir / "eval" / label / name).is_file(), (label, name)
        assert (smoke.run_dir / "compare" / f"{label}.json").is_file(), label
    environment = json.loads((smoke.run_dir / "manifest.json").read_text())["environment"]
    assert environment["kit_version"] == __version__
    assert environment["lock_sha256"] == sha256_file(paths.lock_path())
    assert tuple(map(int, environment["python"].split(".")[:2])) == paths.locked_python()


def _tree(*roots: Path) -> list[Path]:
    return [p for root in roots for p in (root, *root.rglob("*"))]


def test_every_file_the_image_writes_is_owned_by_the_kit_user(smoke: Smoke) -> None:
    smoke.require_success()
    written = _tree(smoke.outputs, smoke.cache)
    assert len(written) > 50
    foreign = [f"{p} ({p.lstat().st_uid}:{p.lstat().st_gid})" for p in written
               if (p.lstat().st_uid, p.lstat().st_gid) != (KIT_UID, KIT_UID)]  # fmt: skip
    assert not foreign, foreign[:10]


def _secrets() -> list[bytes]:
    """The canaries, and the host's own tokens where this machine has any: none may reach the image."""
    return [v.encode() for v in (HF_CANARY, WANDB_CANARY, *HOST_TOKENS)]


def _hits(data: bytes) -> list[str]:
    return [s.decode()[:6] + "..." for s in _secrets() if s in data]


def test_a_run_time_token_reaches_the_run_and_appears_in_no_output_cache_or_log(smoke: Smoke) -> None:
    smoke.require_success()
    # The run saw the tokens (so their absence below means something) and recorded only that they were set.
    environment = json.loads((smoke.run_dir / "manifest.json").read_text())["environment"]
    assert environment["secrets_set"]["HF_TOKEN"] is True
    assert environment["secrets_set"]["WANDB_API_KEY"] is True
    assert _hits((smoke.result.stdout + smoke.result.stderr).encode()) == []
    written = _tree(smoke.outputs, smoke.cache)
    leaks = []
    for path in written:
        if path.is_file() and not path.is_symlink() and (hits := _hits(path.read_bytes())):
            leaks.append(f"{path}: {hits}")
    assert not leaks, leaks
    stored = [str(p) for p in written if str(p).endswith(TOKEN_FILES)]
    assert not stored, stored


def _scan_layer(layer: IO[bytes], name: str, problems: list[str]) -> None:
    with tarfile.open(fileobj=layer, mode="r|*") as tar:
        for member in tar:
            path = member.name.removeprefix("./")
            if member.isfile() and "/.cache/pip/" in f"/{path}":
                problems.append(f"{name}: pip cache file {path}")
            if path.endswith(TOKEN_FILES):
                problems.append(f"{name}: token file {path}")
            if member.isfile() and member.size:
                handle = tar.extractfile(member)
                assert handle is not None
                if hits := _hits(handle.read()):
                    problems.append(f"{name}: {path} holds {hits}")


def test_no_layer_holds_a_token_or_a_pip_cache(tmp_path: Path, smoke: Smoke) -> None:
    """`podman save`, then every layer's files and the image config (env, history, labels) are read."""
    smoke.require_success()  # the canaries were used at run time before the image is read
    archive = tmp_path / "image.tar"
    saved = podman("save", "--format", "docker-archive", "-o", str(archive), IMAGE, timeout=1200)
    assert saved.returncode == 0, saved.stderr
    problems: list[str] = []
    layers = 0
    with tarfile.open(archive, mode="r:") as outer:
        for member in outer:
            if not member.isfile():
                continue
            handle = outer.extractfile(member)
            assert handle is not None
            if member.name.endswith(".tar") or member.name.endswith("/layer.tar"):
                layers += 1
                _scan_layer(handle, member.name, problems)
            elif hits := _hits(handle.read()):
                problems.append(f"{member.name} holds {hits}")
    assert layers >= 5, f"read {layers} layers: is {archive} a docker-archive?"
    assert not problems, problems


def _kit_output(result: subprocess.CompletedProcess[str]) -> str:
    text = _clean(result)
    assert "internal error" not in text, text[-3000:]
    return text


def test_doctor_runs_and_the_image_matches_its_lock() -> None:
    result = run_image("doctor")
    text = _kit_output(result)
    # No GPU here: the full profile cannot run (exit 3), the smoke profile can; the packages are the lock's.
    assert result.returncode in (0, 3), text
    assert "installed packages match the lock" in text
    assert "profile smoke: can run" in text
    assert "the lock is for Python" not in text


def test_train_dry_run_prints_the_documented_command_from_the_kit_dir() -> None:
    result = run_image("train", "--revision", "v1.2-jazzy", "--dry-run")
    text = _kit_output(result)
    assert result.returncode == 0, text
    # The documented command, reading the resolved config that the launch writes into the output dir.
    written = f"{OUTPUTS}/finetune_gptj/train_config.yaml"
    launched = DOCUMENTED.replace("--config configs/train/finetune_gptj.yaml", f"--config {written}")
    assert launched in " ".join(text.split())
    assert f"{written} (written at launch) = configs/train/finetune_gptj.yaml with:" in text
    assert f"output_dir: {cluster.IMAGE_WORKDIR}/outputs/" in text


def _compose_run_argv(service: str) -> list[str]:
    """The `podman run` that `docker compose run --rm SERVICE` amounts to, read from docker-compose.yml.

    Two things cannot be honoured on a CPU machine without raising the host's limits, and are said here:
    the GPU reservation (no device) and the unlimited memlock (clamped to the host's hard limit).
    """
    spec: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]
    argv = ["run", "--rm", *_ulimits()]
    if spec.get("init"):
        argv.append("--init")
    if spec.get("ipc"):
        argv += ["--ipc", spec["ipc"]]
    memlock = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    for name, value in spec.get("ulimits", {}).items():
        soft, hard = (value["soft"], value["hard"]) if isinstance(value, dict) else (value, value)
        if name == "memlock" and memlock != resource.RLIM_INFINITY:
            soft = hard = memlock
        argv += ["--ulimit", f"{name}={soft}:{hard}"]
    argv += [arg for name in spec.get("environment", {}) for arg in ("-e", name)]  # passed through if set
    volume = f"gpt4allj-kit-test-compose-{secrets.token_hex(4)}"
    for mount in spec.get("volumes", []):
        source, target = mount.rsplit(":", 1)
        argv += ["-v", f"{volume}:{target}" if source == "cache" else f"{volume}-outputs:{target}"]
    entrypoint, *command = spec["entrypoint"]
    image = spec["image"]
    assert image == f"${{GPT4ALLJ_KIT_IMAGE:-gpt4allj-kit:{__version__}}}"  # GPT4ALLJ_KIT_IMAGE selects ours
    return [*argv, "--entrypoint", entrypoint, IMAGE, *command, *spec.get("command", [])]


def test_the_compose_doctor_service_runs_through_podman() -> None:
    argv = _compose_run_argv("doctor")
    assert argv[argv.index("--entrypoint") + 1 :] == ["gpt4allj-kit", IMAGE, "doctor"]
    volumes = sorted({a.split(":")[0] for a in argv if a.startswith("gpt4allj-kit-test-compose-")})
    try:
        result = podman(*argv, timeout=300)
    finally:
        for volume in volumes:
            podman("volume", "rm", "--force", volume)
    text = _kit_output(result)
    assert result.returncode in (0, 3), text
    assert "installed packages match the lock" in text
