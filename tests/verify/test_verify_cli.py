"""`gpt4allj-kit verify-run`: the verdict table, --json, and the exit code (0 none differs, 1 one does)."""

from __future__ import annotations

import json

from gpt4allj_kit.verify.rules import load_rules


def test_a_run_that_is_its_recipe_exits_0_with_its_verdicts(hand_made, kit_cli) -> None:
    root = hand_made().finish().write()
    result = kit_cli("verify-run", root, "--recipe", "smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "Recipe compliance: against recipe 'smoke'" in out
    assert "19 pass, 0 differ, 1 cannot tell" in out
    data = json.loads(kit_cli("verify-run", root, "--recipe", "smoke", "--json").stdout)
    assert data["recipe"] == "smoke" and data["differs"] is False and data["finished"] is True
    assert [v["id"] for v in data["verdicts"]] == [r.id for r in load_rules("smoke").rules]
    assert data["counts"] == {"pass": 19, "differs": 0, "cannot tell": 1}


def test_a_difference_exits_1_and_is_shown(hand_made, kit_cli) -> None:
    root = hand_made(lr=5e-4).finish().write()
    result = kit_cli("verify-run", root, "--recipe", "smoke", "--json")
    assert result.returncode == 1, result.stderr
    lr = next(v for v in json.loads(result.stdout)["verdicts"] if v["id"] == "lr")
    assert (lr["expected"], lr["found"], lr["verdict"]) == ("0.001", "0.0005", "differs")


def test_a_run_of_a_real_model_is_checked_against_the_documented_recipe_by_default(
    hand_made, kit_cli
) -> None:
    result = kit_cli("verify-run", hand_made().finish().write(), "--json")
    data = json.loads(result.stdout)
    assert data["recipe"] == "gpt4all-j" and data["chosen"].startswith("automatic: the documented recipe")
    assert data["also"] == [] and result.returncode == 1  # the smoke-sized run is not the documented recipe
