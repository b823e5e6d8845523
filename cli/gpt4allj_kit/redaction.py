"""The one rule for secrets in what the kit writes: found by `redact`, masked in records, refused in inputs.

A secret is:
- the value of a secret variable set now (HF_TOKEN, HUGGING_FACE_HUB_TOKEN, WANDB_API_KEY) or of the token
  file huggingface_hub would send (`hf auth login`);
- anything shaped like a hub token (`hf_` and 30 or more letters and digits);
- the value given to a name that says it is one: `NAME=value`, `NAME: value` or `--name value`, where a
  part of NAME (split at `_`, `-`, `.`) is token, secret, password, passwd, credential(s) or authorization,
  or two parts are api key, access key or private key (`HF_TOKEN=...`, `--set hub_token=...`,
  `--api-key ...`; not `tokenizer_name` or `max_tokens`);
- the password of a URL (`https://user:PASSWORD@host`).

Records (run.json, manifests, reports, comparisons, evaluation summaries and logs, error lines) go
through `redact` / `redact_data`: each secret becomes `***`. Files a program reads back (the training
config, launch scripts, the asset lock) cannot be masked without changing what runs: `refuse_secrets`
stops with a one-line ConfigError naming the key, never the value.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from gpt4allj_kit.errors import ConfigError

SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
MASK = "***"
_SHORTEST = 8  # no real token is shorter; a shorter value would mask (or refuse) ordinary text

_TOKEN_SHAPE = re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)(@)")
# NAME=value or NAME: value (the value runs to whitespace or a quote), and --name value.
_ASSIGNMENT = re.compile(r"(?<![A-Za-z0-9_.-])(-{0,2}[A-Za-z][A-Za-z0-9_.-]*)(\s*[=:]\s*)([^\s'\"]+)")
_OPTION = re.compile(r"(?<!\S)(--[A-Za-z][A-Za-z0-9_.-]*)(\s+)([^\s'\"-][^\s'\"]*)")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)(\s+)([A-Za-z0-9._~+/=-]{8,})")  # an Authorization value
_SECRET_PARTS = {
    "token", "secret", "password", "passwd", "credential", "credentials", "authorization",
    "apikey", "accesskey", "privatekey", "secretkey",
}  # fmt: skip
_SWITCH_VALUES = {"0", "1", "true", "false", "yes", "no", "on", "off", "none", "null"}
_SECRET_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key")}


def _is_secret_name(name: str) -> bool:
    parts = [p for p in re.split(r"[_.\-]+", name.lower()) if p]
    return bool(_SECRET_PARTS & set(parts)) or any(
        pair in _SECRET_PAIRS for pair in itertools.pairwise(parts)
    )


def _token_file_value() -> str | None:
    """The token huggingface_hub reads from its token file when no variable is set."""
    from huggingface_hub import constants

    with contextlib.suppress(OSError, UnicodeDecodeError):
        return Path(constants.HF_TOKEN_PATH).read_text(encoding="utf-8").strip() or None
    return None


def secret_values() -> list[str]:
    """The secret values this process knows now, longest first (so a longer one is masked whole)."""
    found = [os.environ.get(name, "").strip() for name in SECRET_ENV] + [_token_file_value() or ""]
    return sorted({v for v in found if len(v) >= _SHORTEST}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with every secret masked as `***` (`secrets`: the values to mask, default `secret_values()`)."""
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, MASK)
    text = _TOKEN_SHAPE.sub(MASK, text)
    text = _URL_PASSWORD.sub(rf"\1{MASK}\3", text)
    text = _BEARER.sub(rf"\1\2{MASK}", text)
    text = _ASSIGNMENT.sub(_masked_if_named_secret, text)
    return _OPTION.sub(_masked_if_named_secret, text)


def _masked_if_named_secret(match: re.Match[str]) -> str:
    name, between, value = match.groups()
    # A switch (GPT4ALLJ_KIT_ALLOW_HTTP_TOKEN=1) names a token without being one.
    if not _is_secret_name(name) or value.lower() in _SWITCH_VALUES:
        return match[0]
    return name + between + MASK


def redact_data(value: Any, secrets: Iterable[str] | None = None) -> Any:
    """`value` as JSON-ready data (models dumped, paths as text) with every string redacted."""
    from pydantic import BaseModel  # here: the CLI's start-up does not import pydantic

    known = list(secret_values() if secrets is None else secrets)
    if isinstance(value, BaseModel):
        return redact_data(value.model_dump(mode="json"), known)
    if isinstance(value, str | Path):
        return redact(str(value), known)
    if isinstance(value, dict):
        return {redact(str(k), known): redact_data(v, known) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v, known) for v in value]
    return value


class RedactedLog(logging.Formatter):
    """A log formatter whose lines are redacted (the secrets known when it was made)."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self.secrets = secret_values()

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


class RedactedStream(io.TextIOBase):
    """A text stream that writes to `target` redacted, for output the kit sends to a file it keeps."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.secrets = secret_values()

    def write(self, text: str) -> int:
        self.target.write(redact(text, self.secrets))
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def _secret_paths(value: Any, where: str, known: list[str]) -> Iterable[str]:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _secret_paths(item, f"{where}.{key}" if where else str(key), known)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _secret_paths(item, f"{where}[{i}]", known)
    elif isinstance(value, str | Path) and redact(str(value), known) != str(value):
        yield where or "the text"


def refuse_secrets(value: Any, what: str) -> None:
    """A ConfigError naming the first key of `value` (data or text) that holds a secret: `what` (a file a
    program reads back) would carry it to disk, and masking it would change what runs."""
    found = next(iter(_secret_paths(value, "", secret_values())), None)
    if found is not None:
        raise ConfigError(
            f"{what}: '{found}' holds a secret (a token's value or shape, or a value named as one), which "
            "the kit never writes to disk: pass tokens through the environment (HF_TOKEN, WANDB_API_KEY)"
        )
