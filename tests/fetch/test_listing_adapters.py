"""Which files of a LoRA adapter repo the fetch takes (upstream issue #108: no config.json in it)."""

from __future__ import annotations

from gpt4allj_kit.fetch.listing import needed_files


def test_an_adapter_repo_gives_its_config_one_weight_format_and_its_tokenizer() -> None:
    repo = [
        ".gitattributes", "README.md", "adapter_config.json", "adapter_model.bin",
        "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json", "training_args.bin",
    ]  # fmt: skip
    assert needed_files(repo, "model") == [
        "adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
    ]  # fmt: skip
    bins_only = [p for p in repo if p != "adapter_model.safetensors"]
    assert "adapter_model.bin" in needed_files(bins_only, "model")


def test_a_model_repo_takes_no_adapter_files_it_does_not_have() -> None:
    assert needed_files(["config.json", "model.safetensors", "adapter_model.bin"], "model") == [
        "config.json", "model.safetensors",
    ]  # fmt: skip
