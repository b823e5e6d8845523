"""`eval` of a LoRA adapter folder or hub repo (upstream issue #108: adapter repos have no config.json).

The adapter's adapter_config.json names its base model (a folder, or a hub repo fetched by revision through
the kit's fetch); lm-eval runs `pretrained=<base>,peft=<adapter>`; the summary and manifest record both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.evaluate.harness import (
    check_source,
    lm_eval_model_args,
    resolve_models,
)


def make_adapter(base: Path, out: Path, *, base_name: str | None = None, tokenizer: bool = True) -> Path:
    """A trained-looking LoRA adapter of `base` (upstream's settings, B not zero), as peft saves one."""
    import torch
    from gpt4allj_kit.train.loop import lora_config
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora_config())
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    model.save_pretrained(out)
    if tokenizer:
        AutoTokenizer.from_pretrained(base).save_pretrained(out)
    if base_name is not None:  # after saving: peft would look the name up on the hub
        rewrite_config(out, base_model_name_or_path=base_name)
    return out


def merged_copy(adapter: Path, base: Path, out: Path) -> Path:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base), adapter
    ).merge_and_unload().save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def rewrite_config(adapter: Path, **values: Any) -> None:
    file = adapter / "adapter_config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), **values}))


def test_an_adapter_folder_is_evaluated_on_the_base_it_names(tmp_path: Path, tiny) -> None:
    adapter = make_adapter(tiny.model_dir, tmp_path / "adapter")
    (source,) = resolve_models(str(adapter))
    assert (source.label, source.path) == ("adapter", adapter.resolve())
    assert source.base is not None and source.base.path == tiny.model_dir.resolve()
    assert check_source(source) == "gptj"  # the base's config
    assert source.record()["base"]["path"] == str(tiny.model_dir.resolve())
    args = lm_eval_model_args(source, "float32")
    assert args == {
        "pretrained": str(tiny.model_dir.resolve()),
        "peft": str(adapter.resolve()),
        "tokenizer": str(adapter.resolve()),  # the adapter ships its tokenizer
        "dtype": "float32",
        "trust_remote_code": False,
    }
    bare = make_adapter(tiny.model_dir, tmp_path / "bare", tokenizer=False)
    assert "tokenizer" not in lm_eval_model_args(resolve_models(str(bare))[0], "auto")
    (model,) = resolve_models(str(tiny.model_dir))
    assert model.base is None and "base" not in model.record()
    assert lm_eval_model_args(model, "auto") == {
        "pretrained": str(tiny.model_dir.resolve()),
        "dtype": "auto",
        "trust_remote_code": False,
    }


def test_a_lora_training_dir_evaluates_each_saved_adapter(tmp_path: Path, tiny) -> None:
    run = tmp_path / "run"
    for name in ("epoch_1", "final"):
        make_adapter(tiny.model_dir, run / name)
    sources = resolve_models(str(run))
    assert [s.label for s in sources] == ["epoch_1", "final"]
    assert all(s.base is not None and s.base.path == tiny.model_dir.resolve() for s in sources)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"base_model_name_or_path": None}, "key 'base_model_name_or_path': null"),
        ({"base_model_name_or_path": "./nowhere"}, "./nowhere: no such model folder"),
        ({"base_model_name_or_path": "not a repo"}, "not a repo: no such model folder"),
        ({"revision": 3}, "key 'revision': expected a string"),
    ],
)
def test_an_adapter_naming_no_usable_base_is_refused(
    config: dict[str, Any], fragment: str, tmp_path: Path, tiny
) -> None:
    adapter = make_adapter(tiny.model_dir, tmp_path / "adapter")
    rewrite_config(adapter, **config)
    with pytest.raises(ConfigError, match=r"adapter_config\.json") as raised:
        resolve_models(str(adapter))
    assert fragment in raised.value.message


def test_an_adapter_whose_base_is_an_adapter_or_without_weights_is_refused(tmp_path: Path, tiny) -> None:
    first = make_adapter(tiny.model_dir, tmp_path / "first")
    second = make_adapter(tiny.model_dir, tmp_path / "second", base_name=str(first))
    with pytest.raises(ConfigError, match="is an adapter itself"):
        resolve_models(str(second))
    (source,) = resolve_models(str(first))
    (first / "adapter_model.safetensors").unlink()
    with pytest.raises(ConfigError, match="a LoRA adapter without weights"):
        check_source(source)


@pytest.mark.slow
def test_a_hub_adapter_repo_evaluates_on_its_hub_base_as_its_merged_model(
    tmp_path: Path, tiny, kit_cli, eval_fixtures: Path
) -> None:
    """An adapter repo (no config.json) whose config names a hub base at a tag: both fetched by revision
    through the kit's fetch (a local hub stand-in), evaluated as `peft=`, with the numbers of the merged
    model."""
    from fetch.standin import HubStandIn

    base_files = {p.name: p.read_bytes() for p in tiny.model_dir.iterdir() if p.is_file()}
    adapter = make_adapter(tiny.model_dir, tmp_path / "adapter", base_name="nomic-ai/gpt4all-j")
    rewrite_config(adapter, revision="v1.0")
    merged = merged_copy(adapter, tiny.model_dir, tmp_path / "merged")
    hub = HubStandIn().start()
    try:
        base_sha = hub.repo("nomic-ai/gpt4all-j").commit(base_files, "v1.0")
        adapter_files = {p.name: p.read_bytes() for p in adapter.iterdir() if p.is_file()}
        adapter_sha = hub.repo("someone/gpt4all-j-lora").commit(adapter_files, "main")
        # The tasks' data are local fixtures: only the kit's own fetch talks to the hub.
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1"}
        common = (
            "--tasks", "piqa,arc_easy,boolq", "--limit", "3", "--batch-size", "4", "--device", "cpu",
            "--dtype", "float32", "--fixtures", eval_fixtures, "--output", tmp_path / "eval",
        )  # fmt: skip
        done = kit_cli(
            "eval", "--model", "someone/gpt4all-j-lora", "--label", "hub", *common, env=env, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        hub.stop()
    local = kit_cli("eval", "--model", merged, *common, env=kit_cli.OFFLINE, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "hub" / "summary.json").read_text())
    assert (summary["model"], summary["sha"]) == ("someone/gpt4all-j-lora", adapter_sha)
    base = summary["base_model"]
    assert (base["repo_id"], base["revision"], base["sha"]) == ("nomic-ai/gpt4all-j", "v1.0", base_sha)
    merged_summary = json.loads((tmp_path / "eval" / "merged" / "summary.json").read_text())
    assert summary["tasks"] == merged_summary["tasks"]
    results = json.loads((tmp_path / "eval" / "hub" / "results.json").read_text())
    assert Path(results["config"]["model_args"]["peft"]).name == adapter_sha
    assert (Path(results["config"]["model_args"]["peft"]) / "adapter_model.safetensors").is_file()
