"""`gpt4allj-kit config`: validate a training config and print it resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gpt4allj_kit import paths
from gpt4allj_kit.commands.options import JsonOption, ProfileOption, SetOption, console


def config_cmd(
    config: Annotated[Path | None, typer.Option("--config", help="Training config YAML.")] = None,
    profile: ProfileOption = paths.DEFAULT_PROFILE,
    set_: SetOption = None,
    json_out: JsonOption = False,
) -> None:
    """Validate a training config (with profile and --set overrides) and print it resolved."""
    from gpt4allj_kit.config import load_profile, load_train_config, profile_file

    base = load_profile(profile).train
    resolved = load_train_config(config, set_, base_overrides=base, base_source=str(profile_file(profile)))
    if json_out:
        console.print_json(resolved.model_dump_json())
        return
    from rich.table import Table

    table = Table(title=f"resolved training config ({config or 'configs/train/finetune_gptj.yaml'})")
    table.add_column("key")
    table.add_column("value")
    for key, value in resolved.model_dump().items():
        table.add_row(key, repr(value))
    console.print(table)
