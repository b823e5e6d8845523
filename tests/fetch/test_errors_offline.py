"""Failures are one line with exit 3 and nothing recorded; offline fetch works from the cache alone."""

from __future__ import annotations

import errno
import os
import socket
import time

import pytest
from gpt4allj_kit.errors import EnvironmentNotReady
from gpt4allj_kit.fetch.errors import hub_errors
from gpt4allj_kit.fetch.lock import read_lock

from .conftest import BASE, MODEL, Hub


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unknown_revision_lists_the_revisions_the_hub_has(kit, hub: Hub) -> None:
    run = kit("fetch", "--revision", "v9.9-nope", "--what", "model")
    assert run.code == 3
    line = _one_line(run.err)
    assert "no revision 'v9.9-nope'" in line and "main, v1.0, v1.2-jazzy" in line
    assert not kit.lock.exists()


def test_private_repo_needs_a_token_and_the_token_is_never_printed(kit, hub: Hub) -> None:
    hub.server.repos["model", MODEL].private = True
    denied = kit("fetch", "--what", "model")
    assert denied.code == 3 and "set HF_TOKEN" in _one_line(denied.err)
    wrong = kit("fetch", "--what", "model", env={"HF_TOKEN": "hf_wrong_secret"})
    assert wrong.code == 3 and "hf_wrong_secret" not in wrong.err + wrong.out
    allowed = kit("fetch", "--what", "model", env={"HF_TOKEN": hub.server.token})
    assert allowed.code == 0, allowed.err
    assert hub.server.token not in allowed.out + allowed.err + kit.lock.read_text()


def test_unknown_repo_and_no_network_are_one_line_and_fast(kit, hub: Hub) -> None:
    del hub.server.repos["model", BASE]
    missing = kit("fetch", "--what", "base")
    assert missing.code == 3 and "does not exist" in _one_line(missing.err)
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    started = time.monotonic()
    refused = kit("fetch", "--what", "data,model", env={"HF_ENDPOINT": closed})
    assert time.monotonic() - started < 15  # no retry loop of tens of seconds
    assert refused.code == 3 and f"cannot reach the hub at {closed}" in _one_line(refused.err)
    assert not kit.lock.exists()


def test_a_full_disk_is_one_line(tmp_path) -> None:
    with pytest.raises(EnvironmentNotReady, match="disk full"), hub_errors(MODEL, "model", "v1.0", tmp_path):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_offline_uses_the_complete_cache_and_names_what_is_missing(kit, hub: Hub) -> None:
    assert kit("fetch", "--revision", "v1.0", "--what", "data,model").code == 0
    served = len(hub.server.log)
    offline = kit("fetch", "--revision", "v1.0", "--what", "data,model", "--offline")
    assert offline.code == 0, offline.err
    by_env = kit("fetch", "--revision", "v1.0", "--what", "model", env={"HF_HUB_OFFLINE": "1"})
    assert by_env.code == 0, by_env.err
    assert len(hub.server.log) == served  # not one request
    lock = read_lock(kit.lock)
    snapshot = kit.hf_home / "hub" / "models--nomic-ai--gpt4all-j" / "snapshots" / lock.assets[-1].sha
    (snapshot / "tokenizer.json").unlink()
    incomplete = kit("fetch", "--revision", "v1.0", "--what", "model", "--offline")
    assert incomplete.code == 3
    assert "lacks 1 file(s)" in _one_line(incomplete.err) and "tokenizer.json" in incomplete.err
    never = kit("fetch", "--revision", "v1.2-jazzy", "--what", "model", "--offline", "--lock", "other.json")
    assert never.code == 3 and "fetch it online first" in _one_line(never.err)
    assert len(hub.server.log) == served


def test_offline_without_a_lock_entry_checks_the_cached_listing(kit, hub: Hub) -> None:
    assert kit("fetch", "--revision", "v1.0", "--what", "model").code == 0
    served = len(hub.server.log)
    # Another lock has no entry: the files to expect and their hashes come from the listing cached online.
    listed = kit(
        "fetch", "--revision", "v1.0", "--what", "model", "--offline", "--lock", "other.json", "--json"
    )
    assert listed.code == 0, listed.err
    files = {f["path"] for f in listed.json()["assets"][0]["files"]}
    assert files == {f.path for f in read_lock(kit.lock).find(MODEL, "model", "v1.0").files}
    snapshot = kit.hf_home / "hub" / "models--nomic-ai--gpt4all-j" / "snapshots" / hub.shas[MODEL, "v1.0"]
    for name in ("model.safetensors", "config.json"):  # an LFS file and a git file, each one byte flipped
        blob = (snapshot / name).resolve()
        data = bytearray(blob.read_bytes())
        data[10] ^= 0xFF
        os.chmod(blob, 0o644)
        blob.write_bytes(bytes(data))
    bad = kit("fetch", "--revision", "v1.0", "--what", "model", "--offline", "--lock", "third.json")
    assert bad.code == 3
    line = _one_line(bad.err)
    assert "fail verification" in line
    assert "model.safetensors (corrupted: sha256" in line and "config.json (corrupted: git blob" in line
    assert len(hub.server.log) == served  # not one request
