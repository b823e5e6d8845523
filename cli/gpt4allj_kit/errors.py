"""Errors the CLI turns into one line and an exit code, never a traceback."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes shared by every command: 0 ok, 1 results differ (only when asked to fail on it),
    2 usage or config error, 3 this environment cannot run it, 4 internal error (a bug), 130 interrupted."""

    OK = 0
    RESULTS_DIFFER = 1
    USAGE = 2
    ENVIRONMENT = 3
    INTERNAL = 4
    INTERRUPTED = 130


class KitError(Exception):
    """An expected failure: its message is the whole story for the user."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(KitError):
    """A config file or override is wrong (placeholder, type, unknown key)."""

    exit_code = ExitCode.USAGE


class EnvironmentNotReady(KitError):
    """This machine cannot run what was asked (no GPU, too little memory or disk, missing package)."""

    exit_code = ExitCode.ENVIRONMENT


class HubError(KitError):
    """The hub (or its offline cache) cannot give what was asked."""

    exit_code = ExitCode.ENVIRONMENT
