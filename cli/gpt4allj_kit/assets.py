"""The tiny offline world: a tiny GPT-J, its tokenizer and a synthetic dataset in the real schema.

Everything is made from one seed, in seconds, with no network, and the same seed gives byte-identical
files. The smoke profile and the tests run on these instead of the 6B model and the 800k-row dataset.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gpt4allj_kit.files import atomic_dir, check_writable, sha256_file

if TYPE_CHECKING:
    import numpy as np

EOS = "<|endoftext|>"
SOURCES = ("unified_chip2", "stackoverflow", "laion/unified_abstract_infill", "sharegpt", "dolly")
TINY_MAX_POSITIONS = 512
DEFAULT_SEED = 1234
DEFAULT_ROWS = 3000
ASSETS_VERSION = 1  # bump when the generator changes, so cached assets are rebuilt

_SYLLABLES = (
    "ka", "lo", "mi", "ren", "tas", "vo", "zu", "pel", "dor", "qui", "sa", "ne", "bri", "tol", "fa", "gu",
    "hem", "ix", "jo", "wy", "cal", "mor", "pix", "dun", "ver", "sol", "tri", "ban", "ost", "ely",
)  # fmt: skip
_QUESTIONS = (
    "What is the {a} of {b}?",
    "How do I {a} a {b} with {c}?",
    "Explain why {a} needs {b}.",
    "Write a short note about {a} and {b}.",
    "Can you list the {a} used in {b}?",
    "Translate {a} {b} into plain words.",
)
_ANSWERS = (
    "The {a} of {b} is {c}.",
    "To {a} a {b}, first take {c}, then {d}.",
    "{a} needs {b} because {c} keeps {d} stable.",
    "Here is a note: {a} and {b} meet at {c}.",
    "The {a} used in {b} are {c}, {d} and {e}.",
)


@dataclass(frozen=True)
class TinyAssets:
    """Where the tiny assets of one seed live."""

    root: Path
    seed: int

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def jsonl(self) -> Path:
        return self.data_dir / "train.jsonl"

    @property
    def parquet(self) -> Path:
        return self.data_dir / "train.parquet"

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def checksums(self) -> dict[str, str]:
        return {str(p.relative_to(self.root)): sha256_file(p) for p in self.files()}


def _words(rng: np.random.Generator, count: int) -> list[str]:
    words: set[str] = set()
    while len(words) < count:
        n = int(rng.integers(1, 4))
        words.add("".join(_SYLLABLES[int(i)] for i in rng.integers(0, len(_SYLLABLES), n)))
    return sorted(words)


def _fill(template: str, rng: np.random.Generator, vocab: list[str]) -> str:
    # Zipf-like word choice: a few frequent words, a long tail, as in real text.
    import numpy as np

    picks = np.minimum(rng.zipf(1.3, 5) - 1, len(vocab) - 1)
    slots = dict(zip("abcde", (vocab[int(i)] for i in picks), strict=True))
    return template.format(**slots)


def _row(rng: np.random.Generator, vocab: list[str]) -> dict[str, str]:
    prompt = _fill(_QUESTIONS[int(rng.integers(len(_QUESTIONS)))], rng, vocab)
    if rng.random() < 0.06:
        # Prompts longer than half of max_length exercise the upstream long-prompt cut.
        context = " ".join(_fill(_ANSWERS[int(rng.integers(len(_ANSWERS)))], rng, vocab) for _ in range(40))
        prompt = f"{context}\n{prompt}"
    # Lognormal sentence counts give the long-tailed lengths that make dynamic padding matter.
    sentences = max(1, min(60, int(rng.lognormal(1.0, 0.9))))
    parts = [_fill(_ANSWERS[int(rng.integers(len(_ANSWERS)))], rng, vocab) for _ in range(sentences)]
    if rng.random() < 0.08:
        # Upstream data carries "</s> \n" inside responses; the recipe rewrites it to the real eos.
        cut = int(rng.integers(1, len(parts) + 1))
        parts.insert(cut, "</s> \n")
    response = " ".join(parts)
    source = SOURCES[int(rng.integers(len(SOURCES)))]
    return {"prompt": prompt, "response": response, "source": source}


def synthetic_rows(seed: int, rows: int = DEFAULT_ROWS) -> list[dict[str, str]]:
    """`rows` examples in the schema of nomic-ai/gpt4all-j-prompt-generations (prompt, response, source)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = _words(rng, 400)
    return [_row(rng, vocab) for _ in range(rows)]


def write_rows(rows: list[dict[str, str]], data_dir: Path) -> None:
    """The rows as train.jsonl and train.parquet (the hub's format) in `data_dir`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "train.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    table = pa.table({key: [r[key] for r in rows] for key in ("prompt", "response", "source")})
    pq.write_table(table, data_dir / "train.parquet", compression="snappy")


def train_tokenizer(rows: list[dict[str, str]], out_dir: Path, vocab_size: int = 512) -> None:
    """A byte-level BPE with GPT-J's conventions: `<|endoftext|>` is bos, eos and unk; no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = (f"{r['prompt']}\n{r['response']}" for r in rows)
    tokenizer.train_from_iterator(corpus, trainer=trainer, length=len(rows))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        model_max_length=TINY_MAX_POSITIONS,
    )
    fast.save_pretrained(out_dir)


def save_tiny_gptj(vocab_size: int, eos_id: int, out_dir: Path, seed: int) -> None:
    """A randomly initialised 2-layer GPT-J (safetensors) that trains in seconds on a CPU."""
    import torch
    from transformers import GPTJConfig, GPTJForCausalLM

    config = GPTJConfig(
        vocab_size=vocab_size,
        n_positions=TINY_MAX_POSITIONS,
        n_embd=64,
        n_layer=2,
        n_head=4,
        rotary_dim=8,
        n_inner=None,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = GPTJForCausalLM(config)
    model.save_pretrained(out_dir, safe_serialization=True)


def make_tiny_assets(root: Path, seed: int = DEFAULT_SEED, rows: int = DEFAULT_ROWS) -> TinyAssets:
    """Creates (or replaces) the tiny assets of `seed` under `root`, all at once or not at all."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer

    with atomic_dir(root) as tmp:
        assets = TinyAssets(tmp, seed)
        data = synthetic_rows(seed, rows)
        write_rows(data, assets.data_dir)
        train_tokenizer(data, assets.tokenizer_dir)
        tokenizer = AutoTokenizer.from_pretrained(assets.tokenizer_dir)
        save_tiny_gptj(len(tokenizer), tokenizer.eos_token_id, assets.model_dir, seed)
        # The model folder is self-contained (as hub model repos are): lm-eval and users load it alone.
        tokenizer.save_pretrained(assets.model_dir)
        (tmp / "ASSETS.json").write_text(
            json.dumps({"generator_version": ASSETS_VERSION, "seed": seed, "rows": rows}, sort_keys=True)
            + "\n"
        )
    return TinyAssets(root, seed)


def tiny_assets(cache_root: Path, seed: int = DEFAULT_SEED, rows: int = DEFAULT_ROWS) -> TinyAssets:
    """The tiny assets of `seed`, made once under `cache_root` and reused while they are complete."""
    root = cache_root / f"tiny-v{ASSETS_VERSION}-seed{seed}-rows{rows}"
    marker = root / "ASSETS.json"
    if marker.exists():
        return TinyAssets(root, seed)
    # Generating takes seconds to minutes: a folder that cannot take them is said first.
    check_writable(root, directory=True)
    return make_tiny_assets(root, seed, rows)
