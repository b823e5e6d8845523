"""`export`: a saved training state (`step_N/`) as a plain Hugging Face model folder.

The fast tests export states made in the training's layouts (tests/train/states.py) and refuse bad ones.
The slow ones export what real 2-process training runs saved, and compare with the live model at that step:

- **DeepSpeed ZeRO-2** (the shared `deepspeed_reference` run): its `step_4/` ends epoch 0 and was saved right
  after `epoch_1/`, the weights `save_pretrained` took from the engine at that moment (the loop changes no
  weight in between). bf16 export = those weights, bit for bit; fp32 export = the fp32 master weights:
  each one, rounded to bf16, is the live bf16 weight (DeepSpeed makes the module's weights that way) while
  most carry bits that bf16 lacks.
- **DDP** (the shared `ddp_reference` run): its `step_8/` is mid-epoch, where no weights were saved. The live
  model there is the one `--resume` restores, since a resumed run continues bit-identically (test_runs.py):
  train.py resumed from `step_8/` with max_steps at the state's step takes no step and saves `final/` from
  the restored, prepared model; the export's logits equal that model's.
- **LoRA** (a run of its own, one epoch of 5 batches, saved every 4): `step_4/` coincides with `epoch_1/`,
  the adapter `save_pretrained` wrote from the live peft model. The exported adapter is that adapter (same
  logits); the merged export gives the same logits to float32 rounding, and the same `eval` numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.train.export import export_state
from safetensors.torch import load_file
from states import ddp_state, deepspeed_state, lora_tensors, model_tensors, write_run


def probe_ids(vocab_size: int) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, 24), generator=torch.Generator().manual_seed(5))


def logits_of(model: Any) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(probe_ids(model.config.vocab_size)).logits


def load_model(folder: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


def load_adapter(base: Path, adapter: Path) -> Any:
    from peft import PeftModel

    return PeftModel.from_pretrained(load_model(base), adapter)


def file_states(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_manifest_names_every_file(out: Path) -> dict[str, Any]:
    manifest = json.loads((out / "manifest.json").read_text())
    on_disk = {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in out.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert manifest["files"] == on_disk
    assert manifest["stage"] == "export"
    return manifest


# --- fast: states in the training's layouts ----------------------------------------------------------------


@pytest.fixture
def ddp_run(tmp_path: Path, tiny) -> Path:
    """A DDP run's state: the tiny model's weights as accelerate saves them."""
    run = write_run(tmp_path / "run", str(tiny.model_dir), str(tiny.tokenizer_dir))
    return ddp_state(run, model_tensors(tiny.model_dir))


def test_a_ddp_state_exports_as_a_sharded_hugging_face_folder(ddp_run: Path, tmp_path: Path, tiny) -> None:
    out = tmp_path / "export"
    result = export_state(ddp_run, out, max_shard_size="200KB")
    assert (result.kind, result.form, result.dtype, result.step) == ("ddp", "full", "float32", 4)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((out / s).is_file() for s in shards)
    saved = model_tensors(tiny.model_dir)
    exported = load_model(out).state_dict()
    assert all(torch.equal(exported[k], saved[k]) for k in saved)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.pad_token == tokenizer.eos_token  # as the training set it
    manifest = assert_manifest_names_every_file(out)
    assert set(manifest["files"]) == set(result.files)
    source = manifest["source"]
    assert source["step_dir"] == str(ddp_run.resolve()) and source["kind"] == "DDP"
    assert source["trainer_state"]["step"] == 4
    config_file = ddp_run.parent / "train_config.yaml"
    assert source["train_config"]["sha256"] == hashlib.sha256(config_file.read_bytes()).hexdigest()
    assert source["run_manifest"] is None  # the run never ended: no manifest of its own
    assert (manifest["dtype"], manifest["form"]) == ("float32", "full")
    assert manifest["config"]["model_name"] == str(tiny.model_dir)
    assert manifest["assets"]["model"] == {"source": "local", "path": str(tiny.model_dir.resolve())}
    assert manifest["environment"]["kit_version"]


def test_bf16_export_of_a_ddp_state_is_its_weights_rounded(ddp_run: Path, tmp_path: Path, tiny) -> None:
    result = export_state(ddp_run, tmp_path / "export", dtype="bf16")
    assert result.dtype == "bfloat16" and "cast to bfloat16" in result.origin
    exported = load_file(tmp_path / "export" / "model.safetensors")
    saved = model_tensors(tiny.model_dir)
    assert all(torch.equal(exported[k], saved[k].to(torch.bfloat16)) for k in saved)
    assert json.loads((tmp_path / "export" / "config.json").read_text())["dtype"] == "bfloat16"


def test_a_deepspeed_bf16_state_exports_the_modules_weights(tmp_path: Path, tiny) -> None:
    module = {k: v.to(torch.bfloat16) for k, v in model_tensors(tiny.model_dir).items()}
    run = write_run(tmp_path / "run", str(tiny.model_dir), str(tiny.tokenizer_dir))
    result = export_state(deepspeed_state(run, module), tmp_path / "export")
    assert (result.kind, result.dtype) == ("deepspeed", "bfloat16")
    exported = load_file(tmp_path / "export" / "model.safetensors")
    assert all(torch.equal(exported[k], module[k]) for k in module)


def test_a_lora_state_exports_its_adapter_or_the_merged_model(tmp_path: Path, tiny) -> None:
    state = lora_tensors(tiny.model_dir)
    run = write_run(tmp_path / "run", str(tiny.model_dir), str(tiny.tokenizer_dir), lora=True)
    step = ddp_state(run, state)
    adapter = export_state(step, tmp_path / "adapter")
    assert adapter.form == "lora-adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(adapter.files)
    assert not (tmp_path / "adapter" / "config.json").exists()  # an adapter repo has none (upstream #108)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny.model_dir.resolve()) and config["revision"] is None
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)

    merged = export_state(step, tmp_path / "merged", merge=True)
    assert merged.form == "lora-merged" and "merged in float32" in merged.origin
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    live = logits_of(load_adapter(tiny.model_dir, tmp_path / "adapter"))
    assert torch.allclose(logits_of(load_model(tmp_path / "merged")), live, rtol=0, atol=1e-5)
    assert not torch.allclose(logits_of(load_model(tiny.model_dir)), live, rtol=0, atol=1e-3)  # B is not 0


def _drop_a_weight(step: Path) -> None:
    tensors = load_file(step / "model.safetensors")
    tensors.pop("lm_head.bias")
    (step / "model.safetensors").unlink()
    from safetensors.torch import save_file

    save_file(tensors, step / "model.safetensors")


def _rename(step: Path, old: str, new: str) -> None:
    (step / old).rename(step / new)


# (what is done to a good DDP state, export's keyword arguments, the error, fragments of its message)
BAD_STATES = [
    (
        "torn-weights",
        lambda s: (s / "model.safetensors").write_bytes(b"\x08" * 64),
        {},
        ConfigError,
        ["torn"],
    ),
    ("no-weights", lambda s: (s / "model.safetensors").unlink(), {}, ConfigError, ["unknown kind"]),
    ("no-trainer-state", lambda s: (s / "trainer_state.json").unlink(), {}, ConfigError, ["trainer_state"]),
    ("no-run-config", lambda s: (s.parent / "train_config.yaml").unlink(), {}, ConfigError, ["train_config"]),
    ("weight-missing", _drop_a_weight, {}, ConfigError, ["1 weights missing", "lm_head.bias"]),
    ("merge-full-weights", lambda s: None, {"merge": True}, ConfigError, ["--merge", "full-weight"]),
    ("dtype-fp16", lambda s: None, {"dtype": "fp16"}, ConfigError, ["--dtype 'fp16'"]),
    ("output-not-empty", lambda s: None, {"output": "occupied"}, ConfigError, ["not empty"]),
    ("output-a-file", lambda s: None, {"output": "a-file"}, ConfigError, ["is a file"]),
]


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "fragments"),
    [pytest.param(*row[1:], id=row[0]) for row in BAD_STATES],
)
def test_bad_states_are_refused_and_nothing_changes(
    ddp_run: Path, tmp_path: Path, change: Any, kwargs: dict[str, Any], error: type, fragments: list[str]
) -> None:
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "keep.txt").write_text("kept")
    (tmp_path / "a-file").write_text("kept")
    change(ddp_run)
    before = file_states(tmp_path)
    output = tmp_path / kwargs.pop("output", "export")
    with pytest.raises(error) as raised:
        export_state(ddp_run, output, **kwargs)
    message = raised.value.message
    assert all(f in message for f in fragments), message
    assert "\n" not in message
    assert file_states(tmp_path) == before
    assert not (tmp_path / "export").exists() and not list(tmp_path.glob(".tmp-*"))


def test_an_incomplete_deepspeed_state_is_refused(tmp_path: Path, tiny) -> None:
    module = {k: v.to(torch.bfloat16) for k, v in model_tensors(tiny.model_dir).items()}
    run = write_run(tmp_path / "run", str(tiny.model_dir), str(tiny.tokenizer_dir))
    step = deepspeed_state(run, module)
    partitions = sorted((step / "pytorch_model").glob("*_optim_states.pt"))
    partitions[1].unlink()
    with pytest.raises(ConfigError, match=r"1 optimizer partitions .* for the 2 processes"):
        export_state(step, tmp_path / "a")
    partitions[0].write_bytes(partitions[0].read_bytes()[:100])
    torch.save({}, partitions[1])
    with pytest.raises(ConfigError, match=re.escape(f"{partitions[0]}: not a whole torch file")):
        export_state(step, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- slow: what real training runs saved ------------------------------------------------------------------


def export_cli(kit_cli: Any, step: Path, out: Path, *args: str) -> dict[str, Any]:
    done = kit_cli("export", step, "--output", out, "--json", *args, env=kit_cli.OFFLINE, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def trainer_state(step: Path) -> tuple[int, int, int]:
    saved = json.loads((step / "trainer_state.json").read_text())
    return saved["step"], saved["epoch"], saved["batches_done"]


@pytest.mark.slow
def test_ddp_export_is_the_model_resume_restores(
    ddp_reference, launch_train, reference_sets, kit_cli, tmp_path: Path
) -> None:
    step = ddp_reference.output_dir / "step_8"
    done, _epoch, _batches = trainer_state(step)
    restored = launch_train(
        tmp_path / "restored",
        deepspeed=False,
        sets={**reference_sets["ddp"], "max_steps": done},
        resume=str(step),
    )
    assert restored.returncode == 0, restored.log[-4000:]
    manifest = restored.manifest()
    assert manifest["resumed_from"] == str(step) and manifest["trainer_state"]["step"] == done
    assert not (tmp_path / "restored" / "metrics.jsonl").exists()  # no step taken after the restore

    result = export_cli(kit_cli, step, tmp_path / "export")
    assert (result["kind"], result["form"], result["dtype"], result["step"]) == ("ddp", "full", "float32", 9)
    live = load_model(tmp_path / "restored" / "final")
    assert torch.equal(logits_of(load_model(tmp_path / "export")), logits_of(live))
    exported = assert_manifest_names_every_file(tmp_path / "export")
    assert exported["source"]["step_dir"] == str(step.resolve())
    assert (
        exported["source"]["run_manifest"]["kit_version"]
        == ddp_reference.manifest()["environment"]["kit_version"]
    )

    bf16 = export_cli(kit_cli, step, tmp_path / "export-bf16", "--dtype", "bf16")
    assert bf16["dtype"] == "bfloat16"
    assert torch.equal(logits_of(load_model(tmp_path / "export-bf16")), logits_of(live.to(torch.bfloat16)))


@pytest.mark.slow
def test_deepspeed_bf16_export_is_the_live_engines_weights(
    deepspeed_reference, kit_cli, tmp_path: Path
) -> None:
    out = deepspeed_reference.output_dir
    # step_4 ends epoch 0 (3 optimizer steps): saved right after epoch_1/, with no weight changed between.
    assert trainer_state(out / "step_4") == (3, 1, 0)
    result = export_cli(kit_cli, out / "step_4", tmp_path / "bf16")
    assert (result["kind"], result["dtype"]) == ("deepspeed", "bfloat16")
    assert "module weights" in result["origin"]
    live = load_file(out / "epoch_1" / "model.safetensors")
    exported = load_file(tmp_path / "bf16" / "model.safetensors")
    assert exported.keys() == live.keys() and all(torch.equal(exported[k], live[k]) for k in live)
    assert torch.equal(logits_of(load_model(tmp_path / "bf16")), logits_of(load_model(out / "epoch_1")))
    manifest = assert_manifest_names_every_file(tmp_path / "bf16")
    assert manifest["source"]["kind"] == "DeepSpeed ZeRO-2"
    assert manifest["weights_from"] == result["origin"]


@pytest.mark.slow
def test_deepspeed_fp32_export_is_the_master_weights_consolidated(
    deepspeed_reference, kit_cli, tmp_path: Path
) -> None:
    out = deepspeed_reference.output_dir
    result = export_cli(kit_cli, out / "step_4", tmp_path / "fp32", "--dtype", "fp32")
    assert result["dtype"] == "float32" and "zero_to_fp32" in result["origin"]
    assert "2 ranks" in result["origin"]
    live = load_file(out / "epoch_1" / "model.safetensors")
    master = load_file(tmp_path / "fp32" / "model.safetensors")
    assert master.keys() == live.keys()
    assert all(master[k].dtype == torch.float32 for k in master)
    # Every master weight rounds to the live bf16 weight (a partition out of place could not) ...
    assert all(torch.equal(master[k].to(torch.bfloat16), live[k]) for k in live)
    # ... and most hold bits bf16 cannot: they are the optimizer's fp32 copy, not a cast of the module.
    # (DeepSpeed made that copy from the bf16 module, so weights no step moved, such as the embedding rows
    # of tokens the data never had, are still bf16 values: 15% of the tiny model's here.)
    exact = sum(int((master[k] == master[k].to(torch.bfloat16).float()).sum()) for k in master)
    assert exact / sum(t.numel() for t in master.values()) < 0.5
    model = load_model(tmp_path / "fp32")
    assert torch.equal(logits_of(model.to(torch.bfloat16)), logits_of(load_model(out / "epoch_1")))


@pytest.fixture(scope="module")
def lora_run(launch_train, tmp_path_factory):
    """One epoch of 5 batches per process, states every 4: step_4/ is taken right after epoch_1/."""
    run = launch_train(
        tmp_path_factory.mktemp("lora") / "out",
        deepspeed=False,
        sets={"lora": True, "num_epochs": 1, "save_every": 4},
    )
    assert run.returncode == 0, run.log[-4000:]
    assert trainer_state(run.output_dir / "step_4") == (5, 1, 0)
    return run


@pytest.mark.slow
def test_lora_exports_are_the_live_adapter(lora_run, kit_cli, tiny, tmp_path: Path) -> None:
    step, epoch = lora_run.output_dir / "step_4", lora_run.output_dir / "epoch_1"
    adapter = export_cli(kit_cli, step, tmp_path / "adapter")
    assert (adapter["form"], adapter["dtype"]) == ("lora-adapter", "float32")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny.model_dir.resolve())
    exported = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    saved = load_file(epoch / "adapter_model.safetensors")
    assert exported.keys() == saved.keys() and all(torch.equal(exported[k], saved[k]) for k in saved)
    live = logits_of(load_adapter(tiny.model_dir, epoch))
    assert torch.equal(logits_of(load_adapter(tiny.model_dir, tmp_path / "adapter")), live)

    merged = export_cli(kit_cli, step, tmp_path / "merged", "--merge")
    assert merged["form"] == "lora-merged"
    merged_logits = logits_of(load_model(tmp_path / "merged"))
    assert torch.allclose(merged_logits, live, rtol=0, atol=1e-5)
    assert not torch.allclose(logits_of(load_model(tiny.model_dir)), live, rtol=0, atol=1e-3)  # it trained


@pytest.mark.slow
def test_an_exported_adapter_evaluates_as_its_merged_model(lora_run, kit_cli, tiny, tmp_path: Path) -> None:
    """`eval` takes the adapter folder itself (base from its adapter_config.json, lm-eval's `peft=`)."""
    from gpt4allj_kit.evaluate.fixtures import task_fixtures

    step = lora_run.output_dir / "step_4"
    export_cli(kit_cli, step, tmp_path / "adapter")
    export_cli(kit_cli, step, tmp_path / "merged", "--merge")
    fixtures = task_fixtures(tmp_path / "fixtures", seed=11, n=5)
    summaries = {}
    for name in ("adapter", "merged"):
        done = kit_cli(
            "eval", "--model", tmp_path / name, "--limit", "3", "--batch-size", "4", "--device", "cpu",
            "--dtype", "float32", "--fixtures", fixtures, "--output", tmp_path / "eval",
            env=kit_cli.OFFLINE, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        summaries[name] = json.loads((tmp_path / "eval" / name / "summary.json").read_text())
    assert summaries["adapter"]["tasks"] == summaries["merged"]["tasks"]
    assert summaries["adapter"]["base_model"]["path"] == str(tiny.model_dir.resolve())
    assert "base_model" not in summaries["merged"]
    manifest = json.loads((tmp_path / "eval" / "adapter" / "manifest.json").read_text())
    assert manifest["model"]["path"] == str((tmp_path / "adapter").resolve())
    assert manifest["model"]["base"]["path"] == str(tiny.model_dir.resolve())
    results = json.loads((tmp_path / "eval" / "adapter" / "results.json").read_text())
    assert results["config"]["model_args"]["peft"] == str((tmp_path / "adapter").resolve())
    shutil.rmtree(tmp_path / "eval")
