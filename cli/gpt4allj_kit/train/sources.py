"""Where a run's model, tokenizer and data come from, and what makes them usable: one definition for the
training loop (in every launched process) and for the checks made before anything is launched.

A name is a local folder, or a hub repo: fetched by revision (`resolve_source`, what the loop does) or
looked up in the cache an earlier fetch filled (`cached_source`, what the checks and the dry run do: no
network).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt4allj_kit import paths
from gpt4allj_kit.errors import ConfigError

if TYPE_CHECKING:
    from gpt4allj_kit.config import TrainConfig
    from gpt4allj_kit.fetch.lock import LockedAsset

# What `from_pretrained` loads weights from, one format being enough (transformers' own file names).
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def lock_path(config: TrainConfig) -> Path:
    """The fetch lock of a run: its `asset_lock`, else the checkout's (which may not exist)."""
    return Path(config.asset_lock) if config.asset_lock else paths.project_root() / paths.LOCK_NAME


def locked_asset(config: TrainConfig, repo_id: str, repo_type: str, revision: str) -> LockedAsset | None:
    """The lock's entry for one asset of the run, when its lock has one."""
    from gpt4allj_kit.fetch.lock import read_lock

    return read_lock(lock_path(config)).find(repo_id, repo_type, revision)


def _local_source(name: str, key: str) -> tuple[Path, dict[str, Any]] | None:
    from gpt4allj_kit import data

    local = data.local_path(name, key)
    return (local, {"source": "local", "path": str(local.resolve())}) if local is not None else None


def _hub_source(snap: Any) -> tuple[Path, dict[str, Any]]:
    return Path(snap.path), {
        "source": "hub",
        "repo_id": snap.repo_id,
        "revision": snap.revision,
        "sha": snap.sha,
    }


def resolve_source(
    name: str, revision: str, repo_type: str = "model", *, key: str = "model_name"
) -> tuple[Path, dict[str, Any]]:
    """A local folder for a model/tokenizer name: the path itself, or the hub snapshot of `revision`
    (fetched by sha), and where it came from. What the training loop uses; `key`: the config key that
    named it, for the error when it is neither a path nor a repo id."""
    from gpt4allj_kit.fetch.snapshot import fetch_snapshot

    local = _local_source(name, key)
    if local is not None:
        return local
    return _hub_source(fetch_snapshot(name, repo_type=repo_type, revision=revision))


def cached_source(
    name: str, revision: str, repo_type: str, *, key: str, config: TrainConfig
) -> tuple[Path, dict[str, Any]] | None:
    """What `resolve_source` would give, without the hub: the path itself, or the snapshot an earlier fetch
    left in the cache (located through the run's lock, else the fetched ref); None when not fetched."""
    from gpt4allj_kit.fetch.snapshot import cached_snapshot

    local = _local_source(name, key)
    if local is not None:
        return local
    locked = locked_asset(config, name, repo_type, revision)
    snap = cached_snapshot(name, repo_type=repo_type, revision=revision, locked=locked)
    return _hub_source(snap) if snap is not None else None


def model_config(path: Path, config: TrainConfig) -> Any:
    """The model's transformers config, read as `from_pretrained` reads it; one-line ConfigError when the
    folder cannot be loaded as a model (no or broken config.json, unknown model type, no weights).

    Reads only config.json: no weights are loaded.
    """
    from transformers import AutoConfig

    where = f"model {path}"
    if not path.is_dir():
        raise ConfigError(f"{where}: not a folder")
    file = path / "config.json"
    if not file.is_file():
        raise ConfigError(f"{file}: missing (a model folder needs config.json and its weights)")
    try:
        content = json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: line {exc.lineno}: {exc.msg}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{file}: expected a JSON object")
    model_type = content.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        state = f"is {model_type!r}" if "model_type" in content else "is missing"
        raise ConfigError(f"{file}: key 'model_type' {state}; GPT-J's is 'gptj'")
    try:
        loaded = AutoConfig.from_pretrained(path, trust_remote_code=config.trust_remote_code)
    except (ValueError, KeyError, TypeError, OSError) as exc:  # transformers' errors for a bad config
        raise ConfigError(f"{file}: {_first_line(exc)}") from None
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        raise ConfigError(f"{where}: no weights (model.safetensors, pytorch_model.bin or a sharded index)")
    return loaded


def load_tokenizer(path: Path, config: TrainConfig) -> Any:
    """The tokenizer as the recipe uses it (pad = eos when it has none, as upstream set for GPT-J)."""
    from transformers import AutoTokenizer

    from gpt4allj_kit import data

    if not path.is_dir():
        raise ConfigError(f"tokenizer {path}: not a folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
    except (ValueError, KeyError, TypeError, OSError) as exc:  # transformers' errors for missing files
        raise ConfigError(f"tokenizer {path}: cannot be loaded ({_first_line(exc)})") from None
    if not tokenizer("Hello\n")["input_ids"]:
        # transformers builds an empty tokenizer from a model folder without tokenizer files.
        raise ConfigError(f"tokenizer {path}: cannot be loaded (no tokenizer.json or vocabulary files)")
    if tokenizer.pad_token is None:
        data.eos_token(tokenizer)  # a tokenizer without eos has nothing to pad with: one line here
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
