"""The checks before a launch (train/inputs.py): the model, tokenizer and data rows, fast and in-process.

The CLI's side (exit codes, one line, nothing launched) is in test_launch.py.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from gpt4allj_kit import data
from gpt4allj_kit.assets import TinyAssets, synthetic_rows, write_rows
from gpt4allj_kit.config import TrainConfig, load_train_config
from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady
from gpt4allj_kit.train import inputs, sources


def _config(tiny: TinyAssets, **values: Any) -> TrainConfig:
    base = {
        "model_name": str(tiny.model_dir),
        "tokenizer_name": str(tiny.tokenizer_dir),
        "dataset_path": str(tiny.jsonl),
        "output_dir": "unused",
    }
    return load_train_config(None, {**base, **values})


def _model_copy(tiny: TinyAssets, where: Path, **config_changes: Any) -> Path:
    folder = where / "model"
    shutil.copytree(tiny.model_dir, folder)
    if config_changes:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **config_changes}))
    return folder


def test_good_inputs_pass_and_count_rows(tiny: TinyAssets) -> None:
    checked = inputs.check_inputs(_config(tiny))
    assert checked.model == tiny.model_dir and checked.tokenizer == tiny.tokenizer_dir
    assert checked.data_files == [tiny.jsonl]
    assert checked.rows is not None and checked.rows.rows == 3000
    assert checked.notes == []


def test_empty_fields_are_noted_not_refused(tiny: TinyAssets, tmp_path: Path) -> None:
    rows = synthetic_rows(seed=5, rows=50)
    rows[3]["response"] = ""
    rows[4]["prompt"] = ""
    write_rows(rows, tmp_path)
    checked = inputs.check_inputs(_config(tiny, dataset_path=str(tmp_path / "train.jsonl")))
    assert [note.split(":")[0] for note in checked.notes] == [
        "1 of 50 rows have an empty response",
        "1 of 50 rows have an empty prompt",
    ]
    assert "dropped" in checked.notes[0]


def test_data_whose_every_response_is_empty_is_refused(tiny: TinyAssets, tmp_path: Path) -> None:
    rows = synthetic_rows(seed=5, rows=4)
    for row in rows:
        row["response"] = ""
    write_rows(rows, tmp_path)
    with pytest.raises(ConfigError, match="no training rows: all 4 rows have an empty response"):
        inputs.check_inputs(_config(tiny, dataset_path=str(tmp_path / "train.jsonl")))


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("no config.json", r"model/config.json: missing \(a model folder needs config.json"),
        ("model_type null", r"model/config.json: key 'model_type' is None; GPT-J's is 'gptj'"),
        ("unknown model_type", r"model/config.json: .*nosuchmodel"),
        ("broken json", r"model/config.json: line 1: Expecting"),
        ("no weights", r"model .*/model: no weights \(model.safetensors, pytorch_model.bin"),
        ("no tokenizer files", r"tokenizer .*/model: cannot be loaded"),
        ("no such path", r"model_name '\./nowhere': no such file or folder, and not a hub repo id"),
    ],
)
def test_a_bad_model_or_tokenizer_is_one_line(
    tiny: TinyAssets, tmp_path: Path, problem: str, message: str
) -> None:
    values: dict[str, Any] = {}
    if problem == "no config.json":
        folder = _model_copy(tiny, tmp_path)
        (folder / "config.json").unlink()
    elif problem == "model_type null":
        folder = _model_copy(tiny, tmp_path, model_type=None)
    elif problem == "unknown model_type":
        folder = _model_copy(tiny, tmp_path, model_type="nosuchmodel")
    elif problem == "broken json":
        folder = _model_copy(tiny, tmp_path)
        (folder / "config.json").write_text("{not json")
    elif problem == "no weights":
        folder = _model_copy(tiny, tmp_path)
        (folder / "model.safetensors").unlink()
    elif problem == "no tokenizer files":
        folder = _model_copy(tiny, tmp_path)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (folder / name).unlink()
        values["tokenizer_name"] = str(folder)
        folder = tiny.model_dir
    else:
        folder = "./nowhere"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=message) as info:
        inputs.check_inputs(_config(tiny, model_name=str(folder), **values))
    assert "\n" not in info.value.message


def test_the_loop_reads_the_model_through_the_same_check(tiny: TinyAssets, tmp_path: Path) -> None:
    folder = _model_copy(tiny, tmp_path, model_type=None)
    with pytest.raises(ConfigError, match="key 'model_type' is None"):
        sources.model_config(folder, _config(tiny))
    assert sources.model_config(tiny.model_dir, _config(tiny)).model_type == "gptj"


def test_a_hub_dataset_not_fetched_is_noted_online_and_refused_offline(
    tiny: TinyAssets, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from gpt4allj_kit.fetch import cache

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = _config(tiny, dataset_path="nomic-ai/gpt4all-j-prompt-generations", revision="v1.0")
    checked = inputs.check_inputs(config)
    assert checked.rows is None
    assert checked.notes == [
        "dataset nomic-ai/gpt4all-j-prompt-generations@v1.0 (dataset_path) is not fetched yet: the training "
        "fetches it and checks it then"
    ]
    # Offline the training could not fetch it: exit 3, one line.
    monkeypatch.setattr(cache, "offline_mode", lambda: True)
    with pytest.raises(EnvironmentNotReady, match=r"is not in the hub cache and the hub is offline"):
        inputs.check_inputs(config)


def test_checking_rows_is_fast(tmp_path: Path) -> None:
    """Every row of the released data (808,812 rows, 1.77 GB of text) is read once before a launch:
    measured here on 100,000 rows of the same average size (about 2.2 kB), it must stay a few seconds."""
    row = {
        "prompt": "What is the kalo of mi? " * 8,
        "response": "The kalo of mi is ren. " * 85,
        "source": "s",
    }
    line = json.dumps(row) + "\n"
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(100):
            fh.write(line * 1000)
    assert 2000 < len(line) < 2400
    start = time.perf_counter()
    check = data.check_rows([path])
    seconds = time.perf_counter() - start
    assert check.rows == 100_000
    assert seconds < 10, f"{seconds:.1f} s for 100,000 rows"
