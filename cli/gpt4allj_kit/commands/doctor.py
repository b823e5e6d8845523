"""`gpt4allj-kit doctor`: what this machine has, and whether each profile can run here."""

from __future__ import annotations

from typing import Any

import typer

from gpt4allj_kit import paths
from gpt4allj_kit.commands.options import JsonOption, ProfileOption, console
from gpt4allj_kit.errors import ExitCode


def doctor_cmd(
    profile: ProfileOption = paths.DEFAULT_PROFILE,
    json_out: JsonOption = False,
) -> None:
    """Check this machine: software, GPUs, DeepSpeed ops, disk, hub, lock drift, and a verdict per profile.

    Verdicts for every profile are shown; --profile (or 'all') decides the exit code: 0 when it can run
    here, 3 when not.
    """
    from gpt4allj_kit import doctor

    diagnosis, deciding = doctor.diagnose(profile)
    if json_out:
        console.print_json(diagnosis.model_dump_json())
    else:
        _render_machine_facts(diagnosis.report, doctor.summary(diagnosis))
        _render_readiness(diagnosis.verdicts)
    if not all(v.can_run for v in diagnosis.verdicts if v.profile in deciding):
        raise typer.Exit(ExitCode.ENVIRONMENT)


def _render_machine_facts(report: Any, facts_: dict[str, Any]) -> None:
    """Tables of `doctor.MachineFacts` (typed Any: the doctor module is imported when the command runs)."""
    from rich.table import Table

    facts = Table(title="gpt4allj-kit doctor", show_header=False)
    facts.add_column("check", style="bold")
    facts.add_column("value")
    for key, value in facts_.items():
        facts.add_row(key, str(value))
    console.print(facts)
    if report.gpus:
        gpus = Table(title="GPUs")
        for column in ("#", "name", "memory (GB)", "capability", "bf16"):
            gpus.add_column(column)
        for gpu in report.gpus:
            gpus.add_row(str(gpu.index), gpu.name, f"{gpu.memory_gb:g}", gpu.capability, str(gpu.bf16))
        console.print(gpus)
    if report.deepspeed.ops:
        ops = Table(title=f"DeepSpeed ops ({report.deepspeed.accelerator}; not installed ones are JIT-built)")
        for column in ("op", "installed", "compatible"):
            ops.add_column(column)
        for name, op in report.deepspeed.ops.items():
            ops.add_row(name, str(op.installed), "[green]yes[/]" if op.compatible else "[yellow]no[/]")
        console.print(ops)
    disks = Table(title="free disk")
    for column in ("where", "path", "free (GB)", "total (GB)"):
        disks.add_column(column)
    for disk in report.disk:
        free = "?" if disk.free_gb is None else f"{disk.free_gb:g}"
        total = "?" if disk.total_gb is None else f"{disk.total_gb:g}"
        disks.add_row(disk.label, disk.path, free, total)
    console.print(disks)
    if report.lock.drift:
        drift = Table(title=f"installed packages that differ from {report.lock.path}")
        for column in ("package", "locked", "installed"):
            drift.add_column(column)
        for item in report.lock.drift:
            drift.add_row(item.name, item.locked, item.installed or "[red]missing[/]")
        console.print(drift)
    else:
        console.print(f"installed packages match the lock ({report.lock.locked} pinned)")


def _render_readiness(verdicts: list[Any]) -> None:
    """One `doctor.Readiness` per profile: can it run, what blocks it (x), what differs (!)."""
    for result in verdicts:
        mark = "[bold green]can run[/]" if result.can_run else "[bold red]cannot run[/]"
        console.print(f"\nprofile [bold]{result.profile}[/]: {mark}")
        for reason in result.reasons:
            console.print(f"  [red]x[/] {reason}", highlight=False)
        for note in result.notes:
            console.print(f"  [yellow]![/] {note}", highlight=False)
