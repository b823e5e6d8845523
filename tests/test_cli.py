"""The CLI surface: version, help, usage errors without tracebacks, and the rendered tables."""

from __future__ import annotations

import json
from pathlib import Path

from gpt4allj_kit import __version__
from gpt4allj_kit.assets import TinyAssets


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


def test_assets_renders_paths_and_checksums(tiny: TinyAssets, kit_cli) -> None:
    # The session's tiny assets are reused (not rebuilt) when asked for under the same folder.
    args = ["assets", "--output", str(tiny.root.parent), "--seed", str(tiny.seed), "--rows", "3000"]
    table = kit_cli(*args)
    assert table.returncode == 0, table.stderr
    assert str(tiny.model_dir) in table.stdout and "model/model.safetensors" in table.stdout
    as_json = kit_cli(*args, "--json")
    data = json.loads(as_json.stdout)
    assert data["sha256"] == tiny.checksums() and Path(data["root"]) == tiny.root


def test_every_ending_maps_to_one_exit_code_and_at_most_one_line() -> None:
    import typer
    from gpt4allj_kit.cli import exit_for
    from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady, ExitCode

    assert exit_for(ConfigError("bad key")) == (ExitCode.USAGE, "[bold red]error:[/] bad key")
    assert exit_for(EnvironmentNotReady("no GPU"))[0] == ExitCode.ENVIRONMENT == 3
    assert exit_for(typer.Exit(1)) == (1, None)
    assert exit_for(KeyboardInterrupt()) == (ExitCode.INTERRUPTED, "[bold red]interrupted[/]")
    assert ExitCode.INTERRUPTED == 130
    code, line = exit_for(RuntimeError("boom"))
    assert code == ExitCode.INTERNAL == 4 and line is not None
    assert "RuntimeError: boom" in line and "GPT4ALLJ_KIT_DEBUG=1" in line


def test_an_os_error_on_a_path_is_one_line_naming_it() -> None:
    import errno

    from gpt4allj_kit.cli import exit_for
    from gpt4allj_kit.errors import ExitCode

    code, line = exit_for(PermissionError(errno.EACCES, "Permission denied", "/srv/out"))
    assert code == ExitCode.ENVIRONMENT and line is not None and "/srv/out: permission denied" in line
    code, line = exit_for(IsADirectoryError(errno.EISDIR, "Is a directory", "/srv/out"))
    assert code == ExitCode.USAGE and line is not None and "/srv/out: is a directory" in line
    # Not a path the user can fix: still an internal error.
    assert exit_for(OSError(errno.EIO, "I/O error", "/dev/sda"))[0] == ExitCode.INTERNAL
    assert exit_for(ConnectionResetError(errno.ECONNRESET, "reset"))[0] == ExitCode.INTERNAL
