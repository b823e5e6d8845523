"""The CLI surface: version, help, usage errors without tracebacks, and the rendered tables."""

from __future__ import annotations

import json
from pathlib import Path

from gpt4allj_kit import __version__
from gpt4allj_kit.assets import TinyAssets
from gpt4allj_kit.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def test_version_and_help(kit_cli) -> None:
    version = kit_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"gpt4allj-kit {__version__}"
    help_ = kit_cli("--help")
    assert help_.returncode == 0
    for command in ("config", "doctor", "assets"):
        assert command in help_.stdout


def test_usage_errors_exit_2_without_traceback(kit_cli) -> None:
    for args in (("no-such-command",), ("assets", "--rows", "0"), ("doctor", "--bogus")):
        result = kit_cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr


def test_assets_renders_paths_and_checksums(tiny: TinyAssets) -> None:
    # The session's tiny assets are reused (not rebuilt) when asked for under the same folder.
    args = ["assets", "--output", str(tiny.root.parent), "--seed", str(tiny.seed), "--rows", "3000"]
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert str(tiny.model_dir) in table.output and "model/model.safetensors" in table.output
    as_json = runner.invoke(app, [*args, "--json"])
    data = json.loads(as_json.output)
    assert data["sha256"] == tiny.checksums() and Path(data["root"]) == tiny.root
