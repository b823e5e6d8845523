"""A recipe's rules as data: `configs/verify/<recipe>.yaml`, loaded into typed models and checked.

In the style of MLPerf's compliance checker, each rule has an id, what it checks, how (its `check`), the
expected value or formula and a severity. A `value` rule compares two expressions: `found` (read from the
run) and `expected` (usually from the recipe). Expressions are a small, safe language: numbers, quoted
strings, lists, `+ - * / //`, the functions in `FUNCTIONS` and dotted facts under three roots - `run.`
(what the run did), `recipe.` (the recipe's resolved config) and `kit.` (the verifying kit). The other
checks are built in (`checks.py`); their parameters are expressions too. Facts are documented in
`facts.py`; a fact a run does not have makes its rule "cannot tell", never a guess.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from gpt4allj_kit import paths
from gpt4allj_kit.config import load_yaml
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.trace.layout import Layout, steps_per_epoch

ROOTS = ("run", "recipe", "kit")
DEFAULT_RECIPE = "gpt4all-j"


def _steps_per_epoch(rows: int, batch_size: int, processes: int, accumulation: int) -> int:
    return steps_per_epoch(int(rows), Layout(int(processes), int(batch_size), int(accumulation)))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ceil": math.ceil,
    "floor": math.floor,
    "min": min,
    "max": max,
    # optimizer steps per epoch as accelerate makes them (see trace/layout.py): rows, batch, processes, accum.
    "steps_per_epoch": _steps_per_epoch,
}
_OPERATORS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
}


@dataclass(frozen=True)
class Changed:
    """A setting that changed between launches of one run (a resume with other settings): (the steps done
    when the launch began, its value) for each launch that changed it. Arithmetic on it applies launch by
    launch; it never equals a single expected value."""

    values: tuple[tuple[int, Any], ...]

    def at(self, step: int) -> Any:
        return [v for start, v in self.values if start <= step][-1]

    def __str__(self) -> str:
        return ", then ".join(f"{v} (from step {step + 1})" for step, v in self.values)


def lifted(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)`, applied launch by launch when an argument is `Changed`."""
    changes = [a for a in args if isinstance(a, Changed)]
    if not changes:
        return function(*args)
    starts = sorted({start for c in changes for start, _ in c.values})
    values: list[tuple[int, Any]] = []
    for start in starts:
        value = function(*(a.at(start) if isinstance(a, Changed) else a for a in args))
        if not values or values[-1][1] != value:
            values.append((start, value))
    return values[0][1] if len(values) == 1 else Changed(tuple(values))


class UnknownFact(Exception):
    """A fact the run (or the recipe) does not have: the rule cannot tell."""

    def __init__(self, name: str, why: str = "") -> None:
        super().__init__(name)
        self.name = name
        self.why = why


def dotted(node: ast.AST) -> str | None:
    """`a.b.c` of a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _check_node(node: ast.AST) -> None:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, int | float | str | bool | type(None)):
            raise ValueError(f"constant {node.value!r} is not allowed")
    elif (name := dotted(node)) is not None:
        if name.split(".")[0] not in ROOTS or "." not in name:
            raise ValueError(f"'{name}': a fact starts with {', '.join(r + '.' for r in ROOTS)}")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _OPERATORS:
            raise ValueError(f"operator {type(node.op).__name__} is not allowed (use + - * / //)")
        _check_node(node.left)
        _check_node(node.right)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        _check_node(node.operand)
    elif isinstance(node, ast.List | ast.Tuple):
        for item in node.elts:
            _check_node(item)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            raise ValueError(f"calls are limited to {', '.join(FUNCTIONS)} with positional arguments")
        for arg in node.args:
            _check_node(arg)
    else:
        raise ValueError(f"{type(node).__name__} is not allowed in a rule expression")


def parse_expression(text: str) -> ast.expr:
    """The checked syntax tree of a rule expression; ValueError saying what is not allowed."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an expression ({exc.msg})") from None
    _check_node(tree.body)
    return tree.body


def _expression(value: object) -> object:
    if isinstance(value, str):
        parse_expression(value)
    elif isinstance(value, list):
        for item in value:
            _expression(item)
    return value


# An expression (text), or a literal number, boolean, null or list.
Expr = Annotated[str | int | float | bool | list[Any] | None, AfterValidator(_expression)]
RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]


def evaluate(expr: Any, facts: dict[str, Any]) -> Any:
    """`expr` evaluated over `facts` ({"run": ..., "recipe": ..., "kit": ...}); UnknownFact for a missing
    fact."""
    if isinstance(expr, list):
        return [evaluate(item, facts) for item in expr]
    if not isinstance(expr, str):
        return expr
    return _eval(parse_expression(expr), facts)


def lookup(name: str, facts: dict[str, Any]) -> Any:
    value: Any = facts
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise UnknownFact(name)
        value = value[part]
    if isinstance(value, UnknownFact):
        raise UnknownFact(name, value.why)
    return value


def _eval(node: ast.AST, facts: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if (name := dotted(node)) is not None:
        return lookup(name, facts)
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, facts), _eval(node.right, facts)
        if left is None or right is None:
            raise UnknownFact(ast.unparse(node), "a part of it is not known")
        return lifted(_OPERATORS[type(node.op)], left, right)
    if isinstance(node, ast.UnaryOp):
        return lifted(lambda v: -v, _eval(node.operand, facts))
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(item, facts) for item in node.elts]
    if isinstance(node, ast.Call):
        args = [_eval(a, facts) for a in node.args]
        if any(a is None for a in args):
            raise UnknownFact(ast.unparse(node), "a part of it is not known")
        return lifted(FUNCTIONS[node.func.id], *args)  # type: ignore[attr-defined]
    raise ValueError(f"{type(node).__name__} is not allowed")  # parse_expression refused it already


# --- the rules --------------------------------------------------------------------------------------


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: RuleId
    checks: str = Field(min_length=1)  # what the rule checks, in words
    severity: Literal["error", "warning"] = "error"


class ValueRule(_Rule):
    """`found` equals `expected` (numbers within `tolerance`, relative)."""

    check: Literal["value"]
    found: Expr
    expected: Expr
    tolerance: float = Field(0.0, ge=0)


class ScheduleRule(_Rule):
    """The learning rate of every traced step equals DeepSpeed WarmupLR's formula with these settings."""

    check: Literal["lr-schedule"]
    lr: Expr
    min_lr: Expr
    warmup_steps: Expr
    tolerance: float = Field(1e-6, ge=0)


class TraceRule(_Rule):
    """Every traced step read the rows (and content) the expected trace says: for the run's own layout
    (`run`: the data consumed as the kit's arithmetic says) or the recipe's (`recipe`: the same rows as the
    recipe's global batches). `--against OTHER_RUN` compares the `run` rule with the other run's trace."""

    check: Literal["data-trace"]
    layout: Literal["run", "recipe"] = "run"


class AssetsRule(_Rule):
    """The run's assets are the ones its lock names (hub: the revision's commit sha; local: by content)."""

    check: Literal["locked-assets"]
    assets: list[Literal["model", "tokenizer", "data"]] = Field(min_length=1)


class ContinuityRule(_Rule):
    """Steps 1..n each once; within an epoch no row repeated beyond even_batches' wrap-around and, for a
    finished epoch, none missing: what a resume must not break."""

    check: Literal["no-skip-no-repeat"]


Rule = Annotated[
    ValueRule | ScheduleRule | TraceRule | AssetsRule | ContinuityRule, Field(discriminator="check")
]


class RuleSet(BaseModel):
    """One recipe's rules: which profile's resolved config is the recipe, and the rules in report order."""

    model_config = ConfigDict(extra="forbid")

    recipe: str = Field(min_length=1)
    description: str = Field(min_length=1)
    profile: str = Field(min_length=1)
    # Another recipe's rules to start from (by name); `rules` here replace those with the same id or add.
    extends: str | None = None
    rules: list[Rule] = Field(default_factory=list)
    source: str = ""  # the file it was read from (set by the loader)

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"rule id '{rule.id}' appears twice")
            seen.add(rule.id)
        return rules


def rules_dir() -> Path:
    return paths.configs_dir() / "verify"


def known_recipes() -> list[str]:
    return sorted(p.stem for p in rules_dir().glob("*.yaml"))


def rules_file(name_or_path: str) -> Path:
    """The rules file of a recipe given by name (configs/verify/NAME.yaml) or by path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    file = rules_dir() / f"{name_or_path}.yaml"
    if not file.is_file():
        raise ConfigError(f"--recipe {name_or_path}: unknown recipe (known: {', '.join(known_recipes())})")
    return file


_CHECKS = ("value", "lr-schedule", "data-trace", "locked-assets", "no-skip-no-repeat")


def load_rules(name_or_path: str) -> RuleSet:
    """A recipe's rules, validated; a bad file is one ConfigError line naming the file, the rule (by id,
    when it has one) and the key."""
    return _load(rules_file(name_or_path), ())


def _load(file: Path, seen: tuple[Path, ...]) -> RuleSet:
    raw = load_yaml(file)
    try:
        ruleset = RuleSet.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{file}: {_problem(exc.errors()[0], raw)}") from None
    rules = list(ruleset.rules)
    if ruleset.extends is not None:
        base_file = rules_file(ruleset.extends) if ruleset.extends != file.stem else file
        if base_file.resolve() in (*seen, file.resolve()):
            raise ConfigError(f"{file}: key 'extends': {ruleset.extends!r} extends itself (a cycle)")
        own = {r.id: r for r in rules}
        base = _load(base_file, (*seen, file.resolve())).rules
        rules = [own.pop(r.id, r) for r in base] + list(own.values())
    if not rules:
        raise ConfigError(f"{file}: key 'rules': no rules (give some, or `extends` another recipe)")
    return ruleset.model_copy(update={"source": str(file), "rules": rules})


def _problem(error: Any, raw: dict[str, Any]) -> str:
    loc = [str(p) for p in error.get("loc", ())]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown key"
    elif error.get("type") == "missing":
        message = "required key is missing"
    elif error.get("type") == "union_tag_invalid":
        message = f"check {error.get('input', {}).get('check')!r} is not one of {', '.join(_CHECKS)}"
    elif error.get("type") == "union_tag_not_found":
        message = f"required key 'check' is missing (one of {', '.join(_CHECKS)})"
    if len(loc) >= 2 and loc[0] == "rules" and loc[1].isdigit():
        rules = raw.get("rules")
        index = int(loc[1])
        rule = rules[index] if isinstance(rules, list) and index < len(rules) else None
        name = rule.get("id") if isinstance(rule, dict) else None
        rest = [p for p in loc[2:] if p not in _CHECKS]
        where = f"rule '{name}'" if isinstance(name, str) else f"rules[{index}]"
        return f"{where}: " + (f"key '{'.'.join(rest)}': " if rest else "") + message
    return (f"key '{'.'.join(loc)}': " if loc else "") + message
