"""Proof of what ran: every results-producing command writes a manifest through `write_manifest`.

A manifest holds the kit's version and lock hash, the git commit, the resolved config, versions of the
libraries that shape the numbers, the hardware and the timings. Secrets never enter it (everything in it
goes through `redaction.redact_data`): only whether a token is set.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from gpt4allj_kit import __version__, paths
from gpt4allj_kit.files import atomic_write_json, atomic_write_text, check_writable, sha256_file
from gpt4allj_kit.redaction import SECRET_ENV, redact, redact_data

KEY_PACKAGES = (
    "torch", "transformers", "datasets", "accelerate", "deepspeed", "lm-eval", "huggingface-hub", "peft",
    "tokenizers", "safetensors", "numpy", "pydantic", "typer",
)  # fmt: skip
MANIFEST_VERSION = 1


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def secrets_status() -> dict[str, bool]:
    """Which secret variables are set - never their values."""
    return {name: bool(os.environ.get(name)) for name in SECRET_ENV}


def lock_sha256() -> str | None:
    lock = paths.lock_path()
    return sha256_file(lock) if lock.exists() else None


def git_commit() -> dict[str, Any]:
    """The kit's own commit: from the checkout, else from the image build (GPT4ALLJ_KIT_GIT_COMMIT)."""
    root = paths.project_root()
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip()
        )  # fmt: skip
        return {"sha": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"sha": os.environ.get("GPT4ALLJ_KIT_GIT_COMMIT"), "dirty": None}


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict[str, Any]:
    """CPU, memory and GPUs of this machine, as torch sees them."""
    import psutil
    import torch

    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append(
                {
                    "name": props.name,
                    "memory_gb": round(props.total_memory / 2**30, 1),
                    "memory_bytes": props.total_memory,
                    "capability": f"{props.major}.{props.minor}",
                }
            )
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpus": gpus,
    }


def environment() -> dict[str, Any]:
    """What every manifest records about the software and machine."""
    return {
        "kit_version": __version__,
        "lock_sha256": lock_sha256(),
        "git": git_commit(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "hardware": hardware(),
        "secrets_set": secrets_status(),
        "hf_endpoint": os.environ.get("HF_ENDPOINT", "https://huggingface.co"),
    }


def write_manifest(
    path: Path,
    *,
    stage: str,
    command: list[str] | str,
    config: Any = None,
    started: str | None = None,
    ended: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Writes `path` (JSON, atomically) and returns what it wrote. Extra `fields` are stage-specific."""
    argv = command if isinstance(command, str) else " ".join(command)
    manifest = redact_data(
        {
            "manifest_version": MANIFEST_VERSION,
            "stage": stage,
            "command": argv,
            "started": started,
            "ended": ended or now_iso(),
            "environment": environment(),
            "config": config,
            **fields,
        }
    )
    atomic_write_json(path, manifest)
    return manifest


# --- one output file and its manifest beside it (`--output FILE` of a command) ----------------------------


def manifest_beside(output: Path) -> Path:
    """Where the manifest of a command's single output file goes: `<output>.manifest.json`."""
    return output.with_name(f"{output.name}.{paths.MANIFEST}")


def check_output(output: Path) -> None:
    """`--output FILE` and its manifest can be written: checked before any work, so nothing is lost."""
    check_writable(output, "--output", directory=False)
    check_writable(manifest_beside(output), directory=False)


def write_output(
    output: Path,
    text: str,
    *,
    stage: str,
    command: Sequence[str] | str,
    started: str,
    config: Any = None,
    **fields: Any,
) -> Path:
    """Writes `text` (redacted) to `output`, then its manifest beside it (with the output's path); returns
    the manifest's path."""
    atomic_write_text(output, redact(text))
    manifest = manifest_beside(output)
    write_manifest(
        manifest,
        stage=stage,
        command=command if isinstance(command, str) else list(command),
        config=config,
        started=started,
        output=str(output),
        **fields,
    )
    return manifest
