"""The hub token goes to HF_ENDPOINT's origin only, never to the host a large file is redirected to.

The stand-in redirects LFS files to a second server on another port (another origin, like the hub's CDN),
straight, through a chain of redirects there, or through that server back to the hub. The repo is private,
so the endpoint must get the token for anything to work, and the second server must never see it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpt4allj_kit.fetch.lock import read_lock

from .conftest import MODEL, Hub
from .standin import ObjectStore, Served

TOKEN = "hf_originTestToken0123456789abcdefghijkl"


@pytest.fixture
def store() -> Iterator[ObjectStore]:
    server = ObjectStore().start()
    yield server
    server.stop()


def _carries_token(served: Served) -> bool:
    return "authorization" in served.headers or any(TOKEN in v for v in served.headers.values())


def _weights(hub: Hub) -> bytes:
    return hub.server.repos["model", MODEL].commits[hub.shas[MODEL, "v1.0"]]["model.safetensors"]


def _private(hub: Hub) -> None:
    hub.server.token = TOKEN
    hub.server.repos["model", MODEL].private = True


def _endpoint_got_the_token(hub: Hub) -> bool:
    resolves = [s for s in hub.server.log if "/resolve/" in s.path]
    return bool(resolves) and all(s.headers.get("authorization") == f"Bearer {TOKEN}" for s in resolves)


# The paths each redirect mode makes the second server (and, "back", the hub) serve, in order.
CHAINS = {
    0: ["/o/"],
    2: ["/hop/2/", "/hop/1/", "/o/"],
    "back": ["/back/"],
}


@pytest.mark.parametrize("hops", [0, 2, "back"], ids=["direct", "chain-on-store", "store-then-back"])
def test_a_redirected_download_never_sends_the_token_off_the_endpoint(
    kit, hub: Hub, store: ObjectStore, hops: int | str
) -> None:
    _private(hub)
    hub.server.redirect_lfs_to(store, hops)
    run = kit("fetch", "--revision", "v1.0", "--what", "model", "--verify", env={"HF_TOKEN": TOKEN})
    assert run.code == 0, run.err
    oid = hashlib.sha256(_weights(hub)).hexdigest()
    gets = [s for s in store.log if s.method == "GET"]
    assert [s.path.removesuffix(oid) for s in gets] == CHAINS[hops]
    assert not [s for s in store.log if _carries_token(s)]
    if hops == "back":
        # Back on the endpoint's origin, still no token: the store chose that URL, not the hub.
        back = [s for s in hub.server.log if s.path == f"/cdn/{oid}" and s.method == "GET"]
        assert len(back) == 1 and back[0].status == 200 and not _carries_token(back[0])
    else:
        assert gets[-1].status == 200 and gets[-1].body_bytes == len(_weights(hub))
    assert _endpoint_got_the_token(hub)  # without it the private repo would have answered 401
    entry = read_lock(kit.lock).find(MODEL, "model", "v1.0")
    assert entry is not None
    weights = next(f for f in entry.files if f.path == "model.safetensors")
    assert weights.sha256 == hashlib.sha256(_weights(hub)).hexdigest() == oid


def test_a_download_cut_at_the_store_resumes_there_with_its_range(kit, hub: Hub, store: ObjectStore) -> None:
    _private(hub)
    hub.server.redirect_lfs_to(store, 2)
    oid = hashlib.sha256(_weights(hub)).hexdigest()
    store.drops[oid] = 1000
    run = kit("fetch", "--revision", "v1.0", "--what", "model", "--verify", env={"HF_TOKEN": TOKEN})
    assert run.code == 0, run.err
    served = [s for s in store.log if s.method == "GET" and s.path.startswith("/o/")]
    assert [(s.range, s.body_bytes) for s in served] == [
        (None, 1000),
        ("bytes=1000-", len(_weights(hub)) - 1000),
    ]
    assert not [s for s in store.log if _carries_token(s)]


# huggingface_hub downloads for the kit too (snapshot_download links the snapshot, hf_hub_download reads a
# task's README). Its own rule must hold as well: checked here on the same stand-in.
HUB_DOWNLOAD = """
import sys
from huggingface_hub import hf_hub_download, snapshot_download
snapshot_download(sys.argv[1], revision="v1.0", cache_dir=sys.argv[2] + "/a")
hf_hub_download(sys.argv[1], "model.safetensors", revision="v1.0", cache_dir=sys.argv[2] + "/b")
"""


@pytest.mark.parametrize("hops", [0, 2, "back"], ids=["direct", "chain-on-store", "store-then-back"])
def test_huggingface_hubs_own_downloads_keep_the_token_too(
    tmp_path: Path, hub: Hub, store: ObjectStore, hops: int | str
) -> None:
    _private(hub)
    hub.server.redirect_lfs_to(store, hops)
    env = {"HF_ENDPOINT": hub.server.endpoint, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", HUB_DOWNLOAD, MODEL, str(tmp_path)],
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert [s for s in store.log if s.method == "GET"], "the weights came through the store"
    assert not [s for s in store.log if _carries_token(s)]
    assert not [s for s in hub.server.log if s.path.startswith("/cdn/") and _carries_token(s)]
    assert _endpoint_got_the_token(hub)
    downloaded = next((tmp_path / "b").rglob("model.safetensors"))
    assert downloaded.read_bytes() == _weights(hub)


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}


def test_the_standin_would_see_a_leak(hub: Hub, store: ObjectStore) -> None:
    """The check above can fail: a client that forwards the token is caught by the store's log."""
    import httpx2

    hub.server.redirect_lfs_to(store, 2)
    url = f"{hub.server.endpoint}/{MODEL}/resolve/v1.0/model.safetensors"
    with httpx2.Client(follow_redirects=True) as client:
        # httpx itself strips Authorization on a cross-origin redirect; a hand-set header on every hop is the
        # naive downloader's mistake.
        first = client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, follow_redirects=False)
        client.get(first.headers["Location"], headers={"Authorization": f"Bearer {TOKEN}"})
    assert [s for s in store.log if _carries_token(s)]
