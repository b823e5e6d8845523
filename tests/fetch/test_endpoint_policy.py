"""A token is never sent in clear: a plain-http HF_ENDPOINT with a token set is refused before any request,
unless the endpoint is this machine or the user opts in (GPT4ALLJ_KIT_ALLOW_HTTP_TOKEN=1).

The refused commands run without a network (`unshare -n`, when this machine allows it): exit 2 with the
policy's message shows the check fired before a connection was tried (one would fail with exit 3).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from gpt4allj_kit.fetch.endpoint import ALLOW_HTTP_TOKEN_ENV, is_loopback, origin
from gpt4allj_kit.runstate import load_state

from .conftest import MODEL, Hub

TEST_NET = "http://192.0.2.1"  # RFC 5737 TEST-NET-1: never routed
TOKEN = "hf_policyTestToken0123456789abcdefghijk"


def _no_network_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def _run(
    kit_cli, tmp_path: Path, *args: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [*_no_network_prefix(), *kit_cli.argv(*args)],
        env=kit_cli.env({"HF_HOME": str(tmp_path / "hf-home"), "NO_COLOR": "1", **env}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done, time.monotonic() - started


def _refused(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"HF_ENDPOINT {TEST_NET} is plain http" in lines[0] and f"{ALLOW_HTTP_TOKEN_ENV}=1" in lines[0]
    assert TOKEN not in done.stderr + done.stdout
    return lines[0]


@pytest.mark.parametrize("variable", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "token file"])
def test_fetch_refuses_a_token_in_clear_before_any_request(kit_cli, tmp_path: Path, variable: str) -> None:
    env = {"HF_ENDPOINT": TEST_NET}
    if variable == "token file":
        (tmp_path / "hf-home").mkdir()
        (tmp_path / "hf-home" / "token").write_text(TOKEN)
    else:
        env[variable] = TOKEN
    done, seconds = _run(kit_cli, tmp_path, "fetch", "--what", "model", env=env)
    line = _refused(done)
    assert ("token file" if variable == "token file" else variable) in line
    assert seconds < 60  # no connect timeout was waited for (the hub client's is 10 s per try)
    assert not (tmp_path / "gpt4allj-kit.lock.json").exists()


def test_eval_of_a_hub_model_is_refused_the_same_way(kit_cli, tmp_path: Path) -> None:
    done, _ = _run(
        kit_cli, tmp_path, "eval", "--model", MODEL, env={"HF_ENDPOINT": TEST_NET, "HF_TOKEN": TOKEN}
    )
    _refused(done)


def test_eval_of_a_local_model_is_refused_before_lm_eval_goes_online(kit_cli, tmp_path: Path, tiny) -> None:
    env = {"HF_ENDPOINT": TEST_NET, "HF_TOKEN": TOKEN}
    done, _ = _run(kit_cli, tmp_path, "eval", "--model", str(tiny.model_dir), "--limit", "1", env=env)
    _refused(done)


def test_reproduce_records_the_refusal_in_its_fetch_stage(kit_cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ("reproduce", "--revision", "v1.3-groovy", "--skip-train", "--force", "--output", str(run_dir))
    done, _ = _run(kit_cli, tmp_path, *args, env={"HF_ENDPOINT": TEST_NET, "HF_TOKEN": TOKEN})
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"HF_ENDPOINT {TEST_NET} is plain http" in done.stderr and "Traceback" not in done.stderr
    fetch = load_state(run_dir).stage("fetch")
    assert fetch.status == "failed" and "plain http" in (fetch.detail or "")


def test_the_opt_in_or_no_token_lets_the_request_go(kit_cli, tmp_path: Path) -> None:
    opted = {"HF_ENDPOINT": TEST_NET, "HF_TOKEN": TOKEN, ALLOW_HTTP_TOKEN_ENV: "1"}
    for env in (opted, {"HF_ENDPOINT": TEST_NET}):
        done, _ = _run(kit_cli, tmp_path, "fetch", "--what", "model", env=env)
        if _no_network_prefix():
            # Past the check the client connects: with no network, the hub is unreachable.
            assert done.returncode == 3 and "cannot reach the hub" in done.stderr, done.stderr[-2000:]
        assert "plain http" not in done.stderr


def test_a_loopback_http_endpoint_gets_the_token(kit, hub: Hub) -> None:
    hub.server.token = TOKEN
    hub.server.repos["model", MODEL].private = True
    localhost = hub.server.endpoint.replace("127.0.0.1", "localhost")
    for endpoint in (hub.server.endpoint, localhost):
        done = kit("fetch", "--what", "model", env={"HF_ENDPOINT": endpoint, "HF_TOKEN": TOKEN})
        assert done.code == 0, done.err
    assert any(s.headers.get("authorization") == f"Bearer {TOKEN}" for s in hub.server.log)


def test_loopback_and_origins_are_read_without_a_lookup() -> None:
    for host in ("localhost", "LOCALHOST.", "app.localhost", "127.0.0.1", "127.8.9.10", "::1"):
        assert is_loopback(host), host
    for host in ("192.0.2.1", "10.0.0.1", "localhost.example.com", "example.com", "::ffff:8.8.8.8", ""):
        assert not is_loopback(host), host
    assert (
        origin("https://Hub.Example/x")
        == origin("https://hub.example:443/y")
        == ("https", "hub.example", 443)
    )
    assert origin("http://hub.example/x") != origin("https://hub.example/x")
    assert origin("http://127.0.0.1:8000/a") != origin("http://127.0.0.1:8001/a")
