"""`gpt4allj-kit fetch`: models and data by revision, verified and locked."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gpt4allj_kit import paths
from gpt4allj_kit.commands.options import JsonOption, RevisionOption, console, err_console
from gpt4allj_kit.recipe import DEFAULT_REVISION


def fetch_cmd(
    revision: RevisionOption = None,
    what: Annotated[str, typer.Option("--what", help="Comma-separated: data, model, base, tasks.")] = (
        "data,model,base"
    ),
    base_revision: Annotated[str, typer.Option("--base-revision", help="Base model revision.")] = "main",
    tasks_revision: Annotated[str, typer.Option("--tasks-revision", help="Task datasets revision.")] = "main",
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Hub cache (default: HF_HUB_CACHE, else HF_HOME/hub).")
    ] = None,
    lock: Annotated[Path, typer.Option("--lock", help="Lock file to read and update.")] = Path(
        paths.LOCK_NAME
    ),
    locked: Annotated[
        bool, typer.Option("--locked", help="Refuse if a revision moved or a file differs from the lock.")
    ] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Re-hash the cache, fetch bad files.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Cache only (as HF_HUB_OFFLINE=1).")] = False,
    json_out: JsonOption = False,
) -> None:
    """Fetch datasets and models by revision: tag -> commit sha, verified, recorded in the lock."""
    if offline:
        # huggingface_hub reads this when imported: set it first so nothing below can reach the network.
        os.environ["HF_HUB_OFFLINE"] = "1"
    from gpt4allj_kit.fetch.stage import FetchRequest, fetch_assets

    request = FetchRequest(
        what=tuple(w.strip() for w in what.split(",") if w.strip()),
        revision=revision or DEFAULT_REVISION,
        base_revision=base_revision,
        tasks_revision=tasks_revision,
        lock=lock,
        locked=locked,
        verify=verify,
        offline=offline or None,
        cache_dir=cache_dir,
        command=["gpt4allj-kit", *sys.argv[1:]],
    )
    if json_out or not err_console.is_terminal:
        result = fetch_assets(request)
    else:
        progress, on_file = _fetch_progress()
        with progress:
            result = fetch_assets(request, progress=on_file)
    if json_out:
        console.print_json(data=result.as_json())
        return
    for item in result.assets:
        snap = item.snapshot
        size = sum(f.size for f in snap.files) / 2**20
        console.print(
            f"{item.what}: {snap.repo_id}@{snap.revision} -> {snap.sha} "
            f"({len(snap.files)} files, {size:.1f} MiB) {snap.path}",
            highlight=False,
            soft_wrap=True,
        )
        for bad in snap.repaired:
            console.print(f"  repaired {bad}", highlight=False, soft_wrap=True)
        if item.previous_sha and item.previous_sha != snap.sha:
            console.print(f"  revision moved: lock had {item.previous_sha}, now {snap.sha}", highlight=False)
    console.print(f"lock: {result.lock}", highlight=False, soft_wrap=True)


def _fetch_progress() -> tuple[Any, Any]:
    """Rich progress bars (bytes, rate, ETA), one per file, on stderr, and the callback feeding them."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    progress = Progress(*columns, TimeRemainingColumn(), console=err_console)
    tasks: dict[tuple[str, str], Any] = {}

    def on_file(event: Any) -> None:
        key = (event.repo_id, event.path)
        if key not in tasks:
            label = f"{event.repo_id.split('/')[-1]}/{event.path}"
            tasks[key] = progress.add_task(label, total=event.total, completed=event.resumed_from)
        progress.update(tasks[key], completed=event.done, total=event.total)

    return progress, on_file
