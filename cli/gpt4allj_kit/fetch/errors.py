"""Every conversation with the hub runs inside `hub_errors`: the endpoint's policy is checked on entry
(`endpoint.check_endpoint`, before any request), and the client's exceptions become one-line HubErrors that
say what to do."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from gpt4allj_kit.errors import HubError
from gpt4allj_kit.fetch.endpoint import check_endpoint, endpoint, token_sent
from gpt4allj_kit.files import disk_errors


@contextlib.contextmanager
def hub_errors(repo_id: str, repo_type: str, revision: str, cache_dir: Path) -> Iterator[None]:
    """Checks the endpoint, then turns the hub client's exceptions (and a full disk under `cache_dir`) into
    one-line errors."""
    import httpx2
    from huggingface_hub import errors

    check_endpoint()
    where = f"{repo_type} {repo_id}"
    try:
        with disk_errors(cache_dir):
            yield
    except errors.RevisionNotFoundError:
        from gpt4allj_kit.fetch.revisions import known_revisions

        raise HubError(
            f"{where} has no revision '{revision}' (the hub has: {known_revisions(repo_id, repo_type)})"
        ) from None
    except errors.GatedRepoError:
        raise HubError(
            f"{where} is gated: accept its terms on the hub, then set HF_TOKEN to a token with access"
        ) from None
    except errors.RepositoryNotFoundError as exc:
        raise _not_found(where, exc.response.status_code if exc.response is not None else 404) from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise _not_found(where, status) from None
        raise HubError(
            f"the hub at {endpoint()} answered HTTP {status} for {where}: try again later"
        ) from None
    except (
        httpx2.ConnectError,
        httpx2.TimeoutException,
        httpx2.RemoteProtocolError,
        httpx2.ReadError,
        httpx2.TooManyRedirects,
    ) as exc:
        raise HubError(
            f"cannot reach the hub at {endpoint()} ({type(exc).__name__}) for {where}@{revision}: "
            "check the network or HF_ENDPOINT, or use the cache with --offline / HF_HUB_OFFLINE=1"
        ) from None


def _not_found(where: str, status: int) -> HubError:
    if status in (401, 403) and not token_sent():
        return HubError(
            f"{where} is private, gated or absent at {endpoint()}: set HF_TOKEN to a token with access"
        )
    if status in (401, 403):
        return HubError(
            f"{where} is not readable with the HF_TOKEN set (HTTP {status}): use a token with access"
        )
    return HubError(
        f"{where} does not exist at {endpoint()}: check the repo id (and HF_ENDPOINT for a mirror)"
    )
