"""Upstream's training loop (nomic-ai/gpt4all train.py at a4e8616c), transcribed as the reference the kit's
loop is compared with. Run it like train.py: `accelerate launch ... upstream_train.py --config FILE`.

Kept from upstream, line for line in meaning: the order of set_seed, data, model, prepare; per epoch
`for step, batch in enumerate(train_dataloader)`; the loss gathered for logging before backward, divided
by the accumulation steps; the optimizer step at `(step + 1) % accumulation == 0 or step == len - 1`;
`if step > 0 and step % save_every == 0: save_state(f"{output_dir}/step_{step + epoch * len}")`;
`if step > 0 and (step % eval_every == 0 or step == len - 1): validate` (mean of the gathered validation
losses, as its MeanMetric); the epoch's `save_pretrained(f"{output_dir}/epoch_{epoch}")`.

What upstream got from DeepSpeed (the documented launch) is done here without it, by the same parts:
AdamW with the JSON's betas/eps and weight decay 0 (torch's AdamW: the same update the kit runs on CPUs),
DeepSpeed's own `WarmupLR` stepped once per optimizer step (as the engine steps it), gradient clipping 1.0
(the JSON's `gradient_clipping`). The data are the kit's (`gpt4allj_kit.data`, tested row for row against
upstream's data.py elsewhere), stored unpadded and padded to max_length by the kit's faithful collator
(tested equal to `default_data_collator` on upstream's padded rows). Only the records are written (main
process, `upstream.jsonl`): which batch validated with which loss, which `step_N` would be saved, every
batch's loss and learning rate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from deepspeed.runtime.lr_schedules import WarmupLR
from gpt4allj_kit import batching, data
from gpt4allj_kit.config import load_train_config
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer


def evaluate(accelerator: Accelerator, model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    values = []
    with torch.no_grad():
        for batch in loader:
            loss = model(**batch).loss
            values.append(accelerator.gather_for_metrics({"loss": loss.detach()})["loss"].reshape(-1))
    model.train()
    return float(torch.cat(values).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    config = load_train_config(parser.parse_args().config)
    accumulation = config.gradient_accumulation_steps
    accelerator = Accelerator()
    set_seed(config.seed)

    tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with accelerator.main_process_first():
        raw, _ = data.load_raw_dataset(config.dataset_path, revision=config.revision)
        splits = data.split_and_tokenize(raw, tokenizer, config)
    default_data_collator = batching.collator_for("faithful", data.pad_token_id(tokenizer), config.max_length)
    train_dataloader = DataLoader(
        splits.train, collate_fn=default_data_collator, batch_size=config.batch_size
    )
    val_dataloader = DataLoader(
        splits.validation, collate_fn=default_data_collator, batch_size=config.batch_size
    )

    model = AutoModelForCausalLM.from_pretrained(
        config.model_name, use_cache=not config.gradient_checkpointing, dtype="float32"
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=config.weight_decay
    )
    # DeepSpeed's engine steps the scheduler itself, once per optimizer step: not prepared by accelerate.
    scheduler = WarmupLR(
        optimizer,
        warmup_min_lr=config.min_lr,
        warmup_max_lr=config.lr,
        warmup_num_steps=config.warmup_steps,
        warmup_type="linear",
    )
    model, optimizer, train_dataloader, val_dataloader = accelerator.prepare(
        model, optimizer, train_dataloader, val_dataloader
    )

    records: list[dict[str, object]] = []
    output_dir = Path(config.output_dir)
    for epoch in range(config.num_epochs):
        for step, batch in enumerate(train_dataloader):
            model.train()
            loss = model(**batch).loss
            loss_values = accelerator.gather_for_metrics({"loss": loss.detach().float()})
            lr = optimizer.param_groups[0]["lr"]
            loss = loss / accumulation
            accelerator.backward(loss)
            if (step + 1) % accumulation == 0 or step == len(train_dataloader) - 1:
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            curr_step = step + epoch * len(train_dataloader)
            records.append({"batch": curr_step, "loss": float(torch.mean(loss_values["loss"])), "lr": lr})
            if step > 0 and step % config.save_every == 0:
                records.append({"save": f"step_{curr_step}"})
            if step > 0 and (step % config.eval_every == 0 or step == len(train_dataloader) - 1):
                records.append(
                    {"validate": curr_step, "val_loss": evaluate(accelerator, model, val_dataloader)}
                )
        records.append({"save_pretrained": f"epoch_{epoch}"})
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        with (output_dir / "upstream.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main()
