"""Offline stand-ins for the seven task datasets, run through lm-eval's own task definitions.

Each task gets a small generated data file in that task's own schema and a wrapper task YAML that
`include`s the installed lm-eval YAML and only swaps where the documents come from. The task names stay
the same (lm-eval 0.4.13 lets an `include_path` task override a built-in one of the same name), so the real
prompts, choices, metrics and normalisation run, and results keys match those of the real tasks.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpt4allj_kit.files import atomic_write_text
from gpt4allj_kit.recipe import EVAL_SUITE, EVAL_TASKS

TASK_YAML = {task.name: task.yaml for task in EVAL_SUITE}
EVAL_SPLIT = {task.name: task.split for task in EVAL_SUITE}
FIXTURES_VERSION = 1

_WORDS = (
    "river", "stone", "lamp", "garden", "window", "bread", "cloud", "engine", "paper", "kettle", "forest",
    "mirror", "ladder", "candle", "bottle", "basket", "rope", "wheel", "blanket", "bucket", "pencil",
    "spoon", "bridge", "hammer", "shadow", "summer", "winter", "market", "teacher", "farmer", "sailor",
)  # fmt: skip
_VERBS = ("carry", "clean", "open", "fold", "heat", "cool", "paint", "fix", "move", "fill", "cut", "dry")
_NAMES = ("Anna", "Ben", "Carla", "Dev", "Emma", "Farid", "Gina", "Hugo")


def installed_tasks_dir() -> Path:
    """lm_eval/tasks of the installed lm-eval: the task definitions every run uses."""
    import lm_eval

    return Path(lm_eval.__file__).resolve().parent / "tasks"


def installed_task_yaml(task: str) -> Path:
    return installed_tasks_dir() / TASK_YAML[task]


def _phrase(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _boolq(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "question": f"is the {rng.choice(_WORDS)} near the {rng.choice(_WORDS)}",
        "passage": f"The {_phrase(rng, 3)} stands by the {_phrase(rng, 2)}. It was built in summer.",
        "idx": i,
        "label": rng.randint(0, 1),
    }


def _piqa(rng: random.Random, i: int) -> dict[str, Any]:
    goal = f"How do you {rng.choice(_VERBS)} a {rng.choice(_WORDS)}?"
    return {
        "goal": goal,
        "sol1": f"Use a {_phrase(rng, 2)} and {rng.choice(_VERBS)} it.",
        "sol2": f"Put the {_phrase(rng, 2)} in a {rng.choice(_WORDS)}.",
        "label": rng.randint(0, 1),
    }


def _hellaswag(rng: random.Random, i: int) -> dict[str, Any]:
    ctx_a = f"A {rng.choice(_WORDS)} is {rng.choice(_VERBS)}ing the {rng.choice(_WORDS)}."
    ctx_b = f"then the {rng.choice(_NAMES).lower()}"
    endings = [f"{rng.choice(_VERBS)}s the {_phrase(rng, 2)} [title] slowly." for _ in range(4)]
    return {
        "ind": i,
        "activity_label": rng.choice(("Cleaning windows", "Baking bread", "Sailing")),
        "ctx_a": ctx_a,
        "ctx_b": ctx_b,
        "ctx": f"{ctx_a} {ctx_b}",
        "endings": endings,
        "source_id": f"fixture~{i}",
        "split": "val",
        "split_type": "indomain",
        "label": str(rng.randint(0, 3)),
    }


def _winogrande(rng: random.Random, i: int) -> dict[str, Any]:
    first, second = rng.sample(_NAMES, 2)
    return {
        "sentence": f"{first} gave the {rng.choice(_WORDS)} to {second} as _ liked {rng.choice(_WORDS)}s.",
        "option1": first,
        "option2": second,
        "answer": rng.choice(("1", "2")),
    }


def _arc(rng: random.Random, i: int, prefix: str) -> dict[str, Any]:
    # Real ARC has a few numeric answer keys and 3- or 5-choice items; keep both shapes.
    count = rng.choice((3, 4, 4, 5))
    labels = list("12345"[:count]) if rng.random() < 0.2 else list("ABCDE"[:count])
    return {
        "id": f"{prefix}_{i}",
        "question": f"Which {rng.choice(_WORDS)} helps a {rng.choice(_WORDS)} {rng.choice(_VERBS)}?",
        "choices": {"text": [_phrase(rng, 2) for _ in labels], "label": labels},
        "answerKey": rng.choice(labels),
    }


def _openbookqa(rng: random.Random, i: int) -> dict[str, Any]:
    labels = ["A", "B", "C", "D"]
    return {
        "id": f"obqa_{i}",
        "question_stem": f"A {rng.choice(_WORDS)} can be used to",
        "choices": {
            "text": [f"{rng.choice(_VERBS)} a {rng.choice(_WORDS)}" for _ in labels],
            "label": labels,
        },
        "answerKey": rng.choice(labels),
    }


def fixture_rows(task: str, seed: int, n: int) -> list[dict[str, Any]]:
    """`n` generated documents of `task` in its dataset's schema; equal arguments give equal rows."""
    # A per-task stream keeps one task's rows independent of which other tasks are generated.
    rng = random.Random(f"{seed}:{task}")
    makers = {
        "boolq": _boolq,
        "piqa": _piqa,
        "hellaswag": _hellaswag,
        "winogrande": _winogrande,
        "arc_easy": lambda r, i: _arc(r, i, "arc_e"),
        "arc_challenge": lambda r, i: _arc(r, i, "arc_c"),
        "openbookqa": _openbookqa,
    }
    return [makers[task](rng, i) for i in range(n)]


def wrapper_task_yaml(include: Path, task: str, overrides: dict[str, Any]) -> str:
    """A task YAML named `task` that includes the definition at `include` and changes only `overrides`."""
    body = {"include": str(include), "task": task, **overrides}
    return yaml.safe_dump(body, sort_keys=False)


def local_data_overrides(task: str, data_file: Path) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {EVAL_SPLIT[task]: str(data_file)}},
        "training_split": None,
    }
    # Tasks that evaluate on `test` also name a validation split; with local files there is none.
    if EVAL_SPLIT[task] == "test":
        overrides["validation_split"] = None
    return overrides


@dataclass(frozen=True)
class Fixtures:
    """Where `task_fixtures` wrote: `include_path` for lm-eval, `data_dir` for the documents."""

    root: Path
    seed: int
    n: int

    @property
    def include_path(self) -> Path:
        return self.root / "tasks"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def data_file(self, task: str) -> Path:
        return self.data_dir / f"{task}.{EVAL_SPLIT[task]}.jsonl"


def task_fixtures(root: Path, seed: int, n: int) -> Path:
    """Writes fixtures for all seven tasks under `root` and returns the folder to pass as `include_path`."""
    if n < 1:
        raise ValueError("fixtures need at least one document per task")
    fixtures = Fixtures(root=Path(root).resolve(), seed=seed, n=n)
    for task in EVAL_TASKS:
        rows = fixture_rows(task, seed, n)
        data_file = fixtures.data_file(task)
        atomic_write_text(data_file, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
        yaml_text = wrapper_task_yaml(installed_task_yaml(task), task, local_data_overrides(task, data_file))
        atomic_write_text(fixtures.include_path / f"{task}.yaml", yaml_text)
    info = {"fixtures_version": FIXTURES_VERSION, "seed": seed, "n": n, "tasks": list(EVAL_TASKS)}
    atomic_write_text(fixtures.root / "fixtures.json", json.dumps(info, indent=2) + "\n")
    return fixtures.include_path


def read_fixtures_info(include_path: Path) -> dict[str, Any] | None:
    """What `task_fixtures` recorded beside `include_path` (seed, n), or None for a hand-made folder."""
    info = Path(include_path).parent / "fixtures.json"
    return json.loads(info.read_text(encoding="utf-8")) if info.is_file() else None
