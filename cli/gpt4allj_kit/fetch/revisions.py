"""Revisions: a tag or branch -> the commit sha it names, online from the hub, offline from the cache."""

from __future__ import annotations

import re
from pathlib import Path

from gpt4allj_kit.errors import HubError
from gpt4allj_kit.fetch.cache import cached_ref, hub_cache_dir
from gpt4allj_kit.fetch.errors import hub_errors
from gpt4allj_kit.fetch.lock import LockedAsset

_SHA = re.compile(r"^[0-9a-f]{40}$")


def is_sha(revision: str) -> bool:
    return bool(_SHA.fullmatch(revision))


def resolve_sha(repo_id: str, *, repo_type: str, revision: str, cache_dir: Path | str | None = None) -> str:
    """The commit sha `revision` names on the hub now (a sha is returned as it is)."""
    from huggingface_hub import HfApi

    if is_sha(revision):
        return revision
    with hub_errors(repo_id, repo_type, revision, hub_cache_dir(cache_dir)):
        sha = HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision).sha
    if not sha or not is_sha(sha):
        raise HubError(f"the hub gave no commit sha for {repo_type} {repo_id}@{revision}")
    return sha


def offline_sha(storage: Path, revision: str, locked: LockedAsset | None) -> str | None:
    """The sha `revision` names without the hub: itself, the lock's, else the ref an online fetch left."""
    if is_sha(revision):
        return revision
    if locked is not None:
        return locked.sha
    return cached_ref(storage, revision)


def known_revisions(repo_id: str, repo_type: str) -> str:
    """The branches and tags the hub has for a repo, for an error message about one it has not."""
    from huggingface_hub import HfApi

    try:
        refs = HfApi().list_repo_refs(repo_id, repo_type=repo_type)
    except Exception:  # the listing only decorates the error being raised; never hide that error
        return "unknown, the revision list could not be read"
    names = [r.name for r in refs.branches] + [r.name for r in refs.tags]
    return ", ".join(names) or "none"
