"""Where the kit finds its own files (configs, reports, lock) and where it writes by default."""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "GPT4ALLJ_KIT_ROOT"
# The fetch lock: asset repos, revisions, commit shas and file hashes (next to a config, or in a run dir).
LOCK_NAME = "gpt4allj-kit.lock.json"

# What the stages write, named once for their writers and their readers.
MANIFEST = "manifest.json"  # every stage's proof of what ran
METRICS = "metrics.jsonl"  # training: one record per step / evaluation
TRACE = "trace.jsonl"  # training: the data each optimizer step read (trace/records.py)
RESULTS = "results.json"  # evaluation: lm-eval's own results file, unchanged
SUMMARY = "summary.json"  # evaluation: the kit's summary of it
RUN_STATE = "run.json"  # reproduce: the state of every stage
ATTRIBUTION = "attribution.json"  # compare: where the gap to the published table comes from
# `train --burn-in`: its own folder inside the run's output_dir (never a resumable run), and its result.
BURN_IN_DIR, BURN_IN = "burn-in", "burn_in.json"
# A reproduce run directory: one folder per stage.
DOCTOR_DIR, TRAIN_DIR, EVAL_DIR, COMPARE_DIR, REPORT_DIR = "doctor", "train", "eval", "compare", "report"
# Evaluations in a run's eval/ besides its checkpoints: the published checkpoint of its revision, re-evaluated
# by us, and the base GPT-J.
RELEASED_LABEL, BASE_LABEL = "published", "base"
FIXTURES_DIR = "fixtures"  # the smoke world's task fixtures, made by its fetch


def project_root() -> Path:
    """The directory holding `configs/`, `reports/` and `requirements/lock.txt`.

    `GPT4ALLJ_KIT_ROOT` wins (the image sets it to its working dir); otherwise the checkout the package
    lives in (editable installs); otherwise the current directory.
    """
    if env := os.environ.get(ROOT_ENV):
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "configs").is_dir() and (checkout / "requirements").is_dir():
        return checkout
    return Path.cwd().resolve()


def configs_dir() -> Path:
    return project_root() / "configs"


def default_train_config() -> Path:
    return configs_dir() / "train" / "finetune_gptj.yaml"


def peak_flops_table() -> Path:
    """Devices' peak dense bf16 FLOP/s, for the burn-in's model FLOPs utilisation."""
    return configs_dir() / "hardware" / "peak_flops.yaml"


def default_deepspeed_config() -> Path:
    return configs_dir() / "deepspeed" / "ds_config_gptj.json"


# What --profile means when it is not given: the published recipe.
DEFAULT_PROFILE = "full"


def profile_path(name: str) -> Path:
    return configs_dir() / "profiles" / f"{name}.yaml"


def published_dir() -> Path:
    return project_root() / "reports" / "published"


def published_table_path() -> Path:
    return published_dir() / "zero_shot.yaml"


def eval_stack_path() -> Path:
    """The evaluation-stack bands of the published table's rows (reports/published/eval_stack.yaml)."""
    return published_dir() / "eval_stack.yaml"


def lock_path() -> Path:
    return project_root() / "requirements" / "lock.txt"


def locked_python() -> tuple[int, int] | None:
    """The Python minor the locks are resolved for (`.python-version`), or None outside a checkout."""
    try:
        text = (project_root() / ".python-version").read_text(encoding="utf-8").strip()
        major, minor = text.split(".")[:2]
        return int(major), int(minor)
    except (OSError, ValueError):
        return None


def default_output(stage: str) -> Path:
    """Where a stage writes when no --output is given: `outputs/<stage>` under the current directory."""
    return Path("outputs") / stage


def kit_cache_dir() -> Path:
    """The kit's own cache (tiny assets, fixtures); the hub cache stays where HF_HOME says."""
    base = os.environ.get("GPT4ALLJ_KIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "gpt4allj-kit"
    )
    return Path(base)
