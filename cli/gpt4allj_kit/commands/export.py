"""`gpt4allj-kit export`: a saved training state (`step_N/`) as a plain Hugging Face model folder."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from gpt4allj_kit.commands.options import JsonOption, console, err_console


def export_cmd(
    step_dir: Annotated[
        Path, typer.Argument(metavar="STEP_DIR", help="A saved training state: RUN_DIR/step_N.")
    ],
    output: Annotated[
        Path, typer.Option("--output", help="The model folder to write (new, or an empty folder).")
    ],
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype",
            help="bf16 or fp32 (DeepSpeed: fp32 = the fp32 master weights). "
            "Default: the dtype the training held the model in.",
        ),
    ] = None,
    merge: Annotated[
        bool, typer.Option("--merge", help="LoRA runs: write the base model with the adapter merged in.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Export RUN_DIR/step_N (DDP, DeepSpeed ZeRO-2 or LoRA) as a Hugging Face model folder.

    Writes safetensors shards, config.json, the tokenizer and manifest.json; a LoRA run's export is its
    adapter folder (adapter_config.json, adapter_model.safetensors) unless --merge.
    """
    from transformers.utils.logging import disable_progress_bar

    from gpt4allj_kit.train.export import KIND_NAMES, export_state

    disable_progress_bar()  # transformers' per-shard bar; the status line below says what runs
    with err_console.status(f"exporting {step_dir}"):
        result = export_state(
            step_dir, output, dtype=dtype, merge=merge, command=["gpt4allj-kit", *sys.argv[1:]]
        )
    if json_out:
        console.print_json(data=asdict(result), default=str)
        return
    what = {"full": "model", "lora-adapter": "LoRA adapter", "lora-merged": "merged LoRA model"}[result.form]
    console.print(
        f"exported {result.source} ({result.step} optimizer steps, {KIND_NAMES[result.kind]}) as a "
        f"{result.dtype} {what} -> {result.output}/",
        highlight=False,
    )
    console.print(f"weights: {result.origin}", highlight=False)
    console.print(f"files: {', '.join(result.files)}, manifest.json", highlight=False)
