"""The one lock: every package pinned with hashes, torch 2.14.1, used by the install script and CI."""

from __future__ import annotations

import re

import pytest
from gpt4allj_kit import paths
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = paths.project_root()
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<spec>\S*)")


@pytest.fixture(scope="module")
def entries() -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (requirement line, its hash lines)} of requirements/lock.txt."""
    result: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in paths.lock_path().read_text().splitlines():
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


def test_every_requirement_is_pinned_with_hashes(entries: dict[str, tuple[str, list[str]]]) -> None:
    assert len(entries) > 50
    for name, (line, hashes) in entries.items():
        assert re.match(r"^[A-Za-z0-9._-]+==[A-Za-z0-9.+!]+( ;.*)? \\$", line), line
        assert hashes and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}( \\)?", h) for h in hashes), name


def test_pins_the_documented_versions(entries: dict[str, tuple[str, list[str]]]) -> None:
    assert entries["torch"][0].startswith("torch==2.14.1 ")
    for name in ("deepspeed", "transformers", "datasets", "accelerate", "lm-eval", "huggingface-hub", "uv"):
        assert name in entries, name


def test_every_direct_requirement_is_locked(entries: dict[str, tuple[str, list[str]]]) -> None:
    direct = paths.project_root() / "requirements" / "requirements.in"
    for line in direct.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            locked_version = entries[canonicalize_name(requirement.name)][0].split("==")[1].split()[0]
            assert requirement.specifier.contains(locked_version), line


def test_install_script_and_ci_use_the_lock() -> None:
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert "requirements/lock.txt" in install and "--require-hashes" in install
    assert "--no-build-isolation" in install  # DeepSpeed's sdist imports torch while building
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/install.sh" in ci
    # CI fails on the first failing step, "no tests collected" (pytest exit 5) included.
    assert "set -euo pipefail" in ci
    # The image installs the same lock with the same script, so CI tests what the image ships.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements/lock.txt" in dockerfile and "scripts/install.sh" in dockerfile


def test_lock_script_is_the_documented_command() -> None:
    script = (ROOT / "scripts" / "lock.sh").read_text()
    command = " ".join(script.replace("\\\n", " ").split())
    for part in (
        "pip compile requirements/requirements.in",
        "--generate-hashes",
        "--python-version 3.11",
        "--python-platform x86_64-manylinux_2_28",
        "--no-header",
        "--annotation-style line",
        "-o requirements/lock.txt",
    ):
        assert part in command, part
    assert "scripts/lock.sh" in (ROOT / "requirements" / "requirements.in").read_text()
