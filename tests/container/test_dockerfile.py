"""The Dockerfile, checked without a Docker engine: hadolint, and what the image is built from and runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml
from gpt4allj_kit import __version__, cluster, paths
from gpt4allj_kit.files import sha256_file

ROOT = paths.project_root()
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent
# python3 of Ubuntu's releases: 22.04's python3.11 is 3.11.0~rc1, a pre-release, so only python3 counts.
DISTRO_PYTHON = {"22.04": (3, 10), "24.04": (3, 12)}
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|CREDENTIAL", re.IGNORECASE)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text(encoding="utf-8"))


def _args(steps: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in steps if kw == keyword]


def _arg_default(steps: list[tuple[str, str]], name: str) -> str:
    for args in _args(steps, "ARG"):
        key, sep, value = args.partition("=")
        if key == name and sep:
            return value.strip('"')
    raise AssertionError(f"no ARG {name}=default in the Dockerfile")


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "--failure-threshold", "warning", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_passes_at_warning_level() -> None:
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN cd /tmp && apt-get install -y curl\n")
    result = _hadolint(bad)
    assert result.returncode == 1
    assert "DL3007" in result.stdout  # the :latest base


def test_base_is_the_cuda_devel_image_of_torchs_cuda_by_tag_and_digest(steps: list[tuple[str, str]]) -> None:
    torch = pytest.importorskip("torch")
    assert _args(steps, "FROM") == ["${CUDA_IMAGE}:${CUDA_TAG}@${CUDA_DIGEST}"]
    assert _arg_default(steps, "CUDA_IMAGE") == "nvidia/cuda"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", _arg_default(steps, "CUDA_DIGEST"))
    tag = _arg_default(steps, "CUDA_TAG")
    match = re.fullmatch(r"(\d+)\.(\d+)\.\d+-cudnn-devel-ubuntu(\d+\.\d+)", tag)
    assert match, tag
    assert f"{match[1]}.{match[2]}" == torch.version.cuda
    # The base's own python3 must be the minor the locks are resolved for, and a final release there.
    assert DISTRO_PYTHON[match[3]] == paths.locked_python(), (tag, DISTRO_PYTHON[match[3]])
    assert re.search(r"apt-get install .*\bpython3 python3-dev python3-venv\b", " ".join(_args(steps, "RUN")))


def test_an_unchecked_base_digest_says_so_with_its_source(steps: list[tuple[str, str]]) -> None:
    digest = _arg_default(steps, "CUDA_DIGEST")
    text = DOCKERFILE.read_text()
    assert "UNCHECKED DIGEST" in text and "imagetools inspect" in text
    readme = (ROOT / "README.md").read_text()
    assert digest[:19] in readme and "unchecked" in readme.lower()


def test_dependencies_come_from_the_one_lock_through_the_one_install_script(
    steps: list[tuple[str, str]],
) -> None:
    copies = _args(steps, "COPY")
    runs = _args(steps, "RUN")
    install = [i for i, (kw, args) in enumerate(steps) if kw == "RUN" and "scripts/install.sh" in args]
    assert len(install) == 1
    copy_lock = steps.index(("COPY", "requirements/lock.txt requirements/lock.txt"))
    assert copy_lock < install[0]
    assert "scripts/install.sh scripts/install.sh" in copies
    assert not [
        r for r in runs if re.search(r"pip3?\s+install|-m\s+pip|\buv\s+(pip|sync)", r)
    ]  # nothing installed around the script
    # ... and that script installs exactly the lock CI and the README use.
    script = (ROOT / "scripts" / "install.sh").read_text()
    assert 'lock="$root/requirements/lock.txt"' in script
    assert "--require-hashes" in script
    assert "bash scripts/install.sh" in (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/install.sh" in (ROOT / "README.md").read_text()
    assert f"--venv {Path(cluster.IMAGE_VENV_BIN).parent}" in steps[install[0]][1]


def _dockerignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p.removeprefix("**/") for p in patterns if p and not p.startswith("#")]
    parts = Path(path).parts
    return any(fnmatch(part, p) or fnmatch(path, p) for p in patterns for part in parts)


def test_dockerignore_keeps_outputs_caches_and_venvs_out_but_not_what_the_image_needs() -> None:
    for kept_out in (".venv", "outputs/smoke/final", ".git", ".cache/x", "cli/x.egg-info", "a/__pycache__"):
        assert _dockerignored(kept_out), kept_out
    for needed in (
        "requirements/lock.txt",
        "scripts/install.sh",
        "train.py",
        "configs/train/finetune_gptj.yaml",
    ):
        assert not _dockerignored(needed), needed


def test_no_secret_is_a_build_arg_or_image_env(steps: list[tuple[str, str]]) -> None:
    names = [a.partition("=")[0] for a in _args(steps, "ARG")]
    names += re.findall(r"(\w+)=", " ".join(_args(steps, "ENV")))
    assert names
    assert not [n for n in names if SECRET_NAME.search(n)]


def test_runs_as_a_non_root_user_with_the_kit_entrypoint(steps: list[tuple[str, str]]) -> None:
    user = _args(steps, "USER")[-1]
    uid = _arg_default(steps, "KIT_UID") if user == "${KIT_UID}" else user
    assert uid not in ("root", "0")
    assert [kw for kw, _ in steps][-3:] == ["USER", "ENTRYPOINT", "CMD"]
    assert _args(steps, "ENTRYPOINT") == ['["gpt4allj-kit"]']
    assert _args(steps, "CMD") == ['["reproduce", "--revision", "v1.2-jazzy"]']


def test_workdir_holds_the_kit_and_caches_sit_on_a_volume(steps: list[tuple[str, str]]) -> None:
    assert _args(steps, "WORKDIR") == [cluster.IMAGE_WORKDIR]
    env = " ".join(_args(steps, "ENV"))
    assert f"GPT4ALLJ_KIT_ROOT={cluster.IMAGE_WORKDIR}" in env
    assert f"PATH={cluster.IMAGE_VENV_BIN}:" in env
    hf_home = re.search(r"HF_HOME=(\S+)", env)
    assert hf_home
    volumes = yaml.safe_load(_args(steps, "VOLUME")[0])
    assert any(hf_home[1].startswith(v.rstrip("/") + "/") for v in volumes)
    assert f"{cluster.IMAGE_WORKDIR}/outputs" in volumes
    assert "GPT4ALLJ_KIT_GIT_COMMIT=${GIT_COMMIT}" in env
    labels = " ".join(_args(steps, "LABEL"))
    for label in ("org.opencontainers.image.version=", "gpt4allj-kit.lock.sha256=", "image.revision="):
        assert label in labels


def _build_sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "docker" / "build.sh"), *args],
        env={**os.environ, "DOCKER": "echo"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_build_script_fills_the_labels_from_the_checkout() -> None:
    result = _build_sh("--build-arg", "DS_BUILD_OPS=1")
    assert result.returncode == 0, result.stderr
    argv = result.stdout.split()
    assert argv[:3] == ["build", "-t", f"gpt4allj-kit:{__version__}"]
    assert f"KIT_VERSION={__version__}" in argv
    assert f"KIT_LOCK_SHA256={sha256_file(ROOT / 'requirements' / 'lock.txt')}" in argv
    assert any(a.startswith("GIT_COMMIT=") for a in argv)
    assert argv[-3:] == ["--build-arg", "DS_BUILD_OPS=1", str(ROOT)]


@pytest.mark.parametrize("digest", ["", "sha256:abc", "latest"])
def test_build_script_refuses_a_base_without_a_real_digest(digest: str) -> None:
    result = _build_sh("--build-arg", f"CUDA_DIGEST={digest}")
    assert result.returncode == 2
    assert "CUDA_DIGEST must be sha256:<64 hex digits>" in result.stderr
