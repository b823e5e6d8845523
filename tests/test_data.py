"""Data preparation: upstream's per-row semantics, the batched equivalent, loading, split, the stored rows
(the collators that pad them: tests/test_batching.py)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from gpt4allj_kit import batching, data
from gpt4allj_kit.assets import EOS, TinyAssets, realistic_rows, synthetic_rows
from gpt4allj_kit.config import TrainConfig
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import sha256_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase

MAX_LENGTHS = (32, 128, 512)


@pytest.fixture(scope="module")
def tokenizer(tiny: TinyAssets) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(tiny.tokenizer_dir)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return synthetic_rows(seed=7, rows=1500)


def upstream_reference(
    tokenizer: PreTrainedTokenizerBase, prompt: str, response: str, max_length: int
) -> dict:
    """Upstream's tokenize_inputs for one row, step by step with torch tensors as it was written."""
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token  # upstream's train.py did this
    if tokenizer.eos_token != "</s>" and response.count("</s> \n") > 0:
        response = response.replace("</s> \n", f"{tokenizer.eos_token} \n")
    prompt_len = len(tokenizer(prompt + "\n", return_tensors="pt")["input_ids"][0])
    if prompt_len >= max_length // 2:
        prompt = prompt[: min(max_length // 2, len(prompt) // 2)]
        cut = tokenizer(prompt + "\n", return_tensors="pt", max_length=max_length // 2, truncation=True)
        prompt_len = cut.input_ids.ne(tokenizer.pad_token_id).sum().item()
    tokens = tokenizer(
        prompt + "\n" + response + tokenizer.eos_token,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )["input_ids"].squeeze()
    labels = tokens.clone()
    labels[:prompt_len] = -100
    labels = torch.cat([labels, torch.full((max_length - len(labels),), -100)])
    padded = tokenizer.pad(
        {"input_ids": tokens}, padding="max_length", max_length=max_length, return_tensors="pt"
    )
    return {
        "input_ids": padded["input_ids"].tolist(),
        "attention_mask": padded["attention_mask"].tolist(),
        "labels": labels.tolist(),
    }


def padded_row(stored: dict, max_length: int, pad_token_id: int) -> dict[str, list[int]]:
    """A stored (unpadded) row as upstream's padded lists (the faithful collator's padding)."""
    batch = batching.padded([(stored["input_ids"], int(stored["masked"]))], max_length, pad_token_id)
    return {k: v[0].tolist() for k, v in batch.items()}


# --- encode_pair: the definition ---


@pytest.mark.parametrize("max_length", [64, 256])
def test_encode_pair_is_upstreams_encoding(
    tiny: TinyAssets, rows: list[dict[str, str]], max_length: int
) -> None:
    reference_tokenizer = AutoTokenizer.from_pretrained(tiny.tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny.tokenizer_dir)  # no pad token: the kit must not need one
    sample = rows[:250]
    cut = 0
    for row in sample:
        got = data.encode_pair(tokenizer, row["prompt"], row["response"], max_length)
        assert got == upstream_reference(reference_tokenizer, row["prompt"], row["response"], max_length)
        cut += len(tokenizer(row["prompt"] + "\n")["input_ids"]) >= max_length // 2
    assert tokenizer.pad_token is None
    assert cut > 0, "the sample must exercise the long-prompt cut"


def test_encode_pair_layout(tokenizer: PreTrainedTokenizerBase) -> None:
    prompt, response = "What is the kalo of mi?", "The kalo of mi is ren."
    got = data.encode_pair(tokenizer, prompt, response, 64)
    head = tokenizer(prompt + "\n")["input_ids"]
    full = tokenizer(prompt + "\n" + response + EOS)["input_ids"]
    assert {k: len(v) for k, v in got.items()} == {"input_ids": 64, "attention_mask": 64, "labels": 64}
    assert got["input_ids"][: len(full)] == full
    assert full[-1] == tokenizer.eos_token_id
    assert got["input_ids"][len(full) :] == [tokenizer.eos_token_id] * (64 - len(full))  # pad = eos
    assert got["attention_mask"] == [1] * len(full) + [0] * (64 - len(full))
    assert got["labels"] == [-100] * len(head) + full[len(head) :] + [-100] * (64 - len(full))


def test_separator_rewrite_only_for_a_different_eos(
    tiny: TinyAssets, tokenizer: PreTrainedTokenizerBase
) -> None:
    response = "</s> \nfirst</s> \nsecond </s>\nthird</s> \n"
    assert data.faithful_response(tokenizer, response) == f"{EOS} \nfirst{EOS} \nsecond </s>\nthird{EOS} \n"
    slash_s = AutoTokenizer.from_pretrained(tiny.tokenizer_dir, eos_token="</s>")
    assert data.faithful_response(slash_s, response) == response
    got = data.encode_pair(slash_s, "Hi", response, 64)
    assert got["input_ids"].count(slash_s.convert_tokens_to_ids("</s>")) >= 4  # kept, and eos = "</s>"


def _prompt_of_tokens(tokenizer: PreTrainedTokenizerBase, tokens: int) -> str:
    def count(text: str) -> int:
        return len(tokenizer(text + "\n")["input_ids"])

    prompt = ""
    while count(prompt) < tokens:
        # The longest addition that does not overshoot, so the count lands exactly on `tokens`.
        prompt += next(w for w in (" kalo", " mi", " a", "x", "!") if count(prompt + w) <= tokens)
    assert len(tokenizer(prompt + "\n")["input_ids"]) == tokens
    return prompt


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_long_prompt_cut_starts_exactly_at_half(tokenizer: PreTrainedTokenizerBase, offset: int) -> None:
    max_length = 64
    prompt = _prompt_of_tokens(tokenizer, max_length // 2 + offset)
    got = data.encode_pair(tokenizer, prompt, "The answer.", max_length)
    masked = got["labels"].index(next(v for v in got["labels"] if v != -100))
    if offset < 0:
        assert masked == max_length // 2 - 1
        assert got["input_ids"][:masked] == tokenizer(prompt + "\n")["input_ids"]
    else:
        short = prompt[: min(max_length // 2, len(prompt) // 2)]
        assert masked == len(tokenizer(short + "\n")["input_ids"])
        assert tokenizer.decode(got["input_ids"][:masked]) == short + "\n"


def test_cut_prompt_count_skips_pad_tokens_like_upstream(tokenizer: PreTrainedTokenizerBase) -> None:
    # Upstream recounted the cut prompt with `.ne(pad_token_id)`; pad = eos, so eos inside it is not counted.
    prompt = (EOS + " kalo") * 40
    got = data.encode_pair(tokenizer, prompt, "Yes.", 64)
    short = prompt[:32]
    head = tokenizer(short + "\n")["input_ids"]
    eos_in_head = head.count(tokenizer.eos_token_id)
    assert eos_in_head > 0
    assert got["labels"][: len(head) - eos_in_head] == [-100] * (len(head) - eos_in_head)
    assert got["labels"][len(head) - eos_in_head] != -100


def test_empty_response_is_an_error_as_upstream(tokenizer: PreTrainedTokenizerBase) -> None:
    response = ""
    with pytest.raises(
        data.UnlearnableRowError, match=r"this row: only the final eos token is left to learn"
    ):
        data.encode_pair(tokenizer, "What is kalo?", response, 64)
    with pytest.raises(data.UnlearnableRowError, match=r"^row 1: only the final eos"):
        data.encode_batch(tokenizer, ["Fine?", "What is kalo?"], ["Yes.", response], 64)


def test_unlearnable_error_survives_worker_pickling() -> None:
    error = data._unlearnable(17, 0, "a prompt")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ConfigError)
    assert (copy.row, copy.message) == (17, error.message)
    assert "row 17: every label is -100" in copy.message


# --- encode_batch: identical row by row ---


def _edge_cases() -> list[tuple[str, str]]:
    return [
        ("Translate ü → ß, 日本語 and 🙂 please", "Sure: 🙂 means smile; 日本語 is Japanese ✓"),
        ("日本語" * 200, "长的回答 " * 300),  # multibyte long prompt: the cut is by characters, not bytes
        ("Q", "</s> \nstarts with the separator"),
        ("Q", "ends with the separator</s> \n"),
        ("Q", "</s> \n"),
        ("Q", "a</s> \nb</s> \n</s> \nc"),
        ("", "empty prompt"),
        ("x" * 3000, "y"),
        ("What?\n", "\nleading newline in the response"),
        ("Hi", EOS + " literal eos in the response"),
    ]


@pytest.mark.parametrize("max_length", MAX_LENGTHS)
def test_encode_batch_equals_encode_pair_row_by_row(
    tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, str]], max_length: int
) -> None:
    pairs = [(r["prompt"], r["response"]) for r in rows] + _edge_cases()
    prompts, responses = [p for p, _ in pairs], [r for _, r in pairs]
    batch = data.encode_batch(tokenizer, prompts, responses, max_length)
    cut = truncated = 0
    for i, (prompt, response) in enumerate(pairs):
        one = data.encode_pair(tokenizer, prompt, response, max_length)
        assert {k: v[i] for k, v in batch.items()} == one, f"row {i} differs"
        cut += len(tokenizer(prompt + "\n")["input_ids"]) >= max_length // 2
        truncated += one["attention_mask"][-1] == 1
    assert cut > 0 and truncated > 0, "every length must exercise the long-prompt cut and truncation"


def test_encode_batch_threshold_and_empty_batch(tokenizer: PreTrainedTokenizerBase) -> None:
    prompts = [_prompt_of_tokens(tokenizer, n) for n in (31, 32, 33)]
    batch = data.encode_batch(tokenizer, prompts, ["An answer."] * 3, 64)
    for i, prompt in enumerate(prompts):
        assert {k: v[i] for k, v in batch.items()} == data.encode_pair(tokenizer, prompt, "An answer.", 64)
    assert data.encode_batch(tokenizer, [], [], 64) == {"input_ids": [], "attention_mask": [], "labels": []}


def test_bad_arguments(tokenizer: PreTrainedTokenizerBase) -> None:
    with pytest.raises(ConfigError, match="max_length 2 is too small"):
        data.encode_pair(tokenizer, "a", "b", 2)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        data.encode_batch(tokenizer, ["a", "b"], ["c"], 16)


# --- the real GPT-J tokenizer: realistic rows, and each text tokenized once ---

REAL_MAX_LENGTH = 1024


@pytest.fixture(scope="module")
def gptj(gptj_tokenizer: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(gptj_tokenizer)


@pytest.fixture(scope="module")
def realistic() -> list[dict[str, str]]:
    return realistic_rows(seed=11, rows=3000)


# Prompt endings and response starts around the "\n" between them: the ones where the tokens of
# prompt + "\n" are not the first tokens of the whole text must take the fallback.
_PROMPT_ENDS = (
    "",
    "Why?",
    "Why? ",
    "Why?\n",
    "Why?\t",
    "Why?\u00a0",
    "Why?\x1c",
    "it's",
    "x<|endoftext|>",
    "日本",
)
_RESPONSE_STARTS = (
    "Yes.", " Yes.", "  Yes.", "\nYes.", "\n\nYes.", "\u00a0Yes.", " <|extratoken_5|>x", "<|endoftext|> ok",
    "</s> \nnext", " 42", "\u3000Yes", "\x1cYes", "'s fine", " ", "  ",
)  # fmt: skip


def _edge_pairs() -> list[tuple[str, str]]:
    return [
        *((p, r) for p in _PROMPT_ENDS for r in _RESPONSE_STARTS),
        ("x" * 5000, "y"),  # more characters per token than a cut text is assumed to hold: tokenized whole
        ("Q", "x" * 9000 + " end"),
        ("Q", ("word" + " " * 40) * 300),
        ("Explain: " + "ab " * 3000, "Sure."),  # long prompt, decided from its first tokens
        ("日本語" * 700, "回答 " * 2000),
    ]


def _assert_batch_equals_pairs(
    tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]], max_length: int
) -> dict[str, list[list[int]]]:
    batch = data.encode_batch(tokenizer, [p for p, _ in pairs], [r for _, r in pairs], max_length)
    for i, (prompt, response) in enumerate(pairs):
        one = data.encode_pair(tokenizer, prompt, response, max_length)
        assert {k: v[i] for k, v in batch.items()} == one, (
            f"row {i} differs: {prompt[-20:]!r} / {response[:20]!r}"
        )
    return batch


def test_realistic_rows_encode_as_upstream_with_the_real_tokenizer(
    gptj: PreTrainedTokenizerBase, realistic: list[dict[str, str]]
) -> None:
    pairs = [(r["prompt"], r["response"]) for r in realistic]
    batch = _assert_batch_equals_pairs(gptj, pairs, REAL_MAX_LENGTH)
    half = REAL_MAX_LENGTH // 2
    heads = [len(ids) for ids in gptj([p + "\n" for p, _ in pairs], verbose=False)["input_ids"]]
    shapes = {
        "long prompts (cut)": sum(n >= half for n in heads),
        "long prompts decided from a cut text": sum(len(p) > 6 * half for p, _ in pairs),
        "empty prompts": sum(not p for p, _ in pairs),
        "separators": sum("</s> \n" in r for _, r in pairs),
        "truncated rows": sum(mask[-1] == 1 for mask in batch["attention_mask"]),
        "responses cut before tokenizing": sum(len(r) > 6 * REAL_MAX_LENGTH for _, r in pairs),
        "fallback rows": sum(not data._joins_cleanly(p, r, frozenset("<")) for p, r in pairs),
    }
    assert min(shapes.values()) > 10, shapes


@pytest.mark.parametrize("max_length", [64, REAL_MAX_LENGTH])
def test_edge_cases_encode_as_upstream_with_the_real_tokenizer(
    gptj: PreTrainedTokenizerBase, max_length: int
) -> None:
    _assert_batch_equals_pairs(gptj, _edge_pairs() + _edge_cases(), max_length)


def test_encode_pair_is_upstreams_encoding_with_the_real_tokenizer(
    gptj_tokenizer: Path, realistic: list[dict[str, str]]
) -> None:
    reference_tokenizer = AutoTokenizer.from_pretrained(gptj_tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(gptj_tokenizer)
    sample = [r for r in realistic[:400]] + [{"prompt": p, "response": r} for p, r in _edge_pairs()[::7]]
    for row in sample:
        got = data.encode_pair(tokenizer, row["prompt"], row["response"], REAL_MAX_LENGTH)
        assert got == upstream_reference(reference_tokenizer, row["prompt"], row["response"], REAL_MAX_LENGTH)


def test_a_clean_join_is_the_two_parts_tokens_end_to_end(
    gptj: PreTrainedTokenizerBase, realistic: list[dict[str, str]]
) -> None:
    """The claim the single tokenization stands on, checked directly: where `_joins_cleanly` holds, the
    whole text's tokens are prompt + "\\n"'s then the response's; where it does not, they often are not."""
    pairs = [(r["prompt"], r["response"] + EOS) for r in realistic[:1500]]
    pairs += [(p, r + EOS) for p, r in _edge_pairs()[:-5]]
    heads = gptj([p + "\n" for p, _ in pairs], verbose=False)["input_ids"]
    tails = gptj([t for _, t in pairs], verbose=False)["input_ids"]
    whole = gptj([p + "\n" + t for p, t in pairs], verbose=False)["input_ids"]
    starts = frozenset(t.content[0] for t in gptj.added_tokens_decoder.values())
    clean = [data._joins_cleanly(p, t, starts) for p, t in pairs]
    joined = [h + t == w for h, t, w in zip(heads, tails, whole, strict=True)]
    assert all(j for c, j in zip(clean, joined, strict=True) if c)
    assert sum(not j for c, j in zip(clean, joined, strict=True) if not c) >= 10
    assert sum(clean[:1500]) > 0.9 * 1500  # realistic rows nearly all join cleanly


def test_a_safe_cut_keeps_the_first_tokens(
    gptj: PreTrainedTokenizerBase, realistic: list[dict[str, str]]
) -> None:
    """The claim a cut text stands on: the tokens of text[:cut] are the first tokens of text."""
    texts = [r["response"] + EOS for r in realistic[:300]] + [p + r for p, r in _edge_pairs()]
    texts += ["it's  a\u00a0b c\x1cd <|endoftext|> e\n\n f's ", "日本語 x  y" * 50]
    parts = []
    for text in texts:
        for start in range(1, len(text), max(1, len(text) // 7)):
            cut = data._safe_cut(text, start)
            if cut is not None:
                assert cut >= start
                parts.append((text, text[:cut]))
    whole = gptj([t for t, _ in parts], verbose=False)["input_ids"]
    cut_ids = gptj([c for _, c in parts], verbose=False)["input_ids"]
    assert len(parts) > 1500
    for (text, part), ids, head in zip(parts, whole, cut_ids, strict=True):
        assert ids[: len(head)] == head, (text[len(part) - 10 : len(part) + 10], len(part))


def _variant(tiny: TinyAssets, change: str) -> PreTrainedTokenizerBase:
    from tokenizers import AddedToken, normalizers, pre_tokenizers, processors

    tokenizer = AutoTokenizer.from_pretrained(tiny.tokenizer_dir)
    backend = tokenizer.backend_tokenizer
    if change == "normalizer":
        backend.normalizer = normalizers.NFKC()
    elif change == "prefix space":
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    elif change == "other regex":
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(r"\s+", "isolated"), pre_tokenizers.ByteLevel(use_regex=False)]
        )
    elif change == "bos added":
        eos_id = tokenizer.eos_token_id
        backend.post_processor = processors.TemplateProcessing(
            single=f"{EOS} $A", special_tokens=[(EOS, eos_id)]
        )
    elif change == "stripping added token":
        tokenizer.add_tokens([AddedToken("<mark>", lstrip=True, rstrip=True)])
    return tokenizer


@pytest.mark.parametrize(
    "change", ["normalizer", "prefix space", "other regex", "bos added", "stripping added token"]
)
def test_a_tokenizer_that_does_not_split_like_gpt2_takes_upstreams_calls(
    tiny: TinyAssets, rows: list[dict[str, str]], change: str
) -> None:
    tokenizer = _variant(tiny, change)
    assert not data.splits_like_gpt2(tokenizer)
    pairs = [(r["prompt"], r["response"]) for r in rows[:300]]
    pairs += [(p + " <mark>", " <mark> " + r) for p, r in _edge_pairs()[:40]]
    _assert_batch_equals_pairs(tokenizer, pairs, 128)


def test_gpt2_like_tokenizers_are_detected(
    gptj: PreTrainedTokenizerBase, tokenizer: PreTrainedTokenizerBase
) -> None:
    # The real GPT-J tokenizer and the tiny one (a byte-level BPE trained with GPT-2's pre-tokenizer).
    assert data.splits_like_gpt2(gptj) and data.splits_like_gpt2(tokenizer)


# --- loading ---


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def _records(start: int, n: int) -> list[dict[str, str]]:
    return [{"prompt": f"p{i}", "response": f"r{i}", "source": "s"} for i in range(start, start + n)]


def test_load_jsonl_file_with_provenance(tiny: TinyAssets) -> None:
    raw, provenance = data.load_raw_dataset(str(tiny.jsonl), revision="v1.2-jazzy")
    assert len(raw) == 3000 and {"prompt", "response"} <= set(raw.column_names)
    assert raw[5]["prompt"] == json.loads(tiny.jsonl.read_text().splitlines()[5])["prompt"]
    assert provenance["source"] == "local" and provenance["rows"] == 3000
    assert provenance["revision"] is None and provenance["sha"] is None
    assert provenance["files"] == [
        {"path": str(tiny.jsonl), "size": tiny.jsonl.stat().st_size, "sha256": sha256_file(tiny.jsonl)}
    ]


def test_load_parquet_file_equals_jsonl(tiny: TinyAssets) -> None:
    from_parquet, _ = data.load_raw_dataset(str(tiny.parquet), revision="main")
    from_jsonl, _ = data.load_raw_dataset(str(tiny.jsonl), revision="main")
    assert from_parquet["prompt"] == from_jsonl["prompt"]
    assert from_parquet["response"] == from_jsonl["response"]


def test_folder_of_clean_jsonl_is_upstreams_layout(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "b_clean.jsonl", _records(3, 2))
    _write_jsonl(tmp_path / "a_clean.jsonl", _records(0, 3))
    _write_jsonl(tmp_path / "notes.jsonl", [{"other": 1}])  # not *_clean: ignored, as upstream's glob did
    raw, provenance = data.load_raw_dataset(str(tmp_path), revision="main")
    assert raw["prompt"] == [f"p{i}" for i in range(5)]  # files in name order
    assert [Path(f["path"]).name for f in provenance["files"]] == ["a_clean.jsonl", "b_clean.jsonl"]


def test_folder_of_jsonl_or_hub_layout_parquet(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "plain" / "part1.jsonl", _records(0, 2))
    _write_jsonl(tmp_path / "plain" / "part2.jsonl", _records(2, 2))
    raw, _ = data.load_raw_dataset(str(tmp_path / "plain"), revision="main")
    assert raw["prompt"] == ["p0", "p1", "p2", "p3"]

    hub = tmp_path / "hub"
    _write_parquet(hub / "data" / "train-00001-of-00002.parquet", _records(3, 2))
    _write_parquet(hub / "data" / "train-00000-of-00002.parquet", _records(0, 3))
    _write_parquet(hub / "data" / "test-00000-of-00001.parquet", _records(100, 1))
    _write_parquet(hub / ".cache" / "train-stale.parquet", _records(200, 1))
    raw, provenance = data.load_raw_dataset(str(hub), revision="main")
    assert raw["prompt"] == [f"p{i}" for i in range(5)]
    assert len(provenance["files"]) == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad.jsonl",
            '{"prompt": "p", "source": "s"}\n',
            r"bad.jsonl: line 1 \(row 0\): missing column 'response' \(found prompt, source; ",
        ),
        (
            "bad.jsonl",
            '{"prompt": "p", "response": "r"}\n\nnot json\n',
            r"bad.jsonl: line 3 \(row 1\): not JSON \(Expecting value at character 1\)",
        ),
        ("bad.jsonl", "[1, 2]\n", r"bad.jsonl: line 1 \(row 0\): not a JSON object"),
        ("bad.json", "[1, 2]\n", r"bad.json: item 0 \(row 0\): not a JSON object"),
        ("bad.jsonl", "", r"bad.jsonl: the file holds no rows"),
        ("bad.jsonl", "\n  \n", r"bad.jsonl: the file holds no rows"),
        (
            "bad.jsonl",
            '{"prompt": "p", "response": "r"}\n{"prompt": null, "response": "r"}\n',
            r"bad.jsonl: line 2 \(row 1\): column 'prompt' is null \(the recipe needs text\)",
        ),
        (
            "bad.jsonl",
            '{"prompt": 3, "response": "r"}\n',
            r"line 1 \(row 0\): column 'prompt' is a number, not text",
        ),
        (
            "bad.jsonl",
            '{"prompt": "p", "response": "r", "source": "a"}\n'
            '{"prompt": "p", "response": "r", "source": 7}\n',
            r"line 2 \(row 1\): column 'source' is a number, but text at .*bad.jsonl: line 1 \(row 0\)",
        ),
        ("bad.csv", "prompt,response\n", r"bad.csv: unsupported data file"),
        ("bad.parquet", "not parquet", r"bad.parquet: not a readable parquet file"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        data.load_raw_dataset(str(path), revision="main")
    assert "\n" not in info.value.message


def test_bytes_that_are_not_utf8_are_named_by_file_line_and_column(tmp_path: Path) -> None:
    good = _records(0, 3)
    lines = [json.dumps(r).encode() for r in good]
    lines.insert(2, b'{"prompt": "p", "response": "caf\xe9 au lait", "source": "s"}')  # latin-1 bytes
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ConfigError) as info:
        data.check_rows([path])
    assert info.value.message == (
        f"{path}: line 3 (row 2): column 'response' holds bytes that are not UTF-8 (byte 0xe9 at offset "
        "32); the data must be UTF-8 text"
    )


def test_parquet_rows_are_checked_by_row(tmp_path: Path) -> None:
    nulls = _write_parquet(
        tmp_path / "a" / "nulls.parquet", [*_records(0, 5), {"prompt": "p", "response": None}]
    )
    with pytest.raises(ConfigError, match=r"nulls.parquet: row 5: column 'response' is null"):
        data.check_rows([nulls])
    numbers = _write_parquet(tmp_path / "b" / "numbers.parquet", [{"prompt": 1, "response": "r"}])
    with pytest.raises(ConfigError, match=r"numbers.parquet: column 'prompt' holds int64, not text"):
        data.check_rows([numbers])
    # Row numbers run on across the files of a folder, as the loaded dataset numbers them.
    _write_parquet(tmp_path / "c" / "train-0.parquet", _records(0, 4))
    _write_parquet(tmp_path / "c" / "train-1.parquet", [*_records(4, 2), {"prompt": None, "response": "r"}])
    with pytest.raises(ConfigError, match=r"train-1.parquet: row 6: column 'prompt' is null"):
        data.check_rows(data.dataset_files(tmp_path / "c"))
    other = _write_parquet(tmp_path / "d" / "train-1.parquet", [{"prompt": "p", "response": "r", "x": 1}])
    _write_parquet(tmp_path / "d" / "train-0.parquet", _records(0, 2))
    with pytest.raises(ConfigError, match=r"train-1.parquet: its columns .* differ from those of .*train-0"):
        data.check_rows(data.dataset_files(other.parent))


def test_check_rows_counts_rows_and_empty_fields_in_every_format(tmp_path: Path) -> None:
    records = [*_records(0, 4), {"prompt": "", "response": "r"}, {"prompt": "", "response": ""}]
    jsonl = _write_jsonl(tmp_path / "rows.jsonl", records)
    parquet = _write_parquet(tmp_path / "rows.parquet", records)
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(records), encoding="utf-8")
    for path in (jsonl, parquet, array):
        check = data.check_rows([path])
        assert (check.files, check.rows, check.empty_prompts, check.empty_responses) == (1, 6, 2, 1), path
        raw, provenance = data.load_raw_dataset(str(path), revision="main")
        assert len(raw) == 6 and provenance["empty"] == {"prompts": 2, "responses": 1}


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file or folder, and not a hub repo id"):
        data.load_raw_dataset(str(tmp_path / "nope" / "x.jsonl"), revision="main")
    with pytest.raises(ConfigError, match=r"no \*_clean.jsonl, \*.jsonl or \*.parquet files"):
        data.load_raw_dataset(str(tmp_path), revision="main")
    _write_parquet(tmp_path / "missing.parquet", [{"prompt": "p", "text": "t"}])
    with pytest.raises(ConfigError, match=r"missing.parquet: missing column 'response'"):
        data.load_raw_dataset(str(tmp_path / "missing.parquet"), revision="main")


def test_hub_repo_id_loads_the_snapshot_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpt4allj_kit.fetch import snapshot as hub_snapshot
    from gpt4allj_kit.fetch.lock import FileEntry

    folder = tmp_path / "snapshots" / ("a" * 40)
    shard = _write_parquet(folder / "data" / "train-00000-of-00001.parquet", _records(0, 4))
    (folder / "README.md").write_text("card")
    calls: list[dict[str, Any]] = []

    def fake_snapshot(repo_id: str, **kwargs: Any) -> hub_snapshot.Snapshot:
        # The hub is the one boundary no machine here reaches; fetch_snapshot is tested by the fetch stage.
        calls.append({"repo_id": repo_id, **kwargs})
        entry = FileEntry("data/train-00000-of-00001.parquet", shard.stat().st_size, "f" * 64)
        return hub_snapshot.Snapshot(repo_id, "dataset", kwargs["revision"], "a" * 40, folder, (entry,))

    monkeypatch.setattr(hub_snapshot, "fetch_snapshot", fake_snapshot)
    raw, provenance = data.load_raw_dataset("nomic-ai/gpt4all-j-prompt-generations", revision="v1.2-jazzy")
    assert calls == [
        {
            "repo_id": "nomic-ai/gpt4all-j-prompt-generations",
            "repo_type": "dataset",
            "revision": "v1.2-jazzy",
            "cache_dir": None,
        }
    ]
    assert raw["prompt"] == ["p0", "p1", "p2", "p3"]
    assert provenance == {
        "source": "hub",
        "path": str(folder),
        "repo_id": "nomic-ai/gpt4all-j-prompt-generations",
        "revision": "v1.2-jazzy",
        "sha": "a" * 40,
        "files": [
            {"path": "data/train-00000-of-00001.parquet", "size": shard.stat().st_size, "sha256": "f" * 64}
        ],
        "rows": 4,
        "empty": {"prompts": 0, "responses": 0},
    }


# --- split and tokenize ---


def _train_config(tiny: TinyAssets, tmp_path: Path, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "model_name": str(tiny.model_dir),
        "tokenizer_name": str(tiny.tokenizer_dir),
        "dataset_path": str(tiny.jsonl),
        "output_dir": str(tmp_path / "out"),
        "max_length": 128,
        "num_proc": 1,
        "seed": 42,
    }
    return TrainConfig(**(values | overrides))


def test_split_and_tokenize_is_upstreams_split_and_order(
    tiny: TinyAssets, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    raw, _ = data.load_raw_dataset(str(tiny.jsonl), revision="main")
    splits = data.split_and_tokenize(raw, tokenizer, _train_config(tiny, tmp_path))
    upstream = raw.train_test_split(test_size=0.05, seed=42)
    assert (len(splits.train), len(splits.validation)) == (2850, 150)
    for ours, theirs in ((splits.train, upstream["train"]), (splits.validation, upstream["test"])):
        assert ours.column_names == ["input_ids", "masked"]
        first = ours[0]
        assert all(v.dtype == torch.int64 for v in first.values())
        for i in (0, 1, len(ours) // 2, len(ours) - 1):
            expected = data.encode_pair(tokenizer, theirs[i]["prompt"], theirs[i]["response"], 128)
            assert padded_row(ours[i], 128, data.pad_token_id(tokenizer)) == expected


def test_empty_prompts_train_as_upstream_and_rows_with_nothing_to_learn_are_dropped(
    tiny: TinyAssets, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    """Empty prompts are encoded as upstream encoded them; an empty response (alone or with an empty prompt)
    leaves only the final eos to learn, where upstream's data.py raised: such rows are dropped from their
    split after the split, counted, and every other row keeps upstream's split and order."""
    records = synthetic_rows(seed=3, rows=400)
    records[10]["prompt"] = ""
    records[20]["response"] = ""
    records[30]["prompt"] = records[30]["response"] = ""
    path = _write_jsonl(tmp_path / "rows.jsonl", records)
    raw, provenance = data.load_raw_dataset(str(path), revision="main")
    assert provenance["empty"] == {"prompts": 2, "responses": 2}
    with pytest.raises(data.UnlearnableRowError, match="only the final eos token is left to learn"):
        data.encode_pair(tokenizer, "", "", 64)  # both empty: "\n" is the prompt, eos the only label
    splits = data.split_and_tokenize(raw, tokenizer, _train_config(tiny, tmp_path, max_length=64))

    upstream = raw.train_test_split(test_size=0.05, seed=42)
    empty_prompt_seen = False
    for ours, theirs in ((splits.train, upstream["train"]), (splits.validation, upstream["test"])):
        kept = [row for row in theirs if row["response"]]
        assert len(ours) == len(kept)
        assert ours.column_names == list(data.ROW_COLUMNS)
        for i, row in enumerate(kept):
            expected = data.encode_pair(tokenizer, row["prompt"], row["response"], 64)
            assert padded_row(ours[i], 64, data.pad_token_id(tokenizer)) == expected, i
            if not row["prompt"]:
                empty_prompt_seen = True
                newline = len(tokenizer("\n")["input_ids"])  # upstream's prompt_len of an empty prompt
                assert expected["labels"][:newline] == [-100] * newline
                assert expected["labels"][newline] != -100
    assert empty_prompt_seen
    dropped = splits.dropped
    assert dropped.rows == (20, 30) and dropped.train + dropped.validation == 2
    assert dropped.as_json() == {
        "rule": data.DROP_RULE,
        "rows": 2,
        "train": dropped.train,
        "validation": dropped.validation,
        "first": [20, 30],
    }


def test_a_dataset_with_nothing_to_learn_is_one_line(
    tiny: TinyAssets, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    path = _write_jsonl(tmp_path / "empty.jsonl", [{"prompt": f"q{i}", "response": ""} for i in range(40)])
    raw, _ = data.load_raw_dataset(str(path), revision="main")
    with pytest.raises(ConfigError, match=r"empty.jsonl: no training rows left: every row of the training"):
        data.split_and_tokenize(raw, tokenizer, _train_config(tiny, tmp_path, dataset_path=str(path)))


@pytest.mark.slow
def test_worker_processes_give_the_same_rows_and_drop_the_same_rows(
    tiny: TinyAssets, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    raw, _ = data.load_raw_dataset(str(tiny.jsonl), revision="main")
    assert data.tokenize_processes(64, len(raw)) == min(2, data.available_cores())
    one = data.tokenize_dataset(raw, tokenizer, 64, num_proc=1)
    two = data.tokenize_dataset(raw, tokenizer, 64, num_proc=2)
    assert one[:]["masked"].equal(two[:]["masked"])
    assert all(a.equal(b) for a, b in zip(one[:]["input_ids"], two[:]["input_ids"], strict=True))

    records = raw.to_list()
    records[2712]["response"] = ""
    broken = datasets.Dataset.from_list(records)
    splits = data.split_and_tokenize(
        broken, tokenizer, _train_config(tiny, tmp_path, num_proc=2, max_length=64)
    )
    assert splits.dropped.rows == (2712,)
    assert len(splits.train) + len(splits.validation) == len(records) - 1


def test_tokenize_processes_caps() -> None:
    assert data.tokenize_processes(64, 100) == 1
    assert data.tokenize_processes(64, 10**6) == data.available_cores()
    assert data.tokenize_processes(1, 10**6) == 1
    assert data.tokenize_processes(64, 10**6, streaming=True) == 1
