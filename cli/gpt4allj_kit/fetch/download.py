"""The kit's own download of one file, kept because huggingface_hub cannot resume across processes.

huggingface_hub downloads into a process-unique temporary file, so bytes that an interrupted process received
are lost to the next one. The kit streams into `blobs/<etag>.incomplete` instead (the name older
huggingface_hub releases resumed from): an interrupted download continues with a `Range` request in the next
fetch, and a connection that drops while still delivering data is resumed at once. The blob is checked
against the hub's listing before it takes its final name.

Large files redirect to another host (the hub's CDN, a mirror's object store). Redirects are followed here,
one by one, so that the token goes to the endpoint's origin only (see `endpoint.request_headers`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from gpt4allj_kit.errors import HubError
from gpt4allj_kit.fetch.cache import hub_mismatch
from gpt4allj_kit.fetch.endpoint import is_endpoint_origin, request_headers
from gpt4allj_kit.fetch.listing import RemoteFile

if TYPE_CHECKING:
    import httpx2

_ATTEMPTS = 5
_MAX_REDIRECTS = 10


@dataclass(frozen=True)
class FileProgress:
    """A progress report for one file; `done` counts bytes on disk (resumed bytes included)."""

    repo_id: str
    path: str
    done: int
    total: int
    resumed_from: int = 0


ProgressCallback = Callable[[FileProgress], None]


def download_file(
    repo_id: str,
    repo_type: str,
    sha: str,
    remote: RemoteFile,
    storage: Path,
    progress: ProgressCallback | None,
) -> None:
    """Puts `remote`'s blob of commit `sha` into the repo's `blobs/`, verified (call inside `hub_errors`)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import WeakFileLock

    meta = get_hf_file_metadata(hf_hub_url(repo_id, remote.path, repo_type=repo_type, revision=sha))
    if meta.commit_hash not in (None, sha):
        raise HubError(f"the hub served {remote.path} of commit {meta.commit_hash} when asked for {sha}")
    blob = storage / "blobs" / str(meta.etag)
    blob.parent.mkdir(parents=True, exist_ok=True)
    # The lock file huggingface_hub itself takes for this blob, so the two never write it at once.
    lock = storage.parent / ".locks" / storage.name / f"{meta.etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock):
        if not blob.exists():
            _stream(meta.location, blob, remote, repo_id, progress)
        problem = hub_mismatch(blob, remote)
        if problem:
            blob.unlink()
            raise HubError(
                f"{repo_id}/{remote.path} at {sha[:12]} failed verification after download ({problem})"
            )
    if progress:
        progress(FileProgress(repo_id, remote.path, remote.size, remote.size))


def _stream(
    url: str, blob: Path, remote: RemoteFile, repo_id: str, progress: ProgressCallback | None
) -> None:
    """Streams `url` into `blob` through `<blob>.incomplete`, resuming what an earlier attempt left there."""
    import httpx2
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

    partial = blob.with_name(blob.name + ".incomplete")
    if partial.exists() and partial.stat().st_size > remote.size:
        partial.unlink()
    first = partial.stat().st_size if partial.exists() else 0
    for attempt in range(_ATTEMPTS):
        start = partial.stat().st_size if partial.exists() else 0
        headers = build_hf_headers()
        headers["Accept-Encoding"] = "identity"
        if start > 0:
            headers["Range"] = f"bytes={start}-"
        received = 0
        try:
            if start < remote.size or remote.size == 0:
                with _get(url, headers) as resp:
                    hf_raise_for_status(resp)
                    mode = "ab" if resp.status_code == 206 else "wb"  # 200: the server ignored Range
                    done = start if mode == "ab" else 0
                    with partial.open(mode) as fh:
                        for chunk in resp.iter_bytes():  # as received: a drop keeps what came
                            fh.write(chunk)
                            received += len(chunk)
                            done += len(chunk)
                            if progress:
                                progress(FileProgress(repo_id, remote.path, done, remote.size, first))
            break
        except (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.TimeoutException):
            # A connection dropped mid-body: resume at once while it still makes progress, else give up and
            # leave the partial file for the next fetch to resume.
            if received == 0 or attempt == _ATTEMPTS - 1:
                raise
    os.replace(partial, blob)


@contextlib.contextmanager
def _get(url: str, headers: dict[str, str]) -> Iterator[httpx2.Response]:
    """The streamed GET of `url`, redirects followed with the token sent to the endpoint's origin only.

    Once a redirect has left the endpoint's origin the token is never sent again, not even to a URL back
    on the endpoint: a host that redirects is not trusted to choose who gets it.
    """
    import httpx2
    from huggingface_hub.utils import get_session

    session = get_session()
    left_endpoint = False
    for _ in range(_MAX_REDIRECTS + 1):
        left_endpoint = left_endpoint or not is_endpoint_origin(url)
        request = session.build_request(
            "GET", url, headers=request_headers(url, headers, left_endpoint=left_endpoint), timeout=30
        )
        resp = session.send(request, stream=True, follow_redirects=False)
        if not resp.has_redirect_location:
            try:
                yield resp
            finally:
                resp.close()
            return
        resp.close()
        url = urljoin(url, resp.headers["Location"])
    raise httpx2.TooManyRedirects(f"more than {_MAX_REDIRECTS} redirects for {url}")
