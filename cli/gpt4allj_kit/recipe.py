"""The facts of the GPT4All-J recipe that the kit is built around, each defined here and nowhere else.

Repo ids, the released revisions, the default revision, the zero-shot task suite, the validation
fraction and the published global batch: every other module imports them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MODEL_REPO = "nomic-ai/gpt4all-j"
DATA_REPO = "nomic-ai/gpt4all-j-prompt-generations"
BASE_REPO = "EleutherAI/gpt-j-6B"

# What `fetch --what` can name: (repo id, repo type).
AssetKind = Literal["data", "model", "base"]
ASSET_REPOS: dict[str, tuple[str, str]] = {
    "data": (DATA_REPO, "dataset"),
    "model": (MODEL_REPO, "model"),
    "base": (BASE_REPO, "model"),
}

# The released revisions (the same tag names on the model and the data repo), plus main.
REVISIONS = ("v1.0", "v1.1-breezy", "v1.2-jazzy", "v1.3-groovy", "main")
DEFAULT_REVISION = "v1.2-jazzy"
# The model repo's `main` is v1.0 (its model card); the published table has no row named main.
ROW_OF_REVISION = {"main": "v1.0"}


@dataclass(frozen=True)
class EvalTask:
    """One task of the suite: its lm-evaluation-harness name, its installed definition and its split."""

    name: str
    yaml: str  # relative to lm_eval/tasks
    split: str  # the split the definition evaluates


# The technical report's zero-shot common-sense suite, in the published table's column order.
EVAL_SUITE = (
    EvalTask("boolq", "super_glue/boolq/default.yaml", "validation"),
    EvalTask("piqa", "piqa/piqa.yaml", "validation"),
    EvalTask("hellaswag", "hellaswag/hellaswag.yaml", "validation"),
    EvalTask("winogrande", "winogrande/default.yaml", "validation"),
    EvalTask("arc_easy", "arc/arc_easy.yaml", "test"),
    EvalTask("arc_challenge", "arc/arc_challenge.yaml", "test"),
    EvalTask("openbookqa", "openbookqa/openbookqa.yaml", "test"),
)
EVAL_TASKS = tuple(task.name for task in EVAL_SUITE)

# Upstream's train.py: train_test_split(test_size=0.05, seed=seed).
VALIDATION_FRACTION = 0.05
# 32 per device x 8 A100 x accumulation 1, as published.
REFERENCE_GLOBAL_BATCH = 256
