"""`verify-run`: a training (finished or running) checked rule by rule against a recipe.

Which recipe: `--recipe NAME|FILE`, else automatic - a run of the kit's tiny generated model (the smoke
world) is checked against `smoke` (its profile's resolved recipe) and also summarised against the
documented recipe, which it differs from on purpose; any other run against `gpt4all-j`, the documented
recipe of the run's revision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.verify.checks import CHECKS, Context, RuleVerdict
from gpt4allj_kit.verify.facts import (
    TrainingRun,
    is_tiny,
    kit_facts,
    read_training,
    resolve_recipe,
    run_facts,
)
from gpt4allj_kit.verify.rules import DEFAULT_RECIPE, load_rules

AUTO = "auto"
TINY_RECIPE = "smoke"


class RecipeSummary(BaseModel):
    """How the run stands against another recipe (a tiny run against the documented one)."""

    recipe: str
    counts: dict[str, int]
    differing: list[str]


class Verification(BaseModel):
    run_dir: str
    train_dir: str
    kind: str
    finished: bool
    steps: int  # optimizer steps in the trace
    recipe: str
    recipe_file: str
    recipe_description: str
    revision: str | None
    against: str | None
    chosen: str  # why this recipe
    verdicts: list[RuleVerdict]
    also: list[RecipeSummary] = []

    @property
    def counts(self) -> dict[str, int]:
        return counts_of(self.verdicts)

    @property
    def differs(self) -> bool:
        return any(v.verdict == "differs" for v in self.verdicts)

    def as_json(self) -> dict[str, object]:
        return {**self.model_dump(mode="json"), "counts": self.counts, "differs": self.differs}


def counts_of(verdicts: list[RuleVerdict]) -> dict[str, int]:
    names: tuple[Literal["pass", "differs", "cannot tell"], ...] = ("pass", "differs", "cannot tell")
    return {name: sum(1 for v in verdicts if v.verdict == name) for name in names}


def _verdicts(run: TrainingRun, recipe_name: str, against: TrainingRun | None, shared: dict) -> tuple:
    rules = load_rules(recipe_name)
    recipe = resolve_recipe(rules, run.revision)
    facts = {"run": run_facts(run), "recipe": recipe.facts(), "kit": kit_facts()}
    ctx = Context(run=run, recipe=recipe, facts=facts, against=against, shared=shared)
    return rules, [CHECKS[type(rule)](rule, ctx) for rule in rules.rules]


def verify_run(path: Path, *, recipe: str = AUTO, against: Path | None = None) -> Verification:
    """Every rule of the recipe checked on the training in `path`; `against`: another run whose trace the
    data-trace rule compares with instead of the expected trace."""
    run = read_training(path)
    other = read_training(against) if against is not None else None
    if other is not None and other.train_dir.resolve() == run.train_dir.resolve():
        raise ConfigError(f"--against {against}: the same training as {path}")
    tiny = is_tiny(run)
    if recipe == AUTO:
        name = TINY_RECIPE if tiny else DEFAULT_RECIPE
        chosen = (
            "automatic: a run of the kit's tiny model is checked against its smoke profile's recipe"
            if tiny
            else f"automatic: the documented recipe of revision {run.revision}"
        )
    else:
        name, chosen = recipe, "--recipe"
    shared: dict = {}
    rules, verdicts = _verdicts(run, name, other, shared)
    also = []
    if recipe == AUTO and tiny:
        _, documented = _verdicts(run, DEFAULT_RECIPE, other, shared)
        also.append(
            RecipeSummary(
                recipe=DEFAULT_RECIPE,
                counts=counts_of(documented),
                differing=[v.id for v in documented if v.verdict == "differs"],
            )
        )
    return Verification(
        run_dir=str(path),
        train_dir=str(run.train_dir),
        kind=run.kind,
        finished=run.finished,
        steps=len(run.trace.steps) if run.trace else 0,
        recipe=rules.recipe,
        recipe_file=_shown_path(Path(rules.source)),
        recipe_description=rules.description,
        revision=run.revision,
        against=str(against) if against is not None else None,
        chosen=chosen,
        verdicts=verdicts,
        also=also,
    )


def _shown_path(file: Path) -> str:
    """A rules file as the user knows it: relative to the kit's root when it is one of the kit's."""
    from gpt4allj_kit import paths

    try:
        return str(file.resolve().relative_to(paths.project_root()))
    except ValueError:
        return str(file)
