"""The training data, prepared exactly as upstream's data.py did at commit a4e8616c (2023-04-13).

Per row (`encode_pair` is the definition, `encode_batch` the fast equivalent, identical row by row):

- if the tokenizer's eos is not ``</s>``, every ``"</s> \\n"`` in the response becomes ``eos + " \\n"``;
- ``prompt_len`` = number of tokens of ``prompt + "\\n"``; when it reaches ``max_length // 2`` the prompt is
  cut to its first ``min(max_length // 2, len(prompt) // 2)`` characters and ``prompt_len`` is recounted
  (truncated at ``max_length // 2``, counting the tokens that are not the pad token, as upstream did);
- the input is ``prompt + "\\n" + response + eos``, truncated at ``max_length``; labels are the input ids with
  the first ``prompt_len`` positions set to -100; everything is right-padded to ``max_length`` (ids with the
  pad token, which is eos when the tokenizer has none; labels with -100; attention mask with 0);
- the tokenized dataset stores each row unpadded (`ROW_COLUMNS`): its real ids and how many of its leading
  positions are masked (label -100); labels, attention mask and padding are the collators' work
  (`batching.py`), which rebuild upstream's padded rows exactly where a mode pads to ``max_length``;
- an empty prompt is encoded like any other (``prompt_len`` counts the ``"\\n"``); a row that leaves fewer
  than two tokens to learn (an empty response leaves only the final eos) cannot be encoded as upstream
  did: upstream asserted that labels are not all -100 and raised when exactly one label was left.
  `encode_pair` / `encode_batch` raise on it; the training drops such rows after the split and counts
  them (`DROP_RULE`, recorded in the run manifest).

The split is ``train_test_split(test_size=0.05, seed=seed)`` and the loaders keep its permutation (the
reference commit did not shuffle). Before any of it, `check_rows` streams every row of the files and
stops on the first one that is unusable (schema, UTF-8, types), naming the file, line or row and column.
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import json_type, sha256_file
from gpt4allj_kit.recipe import VALIDATION_FRACTION

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

    from gpt4allj_kit.config import TrainConfig

IGNORE_INDEX = -100
REQUIRED_COLUMNS = ("prompt", "response")
# A stored row: its real token ids (no padding) and how many leading positions have label -100.
MASKED = "masked"
ROW_COLUMNS = ("input_ids", MASKED)
# Tokens a row leaves to learn after its prompt; upstream's data.py raised on rows with fewer than two
# (all labels -100: an assertion; only the final eos: a bare `raise`), so the kit drops them instead.
LEARNABLE = "learnable"
MIN_LEARNABLE = 2
DROP_RULE = (
    "rows that leave fewer than 2 tokens to learn after the prompt (an empty response leaves only the final "
    "eos) are dropped after the validation split; upstream's data.py stopped on such rows"
)
UPSTREAM_EOS = "</s>"
# Rows per worker below which extra tokenization processes cost more than they save.
_ROWS_PER_PROCESS = 2000
# Characters per needed token beyond which a text is cut before it is tokenized (`_leading_ids`); natural
# text runs 3 to 5 per GPT-2 token, so the cut part nearly always holds enough.
_CHARS_PER_TOKEN = 6
_HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class UnlearnableRowError(ConfigError):
    """A row leaves fewer than two tokens to learn; upstream stopped on such rows too."""

    def __init__(self, message: str, *, row: int = -1) -> None:
        super().__init__(message)
        self.row = row

    def __reduce__(self) -> tuple[Any, ...]:
        # Workers of datasets.map pickle exceptions back to the parent; keep the row across.
        return (type(self), (self.message,), {"row": self.row})


@dataclass(frozen=True)
class DatasetSplits:
    """Tokenized train and validation sets in torch format (`ROW_COLUMNS`: unpadded ids and the masked
    prompt length), and which row of the loaded data each of their rows is (`train_rows[i]`: the row
    behind `train[i]`)."""

    train: datasets.Dataset
    validation: datasets.Dataset
    dropped: DroppedRows = field(default_factory=lambda: DroppedRows())
    train_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    validation_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


# --- per-row definition and batched equivalent ---


def eos_token(tokenizer: PreTrainedTokenizerBase) -> str:
    if tokenizer.eos_token is None:
        raise ConfigError(f"tokenizer {tokenizer.name_or_path!r} has no eos token; the recipe needs one")
    return str(tokenizer.eos_token)


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id padding uses: the tokenizer's pad token, else eos (upstream set pad = eos for GPT-J)."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    eos_token(tokenizer)
    return int(tokenizer.eos_token_id)


def faithful_response(tokenizer: PreTrainedTokenizerBase, response: str) -> str:
    """The response with the dataset's ``"</s> \\n"`` separators written with this tokenizer's eos."""
    return _rewrite_separators(response, eos_token(tokenizer))


def _rewrite_separators(response: str, eos: str) -> str:
    if eos == UPSTREAM_EOS:
        return response
    return response.replace(f"{UPSTREAM_EOS} \n", f"{eos} \n")


def _check_max_length(max_length: int) -> None:
    if max_length < 4:
        raise ConfigError(f"max_length {max_length} is too small: the recipe needs at least 4 tokens")


def _unlearnable(row: int | None, learnable: int, prompt: str) -> UnlearnableRowError:
    what = "every label is -100" if learnable <= 0 else "only the final eos token is left to learn"
    preview = prompt[:60].replace("\n", " ")
    where = "this row" if row is None else f"row {row}"
    return UnlearnableRowError(
        f"{where}: {what} after the prompt (prompt starts {preview!r}); upstream stopped on such rows "
        "too: remove the row or give it a non-empty response",
        row=-1 if row is None else row,
    )


def _padded_row(ids: Sequence[int], prompt_len: int, max_length: int, pad_id: int) -> dict[str, list[int]]:
    n = len(ids)
    masked = min(prompt_len, n)
    return {
        "input_ids": [*ids, *([pad_id] * (max_length - n))],
        "attention_mask": [1] * n + [0] * (max_length - n),
        "labels": [IGNORE_INDEX] * masked + list(ids[masked:]) + [IGNORE_INDEX] * (max_length - n),
    }


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, prompt: str, response: str, max_length: int
) -> dict[str, list[int]]:
    """One row as upstream's tokenize_inputs made it: three tokenizer calls, lists max_length long."""
    _check_max_length(max_length)
    half = max_length // 2
    eos = eos_token(tokenizer)
    pad_id = pad_token_id(tokenizer)
    response = faithful_response(tokenizer, response)
    head = prompt
    prompt_len = len(tokenizer(head + "\n")["input_ids"])
    if prompt_len >= half:
        head = prompt[: min(half, len(prompt) // 2)]
        cut = tokenizer(head + "\n", max_length=half, truncation=True)["input_ids"]
        # Upstream counted tokens that are not the pad token (pad = eos: an eos in the prompt is not counted).
        prompt_len = sum(1 for token in cut if token != pad_id)
    ids = tokenizer(head + "\n" + response + eos, max_length=max_length, truncation=True)["input_ids"]
    learnable = len(ids) - prompt_len
    if learnable < MIN_LEARNABLE:
        raise _unlearnable(None, learnable, prompt)
    return _padded_row(ids, prompt_len, max_length, pad_id)


@dataclass(frozen=True)
class EncodedArrays:
    """A batch as (rows, max_length) arrays, plus the rows that leave fewer than two tokens to learn."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray
    learnable: np.ndarray  # tokens each row leaves to learn after its prompt
    unlearnable: list[tuple[int, int]]  # (row in batch, learnable token count) below MIN_LEARNABLE


def _prompt_lengths(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], half: int, pad_id: int
) -> tuple[list[str], np.ndarray]:
    heads = tokenizer([p + "\n" for p in prompts], return_attention_mask=False, verbose=False)["input_ids"]
    lengths = np.fromiter((len(ids) for ids in heads), dtype=np.int64, count=len(heads))
    long_rows = np.flatnonzero(lengths >= half)
    if long_rows.size == 0:
        return prompts, lengths
    prompts = list(prompts)
    for i in long_rows:
        prompts[i] = prompts[i][: min(half, len(prompts[i]) // 2)]
    cut = tokenizer(
        [prompts[i] + "\n" for i in long_rows], max_length=half, truncation=True, return_attention_mask=False
    )["input_ids"]
    for i, ids in zip(long_rows, cut, strict=True):
        lengths[i] = sum(1 for token in ids if token != pad_id)
    return prompts, lengths


def _rows_in_three_calls(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], tails: list[str], max_length: int, pad_id: int
) -> tuple[list[list[int]], np.ndarray]:
    """Every row's ids (truncated) and prompt length: prompts alone, cut prompts, then whole texts."""
    cut_prompts, prompt_lens = _prompt_lengths(tokenizer, prompts, max_length // 2, pad_id)
    texts = [p + "\n" + t for p, t in zip(cut_prompts, tails, strict=True)]
    rows = tokenizer(texts, max_length=max_length, truncation=True, return_attention_mask=False)["input_ids"]
    return rows, prompt_lens


def splits_like_gpt2(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when `tokenizer` cuts text into pieces as GPT-2's does, read from its backend (never assumed):
    byte-level BPE behind GPT-2's pre-tokenizer regex, no normalizer, no tokens added around a sequence,
    and added tokens that hold no whitespace and strip none. For such a tokenizer `_joins_cleanly` says
    when a text's tokens are its two parts' tokens end to end."""
    from tokenizers import models, pre_tokenizers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    pre = backend.pre_tokenizer
    if not isinstance(pre, pre_tokenizers.ByteLevel) or not pre.use_regex or pre.add_prefix_space:
        return False
    if backend.normalizer is not None or not isinstance(backend.model, models.BPE) or backend.model.dropout:
        return False
    post = backend.post_processor
    if post is not None and post.num_special_tokens_to_add(False) != 0:
        return False
    return not any(
        t.lstrip or t.rstrip or any(ch.isspace() for ch in t.content)
        for t in tokenizer.added_tokens_decoder.values()
    )


def _visible(ch: str) -> bool:
    # Letters, digits, punctuation and symbols: never whitespace to the regex (\s is Unicode's White_Space).
    return unicodedata.category(ch)[0] in "LNPS"


def _joins_cleanly(head: str, tail: str, added_starts: frozenset[str]) -> bool:
    """For a tokenizer that `splits_like_gpt2`: whether the tokens of head + "\n" + tail are those of
    head + "\n" followed by those of tail.

    Added tokens (whitespace-free) cannot span the "\n", and BPE never merges across the regex's pieces, so
    this holds when the regex makes the "\n" a piece of its own, as it does alone at the end of head + "\n":
    head is empty or ends in a visible character (the regex joins whitespace only to whitespace), and tail
    is empty or starts with a visible character, or with one space before a visible one that does not begin
    an added token (longer whitespace runs, or one that ends where an added token starts, take the "\n" in).
    The regex looks at no character before its match, so tail's pieces are the same after the "\n" as alone.
    """
    if head and not _visible(head[-1]):
        return False
    if not tail or _visible(tail[0]):
        return True
    return tail[0] == " " and len(tail) > 1 and _visible(tail[1]) and tail[1] not in added_starts


def _ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(texts, return_attention_mask=False, verbose=False)["input_ids"]


def _safe_cut(text: str, start: int) -> int | None:
    """The first position at or after `start` holding a space after a visible character, or None. For a
    tokenizer that `splits_like_gpt2`, the tokens of text[:cut] are the first tokens of text: the regex ends
    a piece at every such space (only whitespace joins whitespace, and it looks at no character behind
    it), no (whitespace-free) added token spans it, and BPE never merges across pieces."""
    cut = text.find(" ", max(start, 1))
    while cut != -1 and not _visible(text[cut - 1]):
        cut = text.find(" ", cut + 1)
    return None if cut == -1 else cut


def _leading_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str], needs: list[int]) -> list[list[int]]:
    """For each text, either all of its tokens or a prefix of them at least `needs[i]` long. Upstream
    tokenized every text whole and threw away what truncation cut; a text of more than
    `_CHARS_PER_TOKEN` characters per needed token is cut at a `_safe_cut` first, and tokenized whole only
    when the cut part turns out to hold fewer tokens than needed."""
    parts = []
    for text, need in zip(texts, needs, strict=True):
        budget = need * _CHARS_PER_TOKEN
        cut = _safe_cut(text, budget) if len(text) > budget else None
        parts.append(text if cut is None else text[:cut])
    ids = _ids(tokenizer, parts)
    redo = [i for i, part in enumerate(parts) if len(ids[i]) < needs[i] and len(part) < len(texts[i])]
    for i, whole in zip(redo, _ids(tokenizer, [texts[i] for i in redo]), strict=True):
        ids[i] = whole
    return ids


def _rows_by_parts(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], tails: list[str], max_length: int, pad_id: int
) -> tuple[list[list[int]], np.ndarray]:
    """`_rows_in_three_calls`' values with each text tokenized once and no further than the row needs, for
    a tokenizer that `splits_like_gpt2`: prompt + "\n" alone (its length is the prompt length; a prompt
    only needs enough tokens to tell that it reaches half of max_length, and is then cut as upstream cut
    it), the response + eos alone, and the row their ids end to end where `_joins_cleanly` holds; the few
    rows where it does not are tokenized whole, as upstream did. Upstream tokenized every prompt twice."""
    half = max_length // 2
    heads = _leading_ids(tokenizer, [p + "\n" for p in prompts], [half] * len(prompts))
    lengths = np.fromiter((len(ids) for ids in heads), dtype=np.int64, count=len(heads))
    long_rows = np.flatnonzero(lengths >= half)
    cut_prompts = list(prompts)
    for i in long_rows:
        cut_prompts[i] = prompts[i][: min(half, len(prompts[i]) // 2)]
    for i, ids in zip(long_rows, _ids(tokenizer, [cut_prompts[i] + "\n" for i in long_rows]), strict=True):
        heads[i] = ids
        # Upstream counted the cut prompt truncated at half, leaving out pad tokens (pad = eos).
        lengths[i] = sum(1 for token in ids[:half] if token != pad_id)
    room = [max(0, max_length - len(head)) for head in heads]
    tail_ids = _leading_ids(tokenizer, tails, room)
    rows = [head[:max_length] + tail[:n] for head, tail, n in zip(heads, tail_ids, room, strict=True)]
    added_starts = frozenset(t.content[0] for t in tokenizer.added_tokens_decoder.values() if t.content)
    unclean = [i for i in range(len(rows)) if not _joins_cleanly(cut_prompts[i], tails[i], added_starts)]
    if unclean:
        texts = [cut_prompts[i] + "\n" + tails[i] for i in unclean]
        whole = tokenizer(texts, max_length=max_length, truncation=True, return_attention_mask=False)
        for i, ids in zip(unclean, whole["input_ids"], strict=True):
            rows[i] = ids
    return rows, lengths


def encoded_rows(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], responses: Sequence[str], max_length: int
) -> tuple[list[list[int]], np.ndarray]:
    """Each row's real ids (truncated at max_length, no padding) and its prompt length, in a few batched
    tokenizer calls; the same values as `encode_pair` row by row.

    A tokenizer that `splits_like_gpt2` (GPT-J's) tokenizes each prompt and each response once
    (`_rows_by_parts`); any other, as upstream's rules read: prompts alone, then whole texts."""
    _check_max_length(max_length)
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    eos = eos_token(tokenizer)
    pad_id = pad_token_id(tokenizer)
    if not prompts:
        return [], np.zeros(0, dtype=np.int64)
    tails = [_rewrite_separators(r, eos) + eos for r in responses]
    encode = _rows_by_parts if splits_like_gpt2(tokenizer) else _rows_in_three_calls
    return encode(tokenizer, list(prompts), tails, max_length, pad_id)


def encode_arrays(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], responses: Sequence[str], max_length: int
) -> EncodedArrays:
    """`encoded_rows` padded to max_length as upstream's rows were, with labels and attention mask."""
    rows, prompt_lens = encoded_rows(tokenizer, prompts, responses, max_length)
    pad_id = pad_token_id(tokenizer)
    if not rows:
        empty = np.zeros((0, max_length), dtype=np.int64)
        return EncodedArrays(empty, empty.copy(), empty.copy(), np.zeros(0, dtype=np.int64), [])
    lengths = np.fromiter((len(ids) for ids in rows), dtype=np.int64, count=len(rows))
    input_ids = np.full((len(rows), max_length), pad_id, dtype=np.int64)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = ids
    positions = np.arange(max_length)
    real = positions < lengths[:, None]
    labels = np.where(real & (positions >= prompt_lens[:, None]), input_ids, IGNORE_INDEX)
    learnable = lengths - prompt_lens
    unlearnable = [(int(i), int(learnable[i])) for i in np.flatnonzero(learnable < MIN_LEARNABLE)]
    return EncodedArrays(input_ids, real.astype(np.int64), labels, learnable, unlearnable)


def encode_batch(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], responses: Sequence[str], max_length: int
) -> dict[str, list[list[int]]]:
    """Many rows at once with the fast tokenizer, identical to `encode_pair` row by row."""
    arrays = encode_arrays(tokenizer, prompts, responses, max_length)
    if arrays.unlearnable:
        row, learnable = arrays.unlearnable[0]
        raise _unlearnable(row, learnable, prompts[row])
    return {
        "input_ids": arrays.input_ids.tolist(),
        "attention_mask": arrays.attention_mask.tolist(),
        "labels": arrays.labels.tolist(),
    }


# --- loading ---


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _train_files(files: list[Path]) -> list[Path]:
    # Hub layouts name shards by split (data/train-00000-of-00004.parquet); other splits are not for training.
    named_train = [f for f in files if f.name.startswith("train")]
    return named_train or files


def data_files(folder: Path) -> list[Path]:
    """The files a folder's dataset is read from, in a fixed order.

    ``*_clean.jsonl`` at the top (upstream's layout) first; else every ``*.jsonl``; else every ``*.parquet``
    (the hub's layout, ``data/*.parquet``). Hidden folders (download caches) are skipped.
    """
    clean = sorted(folder.glob("*_clean.jsonl"))
    if clean:
        return clean
    for pattern in ("*.jsonl", "*.parquet"):
        found = sorted(p for p in folder.rglob(pattern) if p.is_file() and not _is_hidden(p, folder))
        if found:
            return _train_files(found)
    raise ConfigError(f"{folder}: no *_clean.jsonl, *.jsonl or *.parquet files in this folder")


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "json"
    if suffix == ".parquet":
        return "parquet"
    raise ConfigError(f"{path}: unsupported data file (expected .jsonl, .json or .parquet)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[-1][:200]


# --- row checks: every row's schema, encoding and types, streamed (no tokenizer) ---


@dataclass
class RowCheck:
    """What a pass over every row of the data files found (raised as one line when a row is unusable)."""

    files: int = 0
    rows: int = 0
    empty_prompts: int = 0
    empty_responses: int = 0

    def count(self, prompt: str, response: str) -> None:
        self.rows += 1
        self.empty_prompts += not prompt
        self.empty_responses += not response


def _json_kind(value: object) -> str:
    # The recipe's columns are text: said so, rather than JSON's "a string".
    return "text" if isinstance(value, str) else json_type(value)


def _missing_column(where: str, column: str, found: Iterable[str]) -> ConfigError:
    return ConfigError(
        f"{where}: missing column {column!r} (found {', '.join(found) or 'none'}; "
        f"the recipe needs {' and '.join(REQUIRED_COLUMNS)})"
    )


class _JsonRows:
    """The JSON rows of one or more files, checked one by one; a column keeps one type across them all
    (datasets cannot load a column that holds text in one row and numbers in another)."""

    def __init__(self, check: RowCheck) -> None:
        self.check = check
        self.kinds: dict[str, tuple[str, str]] = {}  # column -> (kind, where it was first seen)

    def row(self, record: object, where: str) -> None:
        if not isinstance(record, dict):
            raise ConfigError(f"{where}: not a JSON object")
        for column in REQUIRED_COLUMNS:
            if column not in record:
                raise _missing_column(where, column, record)
            value = record[column]
            if value is None:
                raise ConfigError(f"{where}: column {column!r} is null (the recipe needs text)")
            if not isinstance(value, str):
                raise ConfigError(f"{where}: column {column!r} is {_json_kind(value)}, not text")
        for column, value in record.items():
            if value is None:
                continue
            kind = _json_kind(value)
            first = self.kinds.setdefault(column, (kind, where))
            if first[0] != kind:
                raise ConfigError(
                    f"{where}: column {column!r} is {kind}, but {first[0]} at {first[1]}; "
                    "a column holds one type"
                )
        self.check.count(record["prompt"], record["response"])

    def file(self, path: Path) -> None:
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip()
        if path.suffix.lower() == ".json" and head.startswith(b"["):
            self._document(path)
            return
        with path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue  # datasets skips blank lines too
                where = f"{path}: line {number} (row {self.check.rows})"
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ConfigError(f"{where}: {_not_utf8(line, exc)}") from None
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{where}: not JSON ({exc.msg} at character {exc.colno})") from None
                self.row(record, where)

    def _document(self, path: Path) -> None:
        """A .json file holding one array of rows (datasets reads those too)."""
        raw = path.read_bytes()
        try:
            records = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: {_not_utf8(raw, exc)}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: line {exc.lineno}: not JSON ({exc.msg})") from None
        for index, record in enumerate(records):
            self.row(record, f"{path}: item {index} (row {self.check.rows})")


def _not_utf8(raw: bytes, exc: UnicodeDecodeError) -> str:
    """Which column holds the bytes that are not UTF-8, when the rest of the line is readable JSON."""
    where = f"byte 0x{raw[exc.start]:02x} at offset {exc.start}"
    try:
        record = json.loads(raw.decode("utf-8", errors="surrogateescape"))
    except json.JSONDecodeError:
        return f"not UTF-8 ({where})"
    bad = (
        [k for k, v in record.items() if isinstance(v, str) and _has_surrogates(v)]
        if isinstance(record, dict)
        else []
    )
    what = f"column {bad[0]!r}" if bad else "it"
    return f"{what} holds bytes that are not UTF-8 ({where}); the data must be UTF-8 text"


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _parquet_rows(path: Path, check: RowCheck, first: tuple[Path, Any] | None) -> tuple[Path, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ConfigError(f"{path}: not a readable parquet file ({_first_line(exc)})") from None
    for column in REQUIRED_COLUMNS:
        if column not in schema.names:
            raise _missing_column(str(path), column, schema.names)
        kind = schema.field(column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise ConfigError(f"{path}: column {column!r} holds {kind}, not text")
    if first is not None and not first[1].equals(schema):
        raise ConfigError(f"{path}: its columns ({schema.names}) differ from those of {first[0]}")
    offset = check.rows
    for batch in parquet.iter_batches(columns=list(REQUIRED_COLUMNS), batch_size=65536):
        columns = {name: batch.column(name) for name in REQUIRED_COLUMNS}
        for name, values in columns.items():
            if values.null_count:
                row = int(pc.index(pc.is_null(values), True).as_py())
                raise ConfigError(
                    f"{path}: row {offset + row}: column {name!r} is null (the recipe needs text)"
                )
            try:
                values.validate(full=True)
            except pa.ArrowInvalid:
                row = next(i for i, v in enumerate(values.cast(pa.binary()).to_pylist()) if not _is_utf8(v))
                raise ConfigError(
                    f"{path}: row {offset + row}: column {name!r} holds bytes that are not UTF-8"
                ) from None
        empty = {name: _empty_count(pc, values) for name, values in columns.items()}
        check.rows += batch.num_rows
        check.empty_prompts += empty["prompt"]
        check.empty_responses += empty["response"]
        offset += batch.num_rows
    return first or (path, schema)


def _empty_count(pc: Any, values: Any) -> int:
    return int(pc.sum(pc.equal(pc.binary_length(values), 0)).as_py() or 0)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_rows(files: list[Path]) -> RowCheck:
    """Every row of the data files, streamed: the schema (prompt and response present), the encoding
    (UTF-8), the types (text, never null; other columns one type each). A bad row is one ConfigError line
    naming the file, the line or row, and the column. Nothing is tokenized: empty prompts and responses
    are counted here and handled by the encoding (see `split_and_tokenize`).

    The training loads its data through this check (`load_raw_dataset`), and `gpt4allj-kit train` calls it
    before launching anything.
    """
    formats = {_file_format(f) for f in files}
    if len(formats) > 1:
        raise ConfigError(f"{files[0].parent}: mixes jsonl and parquet files; point at one kind")
    check = RowCheck(files=len(files))
    json_rows = _JsonRows(check)
    first_schema: tuple[Path, Any] | None = None
    for path in files:
        before = check.rows
        if _file_format(path) == "parquet":
            first_schema = _parquet_rows(path, check, first_schema)
        else:
            json_rows.file(path)
        if check.rows == before:
            raise ConfigError(f"{path}: the file holds no rows")
    return check


def _check_values(dataset: datasets.Dataset, where: str) -> None:
    if len(dataset) == 0:
        raise ConfigError(f"{where}: the dataset holds no rows")
    for column in REQUIRED_COLUMNS:
        feature = dataset.features[column]
        dtype = getattr(feature, "dtype", None)
        if dtype not in ("string", "large_string"):
            raise ConfigError(f"{where}: column {column!r} holds {feature}, not text")


def _load_files(files: list[Path]) -> datasets.Dataset:
    import datasets

    try:
        return datasets.load_dataset(
            _file_format(files[0]), data_files=[str(f) for f in files], split="train"
        )
    except Exception as exc:  # datasets wraps reader failures in several exception types
        names = files[0].name if len(files) == 1 else f"{files[0].parent} ({len(files)} files)"
        raise ConfigError(f"{names}: cannot be read as a dataset ({_first_line(exc)})") from None


def _file_records(files: list[Path], root: Path | None, *, hashed: bool = True) -> list[dict[str, Any]]:
    return [
        {
            "path": str(f.relative_to(root)) if root is not None else str(f),
            "size": f.stat().st_size,
            "sha256": sha256_file(f) if hashed else None,
        }
        for f in files
    ]


def _snapshot_records(files: list[Path], snap: Any) -> list[dict[str, Any]]:
    """The loaded files' records, with the hashes the fetch already verified where it has them."""
    verified = {entry.path: entry for entry in getattr(snap, "files", ())}
    records = []
    for record in _file_records(files, Path(snap.path), hashed=False):
        entry = verified.get(record["path"])
        record["sha256"] = (
            entry.sha256 if entry is not None else sha256_file(Path(snap.path) / record["path"])
        )
        records.append(record)
    return records


def local_path(name: str, key: str) -> Path | None:
    """The local file or folder `name` names; None when it is a hub repo id (`org/name`) instead; a
    one-line ConfigError naming the config `key` when it is neither."""
    local = Path(name).expanduser()
    if local.exists():
        return local
    if _HUB_REPO_ID.match(name):
        return None
    raise ConfigError(f"{key} {name!r}: no such file or folder, and not a hub repo id")


def dataset_files(path: Path) -> list[Path]:
    """The files a dataset path is read from: the file itself, or a folder's `data_files`."""
    if path.is_dir():
        return data_files(path)
    _file_format(path)
    return [path]


def load_raw_dataset(
    dataset_path: str, *, revision: str, cache_dir: Path | str | None = None
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """The raw rows (prompt, response, and whatever else the files hold) and where they came from.

    `dataset_path` is a local jsonl/parquet file, a folder of them, or a hub dataset repo id, which is
    fetched by commit through `fetch_snapshot` (`revision` applies to hub repos only; local files have
    none). Every row passes `check_rows` first. Provenance: source, path, repo_id, revision, sha, files
    [{path, size, sha256}], rows, and the counts of empty prompts and responses.
    """
    local = local_path(dataset_path, "dataset_path")
    if local is not None:
        files = dataset_files(local)
        provenance: dict[str, Any] = {
            "source": "local",
            "path": str(local.resolve()),
            "repo_id": None,
            "revision": None,
            "sha": None,
            "files": _file_records(files, None),
        }
    else:
        from gpt4allj_kit.fetch.snapshot import fetch_snapshot

        snap = fetch_snapshot(dataset_path, repo_type="dataset", revision=revision, cache_dir=cache_dir)
        files = dataset_files(Path(snap.path))
        provenance = {
            "source": "hub",
            "path": str(snap.path),
            "repo_id": snap.repo_id,
            "revision": snap.revision,
            "sha": snap.sha,
            "files": _snapshot_records(files, snap),
        }
    checked = check_rows(files)
    dataset = _load_files(files)
    _check_values(dataset, dataset_path)
    if len(dataset) != checked.rows:
        raise ConfigError(f"{dataset_path}: {checked.rows} rows checked, but datasets read {len(dataset)}")
    provenance["rows"] = len(dataset)
    provenance["empty"] = {"prompts": checked.empty_prompts, "responses": checked.empty_responses}
    return dataset, provenance


# --- split and tokenize ---


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def tokenize_processes(requested: int, rows: int, *, streaming: bool = False) -> int:
    """Worker processes for tokenization: the config's num_proc, capped by cores and by the work there is."""
    if streaming:
        return 1  # upstream passed num_proc only when not streaming
    return max(1, min(requested, available_cores(), math.ceil(rows / _ROWS_PER_PROCESS)))


class _BatchEncoder:
    """datasets.map function: each row unpadded (int32 ids, its masked count) and its learnable count."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        # datasets fingerprints this object (not the code of its methods) to reuse cached results: the
        # hash of this module makes a kit update that changes the encoding re-tokenize instead.
        self.code_sha = sha256_file(Path(__file__))

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        # Stored unpadded: no padded arrays are built here (padding is the collators' work).
        rows, prompt_lens = encoded_rows(self.tokenizer, batch["prompt"], batch["response"], self.max_length)
        lengths = np.fromiter((len(ids) for ids in rows), dtype=np.int64, count=len(rows))
        return {
            "input_ids": [np.asarray(ids, dtype=np.int32) for ids in rows],
            MASKED: np.minimum(prompt_lens, lengths).astype(np.int32),
            LEARNABLE: (lengths - prompt_lens).astype(np.int32),
        }


def tokenize_dataset(
    raw: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, *, num_proc: int = 1
) -> datasets.Dataset:
    """Every row of `raw` encoded and stored unpadded, in torch format (`ROW_COLUMNS`), with a `learnable`
    column: the tokens each row leaves to learn (see `split_and_tokenize` for the rows with fewer than
    two)."""
    import datasets

    features = datasets.Features(
        {
            "input_ids": datasets.List(datasets.Value("int32")),
            MASKED: datasets.Value("int32"),
            LEARNABLE: datasets.Value("int32"),
        }
    )
    processes = tokenize_processes(num_proc, len(raw))
    tokenized = raw.map(
        _BatchEncoder(tokenizer, max_length),
        batched=True,
        remove_columns=raw.column_names,
        features=features,
        num_proc=processes if processes > 1 else None,
        desc="tokenizing",
    )
    tokenized.set_format("torch", columns=list(ROW_COLUMNS))
    return tokenized


@dataclass(frozen=True)
class DroppedRows:
    """The rows left out by the one documented rule (`DROP_RULE`): which, and from which split."""

    rows: tuple[int, ...] = ()  # indices in the loaded data
    train: int = 0
    validation: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": DROP_RULE,
            "rows": len(self.rows),
            "train": self.train,
            "validation": self.validation,
            "first": list(self.rows[:20]),
        }


def _learnable(dataset: datasets.Dataset) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy", columns=[LEARNABLE])[LEARNABLE])


def _learnable_only(dataset: datasets.Dataset) -> tuple[datasets.Dataset, int]:
    """The rows of a split that leave something to learn (in the split's order), the stored row's
    columns only; and how many were left out."""
    keep = np.flatnonzero(_learnable(dataset) >= MIN_LEARNABLE)
    kept = dataset.select(keep) if keep.size < len(dataset) else dataset
    kept = kept.remove_columns(LEARNABLE)
    kept.set_format("torch", columns=list(ROW_COLUMNS))
    return kept, len(dataset) - int(keep.size)


def split_rows(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): the loaded data's row numbers in the order upstream's
    `train_test_split(test_size=0.05, seed=seed)` puts them, from the row count and the seed alone.

    datasets draws `np.random.default_rng(seed).permutation(rows)` and takes the first
    `ceil(0.05 * rows)` for the test split, the rest for train (tests check it against datasets itself).
    """
    validation = math.ceil(VALIDATION_FRACTION * rows)
    permutation = np.random.default_rng(seed).permutation(rows)
    return permutation[validation:], permutation[:validation]


def kept_rows(rows: np.ndarray, learnable: np.ndarray) -> np.ndarray:
    """The rows of a split (its order) that leave something to learn (`learnable`: per loaded row)."""
    return rows[learnable[rows] >= MIN_LEARNABLE]


def split_and_tokenize(
    raw: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, config: TrainConfig
) -> DatasetSplits:
    """Upstream's 5% validation split with the config seed, rows encoded as `encode_pair` defines.

    Rows are tokenized before the split: encoding is per row, and `train_test_split` draws its
    permutation from the seed and the row count alone, so the result is the same as upstream's
    split-then-tokenize. Rows that leave fewer than two tokens to learn (an empty response: upstream's
    data.py raised on them) are then dropped from their split (`DROP_RULE`), after the split, so every
    other row keeps the split and the position upstream's permutation gives it.
    """
    num_proc = 1 if config.streaming else config.num_proc
    tokenized = tokenize_dataset(raw, tokenizer, config.max_length, num_proc=num_proc)
    learnable = _learnable(tokenized)
    unlearnable = np.flatnonzero(learnable < MIN_LEARNABLE)
    split = tokenized.train_test_split(test_size=VALIDATION_FRACTION, seed=config.seed)
    train, from_train = _learnable_only(split["train"])
    validation, from_validation = _learnable_only(split["test"])
    dropped = DroppedRows(tuple(int(i) for i in unlearnable), from_train, from_validation)
    if len(train) == 0:
        raise ConfigError(
            f"{config.dataset_path}: no training rows left: every row of the training split leaves fewer "
            f"than {MIN_LEARNABLE} tokens to learn (empty responses?)"
        )
    train_rows, validation_rows = (kept_rows(r, learnable) for r in split_rows(len(tokenized), config.seed))
    if (len(train_rows), len(validation_rows)) != (len(train), len(validation)):
        raise RuntimeError("split_rows disagrees with datasets' train_test_split (a datasets change?)")
    return DatasetSplits(train, validation, dropped, train_rows, validation_rows)
