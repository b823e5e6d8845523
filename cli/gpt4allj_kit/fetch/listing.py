"""Which files of a commit the kit takes: the hub's tree listing, narrowed to what a run needs."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from gpt4allj_kit.errors import HubError

# Model repos carry the same weights in several formats; the kit takes one and the files around it.
_MODEL_SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "chat_template.jinja",
)
# A LoRA (peft) adapter repo holds no config.json (upstream #108): its config and one weight format.
_ADAPTER_CONFIG = "adapter_config.json"
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a commit as the hub lists it: the hashes a local copy is checked against."""

    path: str
    size: int
    blob_id: str  # git's blob hash
    lfs_sha256: str | None  # the content's sha256, for LFS files


def needed_files(paths: Iterable[str], repo_type: str, allow_patterns: list[str] | None = None) -> list[str]:
    """The files of a commit the kit needs: one weight format plus config/tokenizer files for models.

    Safetensors when present (sharded through its index, else the single file), else the PyTorch bins;
    Flax, TF, ONNX and other duplicates are never taken; a LoRA adapter's config and weights are taken.
    Datasets: every file but git metadata.
    """
    paths = sorted(paths)
    if allow_patterns is not None:
        return [p for p in paths if any(fnmatch.fnmatch(p, pat) for pat in allow_patterns)]
    if repo_type != "model":
        return [p for p in paths if not p.startswith(".git")]
    top = [p for p in paths if "/" not in p]
    side = [p for p in top if p in _MODEL_SIDE_FILES]
    return sorted(side + _weights(top) + _adapter(top))


def _adapter(top: list[str]) -> list[str]:
    if _ADAPTER_CONFIG not in top:
        return []
    return [_ADAPTER_CONFIG, *next(([w] for w in _ADAPTER_WEIGHTS if w in top), [])]


def _weights(top: list[str]) -> list[str]:
    for single, index, shard in (
        ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"),
    ):
        if index in top:
            return [index, *fnmatch.filter(top, shard)]
        if single in top:
            return [single]
    return []


def remote_files(
    repo_id: str, repo_type: str, sha: str, allow_patterns: list[str] | None
) -> list[RemoteFile]:
    """The needed files of commit `sha`, from the hub's tree listing (call inside `hub_errors`)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    tree = {
        f.path: RemoteFile(f.path, f.size, f.blob_id, f.lfs.sha256 if f.lfs else None)
        for f in HfApi().list_repo_tree(repo_id, repo_type=repo_type, revision=sha, recursive=True)
        if isinstance(f, RepoFile)
    }
    chosen = needed_files(tree, repo_type, allow_patterns)
    if not chosen:
        raise HubError(f"{repo_type} {repo_id} at {sha[:12]} has none of the files the kit needs")
    return [tree[p] for p in chosen]
