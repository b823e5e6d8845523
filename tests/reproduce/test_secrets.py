"""No file of a run directory holds a secret, whatever the command line and the environment carried.

The run goes as far as this CPU machine and a machine without network let it: the doctor is forced past
the missing GPU, then the fetch cannot reach the hub. That writes run.json (command line, stage details),
the doctor's and the run's manifests: the records a secret would reach first.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gpt4allj_kit.runstate import load_state

HF_TOKEN = "hf_runEnvToken0123456789"  # short of a token's shape: found only because HF_TOKEN holds it
WANDB_KEY = "0123456789abcdef0123456789abcdef01234567"  # a wandb key looks like a git sha: by value only
FILE_TOKEN = "hf_fromTheTokenFile0123"
TYPED = "hf_" + "Typed9" * 6  # a hub token pasted on the command line, in no variable
NAMED = "plain-value-named-as-secret"
PASSWORD = "mirror-pass-9876"
SECRETS = (HF_TOKEN, WANDB_KEY, FILE_TOKEN, TYPED, NAMED, PASSWORD)


def _no_network() -> list[str]:
    unshare = shutil.which("unshare")
    ok = unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0
    return [unshare, "-n"] if ok else []  # type: ignore[list-item]


def _run_env(tmp_path: Path) -> dict[str, str]:
    hf_home = tmp_path / "hf-home"
    hf_home.mkdir(exist_ok=True)
    (hf_home / "token").write_text(FILE_TOKEN)
    return {
        "HF_HOME": str(hf_home),
        "HUGGING_FACE_HUB_TOKEN": HF_TOKEN,
        "WANDB_API_KEY": WANDB_KEY,
        # A mirror with credentials in its URL: the unreachable hub's error names it.
        "HF_ENDPOINT": f"https://kit:{PASSWORD}@hub.invalid",
    }


def _shown_and_written(outputs: tuple[str, ...], run_dir: Path) -> None:
    for shown in outputs:
        assert not [s for s in SECRETS if s in shown], shown[-2000:]
    for path in (p for p in run_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert not [s for s in SECRETS if s.encode() in data], path


def test_no_file_of_the_run_dir_holds_a_secret(kit_cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = _run_env(tmp_path)
    argv = kit_cli.argv(
        "reproduce", "--revision", "v1.3-groovy", "--skip-train", "--force", "--output", run_dir
    )
    done = subprocess.run(
        [*_no_network(), *argv], env=kit_cli.env(env), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 3, done.stderr[-3000:]
    assert "cannot reach the hub at https://kit:***@hub.invalid" in done.stderr, done.stderr[-3000:]
    state = load_state(run_dir)
    assert state.stage("doctor").status == "done" and state.stage("fetch").status == "failed"
    status = kit_cli("status", run_dir, "--json", env=env)
    assert status.returncode == 0, status.stderr
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"run.json", "manifest.json"} and len(written) >= 3
    _shown_and_written((done.stdout, done.stderr, status.stdout, status.stderr), run_dir)


def test_a_secret_given_as_a_setting_is_refused_before_anything_is_written(kit_cli, tmp_path: Path) -> None:
    """A token pasted into `--set` would reach the training config, which the processes read back: it is
    refused, naming the key and never the value, before a run dir exists."""
    run_dir = tmp_path / "run"
    env = _run_env(tmp_path)
    for setting in (f"wandb_entity={HF_TOKEN}", f"wandb_project_name={TYPED}"):
        argv = kit_cli.argv(
            "reproduce", "--revision", "v1.3-groovy", "--skip-train", "--force", "--output", run_dir,
            "--set", setting,
        )  # fmt: skip
        done = subprocess.run(
            [*_no_network(), *argv], env=kit_cli.env(env), capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 2, done.stderr[-3000:]
        key = setting.partition("=")[0]
        assert f"'{key}' holds a secret" in done.stderr, done.stderr
        assert not run_dir.exists()
        _shown_and_written((done.stdout, done.stderr), run_dir)
