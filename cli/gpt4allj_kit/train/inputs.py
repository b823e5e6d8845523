"""The checks made before a training is launched: model, tokenizer and every data row.

They call the functions the training loop itself calls in every launched process (`sources` for the
model and tokenizer, `data.check_rows` for the rows), so a bad input stops here with one line naming the
file, row and column, instead of a traceback per process and the launcher's ChildFailedError. Nothing
heavy is loaded: the model's config.json (no weights), the tokenizer, and the data rows streamed once
(no tokenization). Hub assets are checked in the cache an earlier fetch filled; one that was never
fetched is fetched by the training itself, so it is only noted (offline, where the training could not
fetch it, it is an error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gpt4allj_kit import data
from gpt4allj_kit.config import TrainConfig
from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady
from gpt4allj_kit.train import sources


@dataclass(frozen=True)
class InputsChecked:
    """What was checked: each asset's folder (None: not fetched yet) and what the rows hold."""

    model: Path | None
    tokenizer: Path | None
    data_files: list[Path] = field(default_factory=list)
    rows: data.RowCheck | None = None
    notes: list[str] = field(default_factory=list)


def _cached(
    name: str, revision: str, repo_type: str, key: str, config: TrainConfig, notes: list[str]
) -> Path | None:
    """The folder of an asset, local or already fetched; None (with a note) when the training fetches it."""
    from gpt4allj_kit.fetch.cache import offline_mode

    found = sources.cached_source(name, revision, repo_type, key=key, config=config)
    if found is not None:
        return found[0]
    what = f"{repo_type} {name}@{revision} ({key})"
    if offline_mode():
        raise EnvironmentNotReady(
            f"{what} is not in the hub cache and the hub is offline (HF_HUB_OFFLINE): fetch it first where "
            "the hub is reachable (`gpt4allj-kit fetch`)"
        )
    notes.append(f"{what} is not fetched yet: the training fetches it and checks it then")
    return None


def _row_notes(rows: data.RowCheck) -> list[str]:
    notes = []
    if rows.empty_responses:
        notes.append(
            f"{rows.empty_responses} of {rows.rows} rows have an empty response: they leave only the final "
            "eos to learn and are dropped (upstream's data.py stopped on them; the manifest counts them)"
        )
    if rows.empty_prompts:
        notes.append(f"{rows.empty_prompts} of {rows.rows} rows have an empty prompt: trained on as upstream")
    return notes


def check_inputs(config: TrainConfig) -> InputsChecked:
    """Model, tokenizer and data of `config` as the training will load them; one-line ConfigError (exit 2)
    for a bad file, EnvironmentNotReady (exit 3) for an asset that is missing where it must be."""
    notes: list[str] = []
    model = _cached(config.model_name, config.model_revision, "model", "model_name", config, notes)
    if model is not None:
        sources.model_config(model, config)
    tokenizer = _cached(
        config.tokenizer_name, config.model_revision, "model", "tokenizer_name", config, notes
    )
    if tokenizer is not None:
        sources.load_tokenizer(tokenizer, config)
    folder = _cached(config.dataset_path, config.revision, "dataset", "dataset_path", config, notes)
    if folder is None:
        return InputsChecked(model, tokenizer, notes=notes)
    files = data.dataset_files(folder)
    rows = data.check_rows(files)
    if rows.empty_responses == rows.rows:
        # Every row would be dropped (see `_row_notes`): the training would have nothing to train on.
        raise ConfigError(
            f"{folder}: no training rows: all {rows.rows} rows have an empty response, which leaves nothing "
            "to learn"
        )
    return InputsChecked(model, tokenizer, files, rows, notes + _row_notes(rows))
