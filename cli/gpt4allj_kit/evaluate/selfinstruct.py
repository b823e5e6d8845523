"""Technical report 1's ground-truth perplexity on the Self-Instruct user-oriented instructions.

Per example: prompt = instruction + " " + first instance's input; ground truth = prompt + " " + its output.
Two modes, and every output says which one ran:

- `faithful` (as upstream's eval_self_instruct.py computed it): windows of stride 512 start at the end of
  the prompt, so the response is scored *without* the prompt in context; the window's first token is not
  predicted, and the summed window losses are weighted by upstream's `trg_len` and divided by `end_loc`
  exactly as upstream did.
- `conditioned`: every response token is scored given everything before it (prompt included), with
  sliding windows of the model's context length moved by stride 512.

Deliberate differences from upstream, both because upstream was written for LLaMA: no special tokens are
added to the tokenizer (on GPT-J that would resize the embedding matrix), and the dtype is the caller's.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from gpt4allj_kit import paths
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import (
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    read_text,
    sha256_file,
)
from gpt4allj_kit.manifest import now_iso, write_manifest
from gpt4allj_kit.redaction import redact_data

Mode = Literal["faithful", "conditioned"]
STRIDE = 512
HISTOGRAM_CLIP = 100.0

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Example:
    id: str
    prompt: str
    target: str  # " " + output, as upstream appended it

    @property
    def ground_truth(self) -> str:
        return self.prompt + self.target


def read_examples(path: Path) -> list[Example]:
    """The examples of a Self-Instruct user-oriented jsonl file, one per line, each checked."""
    examples = []
    for number, line in enumerate(read_text(path, f"--data {path}").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            instance = row["instances"][0]
            examples.append(
                Example(
                    id=str(row.get("id", number)),
                    prompt=row["instruction"] + " " + instance["input"],
                    target=" " + instance["output"],
                )
            )
        except (json.JSONDecodeError, RecursionError, KeyError, IndexError, TypeError) as exc:
            raise ConfigError(
                f"{path}:{number}: not a Self-Instruct row (needs instruction, instances[0].input/output): "
                f"{type(exc).__name__}: {exc}"
            ) from None
    if not examples:
        raise ConfigError(f"--data {path}: no examples")
    return examples


def faithful_perplexity(model: Any, prompt_ids: list[int], gt_ids: list[int], stride: int = STRIDE) -> float:
    """Upstream's number: windows from the end of the prompt, response scored without the prompt."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([gt_ids], device=device)
    seq_len = len(gt_ids)
    nlls: list[torch.Tensor] = []
    prev_end_loc = 0
    end_loc = 0
    for begin_loc in range(len(prompt_ids), seq_len, stride):
        end_loc = min(begin_loc + stride, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = ids[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss.float()
        nlls.append(loss * trg_len)
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    if not nlls:  # upstream would crash: the response adds no token beyond the prompt's tokenization
        return math.nan
    return float(torch.exp(torch.stack(nlls).sum() / end_loc))


def conditioned_perplexity(
    model: Any, prompt_ids: list[int], gt_ids: list[int], max_length: int, stride: int = STRIDE
) -> float:
    """exp(mean NLL of the response tokens), each given everything before it within the model's context."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([gt_ids], device=device)
    seq_len = len(gt_ids)
    first_target = max(len(prompt_ids), 1)  # token 0 has no context to be predicted from
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    prev_end_loc = 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        # Score positions [max(prev_end_loc, first_target), end_loc): each once, with the longest context.
        start = max(prev_end_loc, first_target, begin_loc + 1)
        if start < end_loc:
            with torch.no_grad():
                logits = model(ids[:, begin_loc:end_loc]).logits.float()
            logprobs = torch.log_softmax(logits[0, start - begin_loc - 1 : end_loc - begin_loc - 1], dim=-1)
            targets = ids[0, start:end_loc]
            total += -logprobs.gather(1, targets[:, None]).sum().double().cpu()
            count += end_loc - start
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return math.exp(total.item() / count) if count else math.nan


def model_context_length(model: Any) -> int:
    cfg = model.config
    return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", 2048))


def histogram_png(perplexities: list[float], path: Path, title: str) -> None:
    """Histogram of the perplexities, values above 100 and NaN clipped to 100 (as technical report 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clipped = [HISTOGRAM_CLIP if math.isnan(p) or p > HISTOGRAM_CLIP else p for p in perplexities]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(clipped, bins=50, range=(0, HISTOGRAM_CLIP), color="#4c72b0")
    ax.set_xlabel("ground-truth perplexity (values > 100 and NaN shown at 100)")
    ax.set_ylabel("examples")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def load_model(path: Path, device: str, dtype: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=False)
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    return model, tokenizer


def perplexities(
    model: Any, tokenizer: Any, examples: list[Example], mode: Mode, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """One record per example: id, mode, perplexity and token counts."""
    max_length = model_context_length(model)
    rows = []
    for i, example in enumerate(examples):
        prompt_ids = tokenizer(example.prompt)["input_ids"]
        gt_ids = tokenizer(example.ground_truth)["input_ids"]
        if mode == "faithful":
            ppl = faithful_perplexity(model, prompt_ids, gt_ids)
        else:
            ppl = conditioned_perplexity(model, prompt_ids, gt_ids, max_length)
        rows.append(
            {
                "index": i,
                "id": example.id,
                "mode": mode,
                "perplexity": None if math.isnan(ppl) else ppl,
                "prompt_tokens": len(prompt_ids),
                "ground_truth_tokens": len(gt_ids),
            }
        )
        if progress:
            progress(i + 1, len(examples))
    return rows


def summarize(rows: list[dict[str, Any]], mode: Mode) -> dict[str, Any]:
    values = [r["perplexity"] for r in rows if r["perplexity"] is not None]
    return {
        "mode": mode,
        "count": len(rows),
        "nan_count": len(rows) - len(values),
        "above_100": sum(v > HISTOGRAM_CLIP for v in values),
        "mean": statistics.fmean(values) if values else None,
        "median": statistics.median(values) if values else None,
        "mean_clipped_100": statistics.fmean(
            [
                HISTOGRAM_CLIP if r["perplexity"] is None else min(r["perplexity"], HISTOGRAM_CLIP)
                for r in rows
            ]
        ),
        "stride": STRIDE,
    }


def evaluate_models(
    sources: list[Any],
    data: Path,
    output: Path,
    *,
    mode: Mode,
    device: str,
    dtype: str,
    command: list[str],
    progress: Callable[[str, int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluates each model in turn (`progress(label, done, total)`); the data is checked before any model
    is loaded, so a bad file is one line, not a failure after minutes of loading."""
    from gpt4allj_kit.evaluate.harness import check_model_dir, resolve_device

    read_examples(data)
    check_writable(output, directory=True)
    for source in sources:
        if source.base is not None:
            raise ConfigError(
                f"{source.path}: a LoRA adapter; --suite self-instruct loads full models only "
                "(a kit run's adapter: `gpt4allj-kit export STEP_DIR --merge`)"
            )
        check_model_dir(source.path)
    on_device = resolve_device(device)
    return [
        evaluate_self_instruct(
            source,
            data,
            output,
            mode=mode,
            device=on_device,
            dtype=dtype,
            command=command,
            progress=None if progress is None else partial(progress, source.label),
        )
        for source in sources
    ]


def evaluate_self_instruct(
    source: Any,
    data: Path,
    output: Path,
    *,
    mode: Mode,
    device: str,
    dtype: str,
    command: list[str],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Writes `output/<label>/self-instruct-<mode>/` and returns its summary."""
    started = now_iso()
    examples = read_examples(data)
    model, tokenizer = load_model(source.path, device, dtype)
    rows = perplexities(model, tokenizer, examples, mode, progress)
    summary = {
        "kind": "gpt4allj-kit self-instruct perplexity",
        "model": source.repo_id or str(source.path),
        "revision": source.revision,
        "sha": source.sha,
        "label": source.label,
        "data": str(data),
        "data_sha256": sha256_file(data),
        **summarize(rows, mode),
    }
    target = output / source.label / f"self-instruct-{mode}"
    with atomic_dir(target) as out:
        atomic_write_text(out / "perplexities.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        histogram_png(
            [math.nan if r["perplexity"] is None else r["perplexity"] for r in rows],
            out / "histogram.png",
            f"{source.label}: Self-Instruct ground-truth perplexity ({mode}, n={len(rows)})",
        )
        atomic_write_json(out / paths.SUMMARY, redact_data(summary))
        write_manifest(
            out / paths.MANIFEST,
            stage="eval-self-instruct",
            command=command,
            config={"mode": mode, "stride": STRIDE, "device": device, "dtype": dtype, "data": data},
            started=started,
            model=source.record(),
            data_sha256=summary["data_sha256"],
        )
    return summary | {"out_dir": str(target)}
