"""The one rule for secrets: what it finds, what it leaves alone, and the writers that follow it."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.redaction import MASK, redact, redact_data, refuse_secrets, secret_values

ENV_TOKEN = "hf_envTokenValue42"  # set as HF_TOKEN below; not a token shape (too short), found by value
SHAPED = "hf_" + "Ab1" * 12  # a hub token's shape, in no variable


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_TOKEN", ENV_TOKEN)
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key-0123456789")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"--set wandb_entity={ENV_TOKEN} --x", "--set wandb_entity=*** --x"),
        ("key=wandb-key-0123456789", "key=***"),
        (f"model {SHAPED} end", "model *** end"),
        ("--set HF_TOKEN=abc123 --set hub_token=zz", "--set HF_TOKEN=*** --set hub_token=***"),
        ("--hf-token=abcdef --api-key xyz123 --password: p", "--hf-token=*** --api-key *** --password: ***"),
        (
            "WANDB_API_KEY=k1 aws_secret_access_key=k2 privateKey=k3",
            "WANDB_API_KEY=*** aws_secret_access_key=*** privateKey=***",
        ),
        ("https://user:p4ss@mirror.example/x", "https://user:***@mirror.example/x"),
        ("Authorization: Bearer abcdefgh12345678", "Authorization: *** ***"),
    ],
)
def test_each_kind_of_secret_is_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "--set tokenizer_name=gpt2 --set max_tokens=5 --tokenizer fast",
        "set GPT4ALLJ_KIT_ALLOW_HTTP_TOKEN=1 to send it; HF_HUB_DISABLE_IMPLICIT_TOKEN=true",
        "hf_transfer hf_home_directory HF_HOME=/data/hf",
        "key 'output_dir': required (got 'x') at 2026-01-01T00:00:00+00:00",
        "https://huggingface.co/nomic-ai/gpt4all-j http://127.0.0.1:8000/a",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_the_token_file_counts_as_a_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    token_file = tmp_path / "token"
    token_file.write_text("file-token-value-77\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))
    assert "file-token-value-77" in secret_values()
    assert redact("x file-token-value-77 y") == f"x {MASK} y"


def test_data_is_redacted_keys_and_values_and_models_and_paths() -> None:
    from gpt4allj_kit.runstate import RunState

    state = RunState.new("v1.0", "smoke", f"gpt4allj-kit reproduce --set x={ENV_TOKEN}")
    data = redact_data({"state": state, "path": Path(f"/runs/{SHAPED}"), f"k {ENV_TOKEN}": [1, None, True]})
    assert ENV_TOKEN not in json.dumps(data) and SHAPED not in json.dumps(data)
    assert data["state"]["command"] == "gpt4allj-kit reproduce --set x=***" and data["path"] == "/runs/***"
    assert data["k ***"] == [1, None, True]


def test_refusal_names_the_key_never_the_value() -> None:
    with pytest.raises(ConfigError) as error:
        refuse_secrets({"a": "fine", "nested": {"wandb_entity": ENV_TOKEN}}, "train_config.yaml")
    assert "'nested.wandb_entity' holds a secret" in error.value.message
    assert ENV_TOKEN not in error.value.message
    refuse_secrets({"tokenizer_name": "gpt2", "output_dir": "/runs/a"}, "fine.yaml")


def test_a_config_holding_a_secret_is_refused_before_anything_runs(kit_cli, tmp_path: Path) -> None:
    for args in (
        ("config", "--set", f"wandb_entity={ENV_TOKEN}"),
        ("train", "--dry-run", "--set", f"wandb_project_name={SHAPED}"),
        ("train", "--launcher", "slurm", "--set", f"output_dir={tmp_path / SHAPED}"),
    ):
        done = kit_cli(*args, env={"HF_TOKEN": ENV_TOKEN}, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "holds a secret" in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert ENV_TOKEN not in done.stdout + done.stderr and SHAPED not in done.stdout + done.stderr
    assert not list(tmp_path.iterdir())


def test_error_lines_are_redacted(kit_cli, tmp_path: Path) -> None:
    done = kit_cli("status", tmp_path / f"run-{ENV_TOKEN}", env={"HF_TOKEN": ENV_TOKEN})
    assert done.returncode == 2 and "not a reproduction run directory" in done.stderr
    assert ENV_TOKEN not in done.stderr and "run-***" in done.stderr


def test_the_evaluation_log_is_redacted(tmp_path: Path) -> None:
    from gpt4allj_kit.evaluate.harness import lm_eval_logging_to

    log = tmp_path / "lm-eval.log"
    with lm_eval_logging_to(log):
        logging.getLogger("lm_eval").warning("model_args: pretrained=x,token=%s", ENV_TOKEN)
        print(f"a progress line with {SHAPED}", file=sys.stderr)
    text = log.read_text()
    assert "model_args" in text and "a progress line" in text
    assert ENV_TOKEN not in text and SHAPED not in text
