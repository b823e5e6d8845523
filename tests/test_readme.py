"""The README's two set-up commands and CI stay in step."""

from __future__ import annotations

import re

from gpt4allj_kit import paths

ROOT = paths.project_root()


def _first_code_block_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```[a-z]*\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md has no code block"
    return [line.strip() for line in match.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_starts_with_exactly_two_commands() -> None:
    commands = _first_code_block_commands()
    assert len(commands) == 2, commands
    setup, tests = commands
    # Both create the environment from the lock; the first runs the kit, the second the test suite.
    assert setup.startswith("bash scripts/install.sh") and "gpt4allj-kit" in setup
    assert tests.startswith("bash scripts/install.sh") and "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, tests = _first_code_block_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines
