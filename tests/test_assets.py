"""The tiny offline world: deterministic from a seed, in the real schema, loadable as a GPT-J."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from gpt4allj_kit.assets import EOS, SOURCES, TinyAssets, synthetic_rows, tiny_assets

SMOKE_MAX_LENGTH = 128  # configs/profiles/smoke.yaml


def test_same_seed_in_two_processes_is_byte_identical(tmp_path: Path, kit_cli) -> None:
    # One copy from the CLI in a fresh process, one from this (test) process.
    result = kit_cli("assets", "--seed", "7", "--rows", "300", "--output", str(tmp_path / "cli"), "--json")
    assert result.returncode == 0, result.stderr
    reported = json.loads(result.stdout)
    assert (reported["seed"], reported["rows"]) == (7, 300)
    here = tiny_assets(tmp_path / "here", seed=7, rows=300)
    assert Path(reported["root"]) != here.root
    assert reported["sha256"] == here.checksums()
    expected = {"model/model.safetensors", "tokenizer/tokenizer.json", "data/train.parquet"}
    assert expected <= set(reported["sha256"])
    # The files on disk are what the command reported.
    assert TinyAssets(Path(reported["root"]), 7).checksums() == reported["sha256"]
    # A different seed changes the model, the tokenizer and the data.
    other = tiny_assets(tmp_path / "other", seed=8, rows=300).checksums()
    for name in ("model/model.safetensors", "tokenizer/tokenizer.json", "data/train.jsonl"):
        assert other[name] != reported["sha256"][name], name


def test_rows_are_deterministic_and_seed_dependent() -> None:
    assert synthetic_rows(3, 50) == synthetic_rows(3, 50)
    assert synthetic_rows(3, 50) != synthetic_rows(4, 50)


@pytest.fixture(scope="module")
def rows(tiny: TinyAssets) -> list[dict[str, str]]:
    return [json.loads(line) for line in tiny.jsonl.read_text(encoding="utf-8").splitlines()]


def test_dataset_schema_jsonl_and_parquet_agree(tiny: TinyAssets, rows: list[dict[str, str]]) -> None:
    assert len(rows) == 3000
    assert all(set(r) == {"prompt", "response", "source"} for r in rows)
    table = pq.read_table(tiny.parquet)
    assert table.column_names == ["prompt", "response", "source"]
    assert table.to_pylist() == rows


def test_dataset_has_the_shapes_the_recipe_must_handle(tiny: TinyAssets, rows: list[dict[str, str]]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.tokenizer_dir)
    prompt_tokens = [len(ids) for ids in tokenizer([r["prompt"] + "\n" for r in rows])["input_ids"]]
    long_prompts = sum(n >= SMOKE_MAX_LENGTH // 2 for n in prompt_tokens)
    assert 0.01 * len(rows) < long_prompts < 0.2 * len(rows)
    assert sum("</s> \n" in r["response"] for r in rows) > 0.02 * len(rows)
    sources = {r["source"] for r in rows}
    assert len(sources) >= 3 and sources <= set(SOURCES)
    lengths = [len(r["response"]) for r in rows]
    median = statistics.median(lengths)
    # Long tail: a few responses far longer than the typical one.
    assert max(lengths) > 8 * median and statistics.mean(lengths) > median


def test_tiny_model_and_tokenizer_load_as_gptj(tiny: TinyAssets) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    assert tokenizer.eos_token == EOS and tokenizer.pad_token is None
    model = AutoModelForCausalLM.from_pretrained(tiny.model_dir)
    assert type(model).__name__ == "GPTJForCausalLM"
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.vocab_size == len(tokenizer)
    assert (tiny.model_dir / "model.safetensors").exists()
    batch = tokenizer(["What is the kalo of vo?"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()
