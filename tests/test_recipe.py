"""Each fact of the recipe is defined once, in `recipe.py`: no other module of the package restates it."""

from __future__ import annotations

import re
from pathlib import Path

import gpt4allj_kit
import pytest
from gpt4allj_kit import recipe
from gpt4allj_kit.published import load_published_table

PACKAGE = Path(gpt4allj_kit.__file__).parent
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "recipe.py")
# A fact restated: as a string literal (a revision, a repo id, a task name) or as a bare number.
FACTS = {
    "repo id": [re.escape(f'"{r}"') for r in (recipe.MODEL_REPO, recipe.DATA_REPO, recipe.BASE_REPO)],
    "revision": [re.escape(f'"{r}"') for r in recipe.REVISIONS if r != "main"],
    # A task's own code may be keyed by its name (`"boolq": _boolq`); a list of names restates the suite.
    "task name": [re.escape(f'"{t}"') + r"(?!:)" for t in recipe.EVAL_TASKS],
    "validation fraction": [r"(?<![\w.])0\.05(?![\d])"],
    "global batch": [r"(?<![\w.])256(?![\d])"],
    "task count": [r"\ball 7\b|\b7 cells\b|/7\b|\bof 7\b"],
}
# Constants that share a fact's number but mean something else, each named once where it is defined.
OTHER_MEANINGS = {
    "validation fraction": (
        re.compile(r"^ALPHA = 0\.05$"),  # compare/paired.py: the paired tests' significance level
        re.compile(r"^ROUNDING = 0\.05$"),  # published.py: half the published tables' last digit
        re.compile(r"^if self\.uniform\(\) < 0\.05:$"),  # assets.py: realistic rows' share of unicode words
    ),
    "global batch": (
        re.compile(r"^width=256,$"),  # assets.py: the real-vocabulary tiny GPT-J's hidden width
        re.compile(r"^SUB_BATCH_CELLS = 256$"),  # batching.py: a bucketed sub-batch's cost in cells
    ),
}


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines of code with comments and docstring-only lines left out (prose may name a fact)."""
    lines, in_doc = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        quotes = text.count('"""')
        if in_doc or (text.startswith('"""') and quotes == 1):
            in_doc = in_doc != (quotes == 1)
            continue
        if text.startswith("#") or (text.startswith('"""') and quotes == 2):
            continue
        lines.append((number, line.split("  #")[0]))
    return lines


@pytest.mark.parametrize("fact", sorted(FACTS))
def test_no_module_restates_a_fact_of_the_recipe(fact: str) -> None:
    pattern = re.compile("|".join(FACTS[fact]))
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in SOURCES
        for number, line in _code_lines(path)
        if pattern.search(line)
        and "help=" not in line
        and not any(other.match(line.strip()) for other in OTHER_MEANINGS.get(fact, ()))
    ]
    assert not found, f"{fact} restated outside recipe.py:\n" + "\n".join(found)


def test_the_published_columns_are_the_suite() -> None:
    assert tuple(c.task for c in load_published_table().columns) == recipe.EVAL_TASKS


def test_the_check_finds_a_restated_fact(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Docs may say v1.2-jazzy."""\nDEFAULT = "v1.2-jazzy"  # a restated fact\n')
    assert [n for n, line in _code_lines(module) if '"v1.2-jazzy"' in line] == [2]
