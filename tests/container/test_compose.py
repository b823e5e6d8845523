"""docker-compose.yml against the Compose specification's JSON schema, and what its services promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from gpt4allj_kit import __version__, cluster, paths

ROOT = paths.project_root()
COMPOSE = ROOT / "docker-compose.yml"
SERVICES = ("reproduce", "train", "eval", "doctor")


def _check_schema(*files: Path) -> subprocess.CompletedProcess[str]:
    checker = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_file_validates_against_the_compose_spec() -> None:
    result = _check_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


BREAKAGES = {
    "ipc-list.yml": ("  ipc: host ", "  ipc: [host] ", "$.services.reproduce.ipc"),
    "capabilities.yml": (
        "            capabilities: [gpu]",
        "            capabilities: gpu",
        "$.services.train.deploy.resources.reservations.devices[0].capabilities",
    ),
    "unknown-key.yml": (
        "  reproduce:\n",
        "  reproduce:\n    gpus_please: true\n",
        "'gpus_please' was unexpected",
    ),
}


def test_broken_compose_files_fail_validation_naming_the_bad_path(tmp_path: Path) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for name, (old, new, _) in BREAKAGES.items():
        assert old in text
        (tmp_path / name).write_text(text.replace(old, new, 1))
    result = _check_schema(*(tmp_path / name for name in BREAKAGES))  # one run: the schema load is slow
    assert result.returncode == 1
    for name, (_, _, where) in BREAKAGES.items():
        assert f"{name}::" in result.stdout
        assert where in result.stdout, (name, result.stdout)


def test_every_service_gets_all_gpus_big_ipc_and_nccl_ulimits(compose: dict[str, Any]) -> None:
    assert sorted(compose["services"]) == sorted(SERVICES)
    for name in SERVICES:
        service = compose["services"][name]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}], name
        assert service["ipc"] == "host"
        assert service["ulimits"] == {"memlock": {"soft": -1, "hard": -1}, "stack": 67108864}


def test_services_run_their_kit_command_from_the_built_image(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        service = compose["services"][name]
        # `docker compose run --rm reproduce --revision v1.2-jazzy` appends to this entrypoint.
        assert service["entrypoint"] == ["gpt4allj-kit", name]
        assert service["image"] == f"${{GPT4ALLJ_KIT_IMAGE:-gpt4allj-kit:{__version__}}}"
    assert compose["services"]["reproduce"]["command"] == ["--revision", "v1.2-jazzy"]


def test_tokens_are_passed_through_never_written(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        environment = compose["services"][name]["environment"]
        assert environment == {"HF_TOKEN": "${HF_TOKEN:-}", "WANDB_API_KEY": "${WANDB_API_KEY:-}"}
    assert "env_file" not in COMPOSE.read_text()


def test_hf_cache_and_outputs_are_volumes(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        targets = {v.rsplit(":", 1)[1] for v in compose["services"][name]["volumes"]}
        assert targets == {"/cache", f"{cluster.IMAGE_WORKDIR}/outputs"}
    assert "cache" in compose["volumes"]
