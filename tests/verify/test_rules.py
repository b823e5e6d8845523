"""Rules as data: the shipped recipes load into typed models; expressions are a small safe language; a bad
rules file is one line naming the file, the rule and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.verify import rules


def test_the_shipped_recipes_load_and_smoke_extends_the_documented_one() -> None:
    documented = rules.load_rules("gpt4all-j")
    smoke = rules.load_rules("smoke")
    assert (documented.profile, smoke.profile) == ("full", "smoke")
    assert [r.id for r in smoke.rules] == [r.id for r in documented.rules]
    ids = {r.id for r in documented.rules}
    assert {
        "lr", "warmup", "min-lr", "weight-decay", "epochs", "max-length", "seed", "precision", "zero-stage",
        "optimizer", "global-batch", "steps-per-epoch", "lr-schedule", "data-trace", "data-order-vs-recipe",
        "no-skip-no-repeat", "locked-assets", "kit-version", "lock-hash",
    } <= ids  # fmt: skip
    assert set(rules.known_recipes()) >= {"gpt4all-j", "smoke"}


def test_expressions_compute_over_facts() -> None:
    facts = {"run": {"a": 4, "b": {"c": 8}, "none": None}, "recipe": {"x": 2}, "kit": {}}
    assert rules.evaluate("run.a * run.b.c + recipe.x", facts) == 34
    assert rules.evaluate("ceil(run.a / 3)", facts) == 2
    assert rules.evaluate("steps_per_epoch(38, 4, 2, 2)", facts) == 3
    assert rules.evaluate("steps_per_epoch(38, 4, 1, 2)", facts) == 5
    assert rules.evaluate(["run.a", "'x'", 1.5], facts) == [4, "x", 1.5]
    assert rules.evaluate("[run.a, -recipe.x]", facts) == [4, -2]
    assert rules.evaluate(3, facts) == 3
    with pytest.raises(rules.UnknownFact) as missing:
        rules.evaluate("run.b.d", facts)
    assert missing.value.name == "run.b.d"
    with pytest.raises(rules.UnknownFact):
        rules.evaluate("run.none * 2", facts)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("__import__('os')", "calls are limited"),
        ("os.system", "a fact starts with"),
        ("run", "a fact starts with"),
        ("run.a ** 2", "operator Pow"),
        ("run.a[0]", "Subscript"),
        ("lambda: 1", "Lambda"),
        ("run.a == 1", "Compare"),
        ("max(x=1)", "positional"),
        ("run.a +", "not an expression"),
    ],
)
def test_anything_else_is_refused_when_the_rules_load(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        rules.parse_expression(text)


RULE = "  - {{id: {id}, checks: something, check: value, found: {found}, expected: {expected}}}\n"


def _rules_file(tmp_path: Path, body: str, head: str = "recipe: t\ndescription: d\nprofile: smoke\n") -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(head + body)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "rules:\n" + RULE.format(id="lr", found="run.config.lr **", expected=1),
            "rule 'lr': key 'found': not an expression",
        ),
        (
            "rules:\n" + RULE.format(id="lr", found="os.getcwd", expected=1),
            "rule 'lr': key 'found': 'os.getcwd'",
        ),
        ("rules:\n  - {id: x, checks: y, check: magic}\n", "rule 'x': check 'magic' is not one of value"),
        ("rules:\n  - {id: x, checks: y}\n", "rule 'x': required key 'check' is missing"),
        (
            "rules:\n  - {id: x, checks: y, check: value, found: run.a}\n",
            "rule 'x': key 'expected': required key is missing",
        ),
        (
            "rules:\n  - {id: x, checks: y, check: value, found: run.a, expected: 1, tolerence: 1}\n",
            "rule 'x': key 'tolerence': unknown key",
        ),
        (
            "rules:\n  - {id: Bad Id, checks: y, check: value, found: run.a, expected: 1}\n",
            "rule 'Bad Id': key 'id'",
        ),
        ("rules:\n" + RULE.format(id="a", found="run.a", expected=1) * 2, "rule id 'a' appears twice"),
        ("rules:\n  - {id: x, checks: y, check: data-trace, layout: sideways}\n", "rule 'x': key 'layout'"),
        ("rules: []\n", "no rules"),
        ("rulez: []\n", "key 'rulez': unknown key"),
    ],
)
def test_a_bad_rules_file_is_one_line_naming_the_rule_and_key(
    tmp_path: Path, body: str, message: str
) -> None:
    path = _rules_file(tmp_path, body)
    with pytest.raises(ConfigError) as error:
        rules.load_rules(str(path))
    assert error.value.message.startswith(f"{path}: ")
    assert message in error.value.message


def test_extends_takes_the_other_recipes_rules_and_replaces_by_id(tmp_path: Path) -> None:
    path = _rules_file(
        tmp_path,
        "extends: smoke\nrules:\n"
        + RULE.format(id="lr", found="run.config.lr", expected=5)
        + RULE.format(id="extra", found=1, expected=1),
    )
    loaded = rules.load_rules(str(path))
    ids = [r.id for r in loaded.rules]
    assert ids[0] == "lr" and ids[-1] == "extra" and len(ids) == len(rules.load_rules("smoke").rules) + 1
    assert loaded.rules[0].expected == 5
    loop = tmp_path / "loop.yaml"
    loop.write_text("recipe: l\ndescription: d\nprofile: smoke\nextends: loop\n")
    with pytest.raises(ConfigError, match="a cycle"):
        rules.load_rules(str(loop))


def test_an_unknown_recipe_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"--recipe nope: unknown recipe \(known: .*gpt4all-j.*smoke"):
        rules.load_rules("nope")
