"""Saved training states in the layouts the kit's training writes, made without training (for fast tests).

A run dir holds `train_config.yaml` (the resolved config) and `step_N/` states: `trainer_state.json` plus,
for DDP, accelerate's `model.safetensors`; for DeepSpeed ZeRO-2, `pytorch_model/mp_rank_00_model_states.pt`
(the module's weights, the data-parallel world size) and one `*_optim_states.pt` per rank. The slow tests
read the real ones that 2-process training runs write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpt4allj_kit.config import load_train_config, train_config_yaml
from gpt4allj_kit.train.launch import CONFIG_FILE


def write_run(run_dir: Path, model: str, tokenizer: str, **sets: Any) -> Path:
    """A run dir with its resolved config (model and tokenizer by name: a folder or a hub repo id)."""
    values = {
        "model_name": model,
        "tokenizer_name": tokenizer,
        "dataset_path": "unused.jsonl",
        "output_dir": str(run_dir),
        **sets,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(train_config_yaml(load_train_config(None, values)))
    return run_dir


def _state_dir(run_dir: Path, name: str, step: int) -> Path:
    step_dir = run_dir / name
    step_dir.mkdir(parents=True)
    trainer_state = {"step": step, "epoch": 0, "batches_done": step, "tokens": 0, "nonpad_tokens": 0}
    (step_dir / "trainer_state.json").write_text(json.dumps(trainer_state))
    return step_dir


def ddp_state(run_dir: Path, tensors: dict[str, Any], name: str = "step_3", step: int = 4) -> Path:
    from safetensors.torch import save_file

    step_dir = _state_dir(run_dir, name, step)
    save_file(tensors, step_dir / "model.safetensors", metadata={"format": "pt"})
    return step_dir


def deepspeed_state(
    run_dir: Path, module: dict[str, Any], world: int = 2, name: str = "step_3", step: int = 4
) -> Path:
    """A ZeRO-2 layout whose optimizer partitions hold nothing: enough for the module-weights (bf16) path."""
    import torch

    step_dir = _state_dir(run_dir, name, step)
    tag = step_dir / "pytorch_model"
    tag.mkdir()
    torch.save({"module": module, "dp_world_size": world}, tag / "mp_rank_00_model_states.pt")
    for rank in range(world):
        torch.save({}, tag / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")
    (step_dir / "latest").write_text("pytorch_model")
    return step_dir


def model_tensors(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def lora_tensors(model_dir: Path, seed: int = 0) -> dict[str, Any]:
    """A LoRA run's full state dict (base and adapter) with a trained-looking adapter (B is 0 at start)."""
    import torch
    from gpt4allj_kit.train.loop import lora_config
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora_config())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
