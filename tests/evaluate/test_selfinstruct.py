"""Self-Instruct ground-truth perplexity: faithful (as upstream) and prompt-conditioned, checked by hand."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from gpt4allj_kit.evaluate.selfinstruct import STRIDE, read_examples, summarize
from transformers import AutoModelForCausalLM, AutoTokenizer

WORDS = ("lamp", "river", "kettle", "garden", "write", "short", "list", "explain", "bread", "cloud", "why")


def _row(rng: random.Random, i: int, output_words: int) -> dict[str, Any]:
    say = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
    return {
        "id": f"user_oriented_task_{i}",
        "motivation_app": rng.choice(("Gmail", "Notion", "Wikipedia")),
        "instruction": f"{say(6).capitalize()}.",
        "instances": [{"input": say(rng.randint(0, 8)), "output": say(output_words)}],
    }


@pytest.fixture(scope="module")
def instructions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(5)
    # The last one is longer than one stride of 512 tokens, so several windows are scored.
    rows = [_row(rng, i, n) for i, n in enumerate((12, 3, 30, 1, 400))]
    path = tmp_path_factory.mktemp("self-instruct") / "user_oriented_instructions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def both_modes(
    tiny, instructions: Path, tmp_path_factory: pytest.TempPathFactory, run_kit
) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("si-out")
    dirs = {}
    for mode, extra in (("faithful", []), ("conditioned", ["--conditioned"])):
        done = run_kit(
            "eval", "--suite", "self-instruct", "--data", str(instructions), "--model", str(tiny.model_dir),
            "--label", "tiny", "--device", "cpu", "--output", str(out), *extra,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"{mode} mode, 5 examples" in done.stdout
        dirs[mode] = out / "tiny" / f"self-instruct-{mode}"
    return dirs


def _rows(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "perplexities.jsonl").read_text().splitlines()]


@pytest.mark.slow  # two evaluation runs (both_modes)
def test_outputs_per_mode(both_modes: dict[str, Path], instructions: Path) -> None:
    count = len(instructions.read_text().splitlines())
    for mode, folder in both_modes.items():
        rows = _rows(folder)
        assert len(rows) == count and {r["mode"] for r in rows} == {mode}
        summary = json.loads((folder / "summary.json").read_text())
        assert (summary["mode"], summary["count"], summary["stride"]) == (mode, count, STRIDE)
        assert (folder / "histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert json.loads((folder / "manifest.json").read_text())["config"]["mode"] == mode
    assert max(r["ground_truth_tokens"] for r in _rows(both_modes["faithful"])) > STRIDE


@pytest.mark.slow  # two evaluation runs (both_modes)
def test_faithful_and_conditioned_differ(both_modes: dict[str, Path]) -> None:
    faithful = [r["perplexity"] for r in _rows(both_modes["faithful"])]
    conditioned = [r["perplexity"] for r in _rows(both_modes["conditioned"])]
    assert all(c is not None for c in conditioned)
    assert any(
        f is not None and not math.isclose(f, c, rel_tol=1e-3)
        for f, c in zip(faithful, conditioned, strict=True)
    )


def _token_nlls(model: Any, ids: list[int]) -> list[float]:
    """-log p(ids[t] | ids[:t]) for t >= 1, from one forward pass over `ids`, computed by hand."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [-logprobs[t - 1, ids[t]].item() for t in range(1, len(ids))]


@pytest.mark.slow  # two evaluation runs (both_modes)
def test_hand_computed_perplexity_of_one_example(
    tiny, both_modes: dict[str, Path], instructions: Path
) -> None:
    example = read_examples(instructions)[0]
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float32).eval()
    prompt = tokenizer(example.prompt)["input_ids"]
    gt = tokenizer(
        example.prompt + " " + json.loads(instructions.read_text().splitlines()[0])["instances"][0]["output"]
    )["input_ids"]
    p = len(prompt)
    assert len(gt) < STRIDE
    # Faithful: only the response tokens are fed; the first is context, the rest are predicted.
    faithful = math.exp(sum(_token_nlls(model, gt[p:])) / (len(gt) - p - 1))
    # Conditioned: the whole ground truth is fed; every response token is predicted.
    nlls = _token_nlls(model, gt)
    conditioned = math.exp(sum(nlls[p - 1 :]) / (len(gt) - p))
    assert math.isclose(_rows(both_modes["faithful"])[0]["perplexity"], faithful, rel_tol=1e-4)
    assert math.isclose(_rows(both_modes["conditioned"])[0]["perplexity"], conditioned, rel_tol=1e-4)


def test_summary_counts_nan_and_clips_at_100() -> None:
    rows = [{"perplexity": v} for v in (2.0, None, 250.0, 4.0)]
    summary = summarize(rows, "faithful")
    assert (summary["count"], summary["nan_count"], summary["above_100"]) == (4, 1, 1)
    assert summary["mean_clipped_100"] == pytest.approx((2 + 100 + 100 + 4) / 4)


def test_bad_data_file_is_one_line(tmp_path: Path, tiny, run_kit) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x"}\n')
    done = run_kit(
        "eval",
        "--suite",
        "self-instruct",
        "--data",
        str(bad),
        "--model",
        str(tiny.model_dir),
        "--device",
        "cpu",
    )
    assert done.returncode == 2 and "bad.jsonl:1: not a Self-Instruct row" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
