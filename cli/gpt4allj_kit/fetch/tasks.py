"""Which datasets the evaluation tasks read, and which files of a dataset repo one task config needs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.fetch.cache import hub_cache_dir
from gpt4allj_kit.fetch.errors import hub_errors
from gpt4allj_kit.fetch.revisions import resolve_sha
from gpt4allj_kit.recipe import EVAL_TASKS

_TASK_LINE = re.compile(r"^task:\s*(\S+)\s*$", re.M)


@dataclass(frozen=True)
class TaskDataset:
    task: str
    dataset_path: str
    dataset_name: str | None


def task_datasets(tasks: Iterable[str] = EVAL_TASKS) -> list[TaskDataset]:
    """Where each lm-eval task reads its data, from the installed lm-eval task YAMLs (includes followed)."""
    import lm_eval

    root = Path(lm_eval.__file__).parent / "tasks"
    tasks = list(tasks)
    wanted = set(tasks)
    by_task: dict[str, Path] = {}
    # Thousands of task YAMLs: find the few by their `task:` line, parse only those.
    for yaml_path in sorted(root.rglob("*.yaml")):
        match = _TASK_LINE.search(yaml_path.read_text(encoding="utf-8", errors="replace"))
        if match and (name := match.group(1).strip("'\"")) in wanted:
            by_task.setdefault(name, yaml_path)
    found = []
    for task in tasks:
        if task not in by_task:
            raise ConfigError(f"lm-eval has no task '{task}' installed (looked under {root})")
        config = _resolved_task_yaml(by_task[task])
        if not config.get("dataset_path"):
            raise ConfigError(f"lm-eval task '{task}' names no dataset_path ({by_task[task]})")
        found.append(TaskDataset(task, str(config["dataset_path"]), config.get("dataset_name")))
    return found


def _resolved_task_yaml(path: Path) -> dict[str, Any]:
    config = _yaml(path)
    if include := config.get("include"):
        base = _resolved_task_yaml(path.parent / str(include))
        config = {**base, **{k: v for k, v in config.items() if k != "include"}}
    return config


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    # lm-eval YAMLs carry `!function module.fn` tags: only the dataset keys matter here.
    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def config_patterns(
    repo_id: str, revision: str, configs: Iterable[str], cache_dir: Path | str | None = None
) -> list[str] | None:
    """The files of the named configs of a dataset repo at `revision`; None = every file."""
    configs = list(configs)
    if not configs:
        return None
    sha = resolve_sha(repo_id, repo_type="dataset", revision=revision, cache_dir=cache_dir)
    patterns: list[str] = []
    for name in configs:
        found = task_allow_patterns(repo_id, sha, name, cache_dir)
        if found is None:
            return None
        patterns += [p for p in found if p not in patterns]
    return patterns


def task_allow_patterns(
    repo_id: str, sha: str, dataset_name: str | None, cache_dir: Path | str | None = None
) -> list[str] | None:
    """The files of one config (`dataset_name`) of a dataset repo, from its README `configs:`; None = all.

    Task repos hold many configs (ai2_arc: ARC-Easy and ARC-Challenge; super_glue: eight); fetching one task
    should not download the others.
    """
    if not dataset_name:
        return None
    from huggingface_hub import HfApi, hf_hub_download

    cache = hub_cache_dir(cache_dir)
    with hub_errors(repo_id, "dataset", sha, cache):
        files = HfApi().list_repo_files(repo_id, repo_type="dataset", revision=sha)
        if "README.md" in files:
            readme = Path(
                hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=sha, cache_dir=cache)
            )
            patterns = _readme_config_files(readme.read_text(encoding="utf-8"), dataset_name)
            if patterns:
                return ["README.md", *patterns]
    folder = [f for f in files if f.startswith(f"{dataset_name}/")]
    return ["README.md", f"{dataset_name}/*"] if folder else None


def _readme_config_files(readme: str, config_name: str) -> list[str]:
    import yaml

    match = re.match(r"^---\n(.*?)\n---", readme, re.S)
    if not match:
        return []
    try:
        header = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return []
    for config in header.get("configs") or []:
        if isinstance(config, dict) and config.get("config_name") == config_name:
            data_files = config.get("data_files") or []
            if isinstance(data_files, str):
                return [data_files]
            paths = [d.get("path") if isinstance(d, dict) else d for d in data_files]
            return [str(p) for item in paths for p in (item if isinstance(item, list) else [item]) if p]
    return []
