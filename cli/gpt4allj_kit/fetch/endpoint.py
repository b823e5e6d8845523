"""The hub endpoint and the token: where the token may go.

huggingface_hub sends the token (HF_TOKEN, HUGGING_FACE_HUB_TOKEN, or the token file a login left) with
every request to HF_ENDPOINT. Two rules keep it there:
- over plain http it would cross the network in clear: `check_endpoint` refuses that before the first
  request, unless the endpoint is this machine (loopback) or the user opts in with
  GPT4ALLJ_KIT_ALLOW_HTTP_TOKEN=1;
- the kit's own downloads send it to the endpoint's origin only (`request_headers`), never to the CDN or
  object store a large file redirects to, as huggingface_hub's own downloads do.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

from gpt4allj_kit.errors import ConfigError

ALLOW_HTTP_TOKEN_ENV = "GPT4ALLJ_KIT_ALLOW_HTTP_TOKEN"
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def endpoint() -> str:
    """The hub the client talks to (HF_ENDPOINT, read when huggingface_hub was imported)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def origin(url: str) -> Origin:
    """(scheme, host, port) of `url`, the port defaulted by the scheme: what a browser calls the origin."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is no number: an origin nothing else has
        port = -1
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0)


def is_endpoint_origin(url: str) -> bool:
    return origin(url) == origin(endpoint())


def token_source() -> str | None:
    """Where the token the client would send comes from (never its value); None when there is none."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(name):
            return f"environment variable {name}"
    from huggingface_hub import constants

    token_file = Path(constants.HF_TOKEN_PATH)
    with contextlib.suppress(OSError):
        if token_file.is_file() and token_file.read_text().strip():
            return f"token file {token_file}"
    return None


def token_sent() -> bool:
    """Whether the client's requests carry the token (HF_HUB_DISABLE_IMPLICIT_TOKEN keeps it home)."""
    from huggingface_hub.utils import build_hf_headers

    return "authorization" in {k.lower() for k in build_hf_headers()}


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine without a lookup: localhost, 127.0.0.0/8 or ::1."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint() -> None:
    """Refuses (one-line ConfigError) a token that would travel in clear to a plain-http endpoint.

    Called before the first request of every conversation with the hub: nothing has been sent yet.
    """
    url = endpoint()
    scheme, host, _port = origin(url)
    if scheme != "http" or is_loopback(host) or os.environ.get(ALLOW_HTTP_TOKEN_ENV) == "1":
        return
    if not token_sent():
        return
    raise ConfigError(
        f"HF_ENDPOINT {url} is plain http and a hub token is set ({token_source() or 'token'}): it would "
        f"be sent in clear; use https, unset the token, or set {ALLOW_HTTP_TOKEN_ENV}=1 to send it anyway"
    )


def request_headers(url: str, headers: dict[str, str], *, left_endpoint: bool) -> dict[str, str]:
    """`headers` for a request to `url`: without the token unless `url` is on the endpoint's origin and the
    request chain has not left it (a redirect back from elsewhere is not trusted with it either)."""
    if not left_endpoint and is_endpoint_origin(url):
        return dict(headers)
    return {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
