"""Dataset revisions through the real `datasets`/`huggingface_hub` code paths; the eval task datasets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gpt4allj_kit.fetch.tasks import task_datasets
from gpt4allj_kit.recipe import EVAL_TASKS

from .conftest import DATA, ROWS, Hub, jsonl

_LOAD = """
import json, sys
import datasets
from huggingface_hub import snapshot_download
repo, sha, kit_path = sys.argv[1:]
online = datasets.load_dataset(repo, revision=sha, split="train")
folder = datasets.load_dataset("json", data_files=kit_path + "/data/train.jsonl", split="train")
path = snapshot_download(repo, repo_type="dataset", revision=sha)
print(json.dumps({"online": online.to_list(), "folder": folder.to_list(), "snapshot_download": path}))
"""


def test_each_dataset_revision_gives_its_own_rows(kit, hub: Hub, tmp_path: Path) -> None:
    from gpt4allj_kit.assets import synthetic_rows

    for tag, (seed, rows) in ROWS.items():
        run = kit("fetch", "--revision", tag, "--what", "data", "--json")
        assert run.code == 0, run.err
        asset = run.json()["assets"][0]
        assert asset["sha"] == hub.shas[DATA, tag]
        proc = subprocess.run(
            [sys.executable, "-c", _LOAD, DATA, asset["sha"], asset["path"]],
            env={**_env(kit, hub), "HF_DATASETS_CACHE": str(tmp_path / "ds" / tag)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        loaded = json.loads(proc.stdout.strip().splitlines()[-1])
        expected = synthetic_rows(seed, rows)
        assert loaded["online"] == expected and loaded["folder"] == expected
        assert loaded["snapshot_download"] == asset["path"]  # other tools reuse the kit's snapshot


def _env(kit, hub: Hub) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    return {**env, "HF_ENDPOINT": hub.server.endpoint, "HF_HOME": str(kit.hf_home)}


def test_task_datasets_come_from_the_installed_lm_eval_yamls() -> None:
    found = {t.task: (t.dataset_path, t.dataset_name) for t in task_datasets()}
    assert set(found) == set(EVAL_TASKS)
    assert found["winogrande"] == ("allenai/winogrande", "winogrande_xl")
    assert found["arc_challenge"] == ("allenai/ai2_arc", "ARC-Challenge")  # through arc_easy.yaml's include
    assert found["boolq"][1] == "boolq"


def test_fetch_tasks_takes_only_each_tasks_config(kit, hub: Hub) -> None:
    repos: dict[str, list[str]] = {}
    for task in task_datasets():
        repos.setdefault(task.dataset_path, []).append(task.dataset_name or "")
    for repo_id, names in repos.items():
        # A task without dataset_name reads the whole repo; one with a name must skip the other configs.
        configs = [n for n in names if n] + (["unused-config"] if any(names) else ["default"])
        readme = "---\nconfigs:\n" + "".join(
            f"- config_name: {c}\n  data_files:\n  - split: test\n    path: {c}/test-*\n" for c in configs
        )
        files = {"README.md": (readme + "---\n").encode()}
        files.update({f"{c}/test-00000-of-00001.jsonl": jsonl([{"q": f"{repo_id} {c}"}]) for c in configs})
        hub.server.repo(repo_id, "dataset").commit(files, "main")
    run = kit("fetch", "--what", "tasks", "--json")
    assert run.code == 0, run.err
    assets = {a["repo_id"]: a for a in run.json()["assets"]}
    assert set(assets) == set(repos)
    for repo_id, names in repos.items():
        taken = {f["path"] for f in assets[repo_id]["files"]}
        wanted = {f"{n}/test-00000-of-00001.jsonl" for n in names if n}
        assert wanted <= taken and not any(p.startswith("unused-config/") for p in taken)
