"""Shared fixtures: an isolated environment per test session and the kit's tiny offline assets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpt4allj_kit.assets import TinyAssets, tiny_assets

# Caches that tools write to must never be the user's, nor leak between sessions.
_ISOLATED_DIRS = {
    "HF_HOME": "hf-home",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "TORCH_EXTENSIONS_DIR": "torch-extensions",
    "TRITON_CACHE_DIR": "triton",
    "GPT4ALLJ_KIT_CACHE": "kit-cache",
    "MPLCONFIGDIR": "matplotlib",
}


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Points every cache at a temp dir, keeps the tests offline and token-free."""
    base = tmp_path_factory.mktemp("env")
    saved = dict(os.environ)
    for name, sub in _ISOLATED_DIRS.items():
        os.environ[name] = str(base / sub)
        (base / sub).mkdir()
    os.environ.pop("HF_HUB_CACHE", None)
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["WANDB_MODE"] = "disabled"
    for secret in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY"):
        os.environ.pop(secret, None)
    yield base
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyAssets:
    """The tiny GPT-J, tokenizer and synthetic data of the default seed, made once per session."""
    return tiny_assets(tmp_path_factory.mktemp("tiny"))
