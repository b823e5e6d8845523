"""`gpt4allj-kit assets`: the tiny offline assets of the smoke profile."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gpt4allj_kit.assets import DEFAULT_ROWS, DEFAULT_SEED
from gpt4allj_kit.commands.options import JsonOption, OutputOption, console


def assets_cmd(
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of every generated file.")] = DEFAULT_SEED,
    rows: Annotated[int, typer.Option("--rows", min=1, help="Rows of the synthetic dataset.")] = DEFAULT_ROWS,
    output: OutputOption = None,
    json_out: JsonOption = False,
) -> None:
    """Make the tiny offline assets (tiny GPT-J, tokenizer, synthetic data) and print paths and sha256.

    They are made under --output, by default the kit cache (GPT4ALLJ_KIT_CACHE).
    """
    from gpt4allj_kit import paths
    from gpt4allj_kit.assets import tiny_assets

    assets = tiny_assets(output or paths.kit_cache_dir(), seed=seed, rows=rows)
    checksums = assets.checksums()
    where = {
        "root": assets.root,
        "model_dir": assets.model_dir,
        "tokenizer_dir": assets.tokenizer_dir,
        "jsonl": assets.jsonl,
        "parquet": assets.parquet,
    }
    if json_out:
        console.print_json(
            data={"seed": seed, "rows": rows, **{k: str(v) for k, v in where.items()}, "sha256": checksums}
        )
        return
    for key, value in where.items():
        console.print(f"{key}: {value}", highlight=False, soft_wrap=True)
    table = Table(title=f"tiny assets, seed {seed}, {rows} rows")
    table.add_column("file")
    table.add_column("sha256")
    for name, digest in checksums.items():
        table.add_row(name, digest)
    console.print(table)
