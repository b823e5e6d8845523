"""`gpt4allj-kit`: a thin Typer layer over the stage modules; it parses, calls, and renders with rich.

Exit codes, shared by every command: 0 ok, 1 results differ (only when asked to fail on it), 2 usage or
config error, 3 this environment cannot run it, 4 internal error (a bug), 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gpt4allj_kit import __version__, paths
from gpt4allj_kit.errors import ExitCode, KitError

app = typer.Typer(
    name="gpt4allj-kit",
    help="Reproduce GPT4All-J training and evaluation, pinned and proven.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

INTERNAL_ERROR = 4
DEBUG_ENV = "GPT4ALLJ_KIT_DEBUG"

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set key=value (repeatable, validated)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _version(value: bool) -> None:
    if value:
        console.print(f"gpt4allj-kit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Reproduce GPT4All-J training and evaluation, pinned and proven."""


# --- config -----------------------------------------------------------------------------------------


@app.command("config")
def config_cmd(
    config: Annotated[Path | None, typer.Option("--config", help="Training config YAML.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Apply a profile's overrides.")] = None,
    set_: SetOption = None,
    json_out: JsonOption = False,
) -> None:
    """Validate a training config (with profile and --set overrides) and print it resolved."""
    from gpt4allj_kit.config import load_profile, load_train_config

    base = load_profile(profile).train if profile else None
    resolved = load_train_config(config, set_, base_overrides=base)
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


# --- doctor -----------------------------------------------------------------------------------------


@app.command("doctor")
def doctor_cmd(
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            help="Profile whose verdict decides the exit code: a name (full, smoke), a profile YAML, "
            "or 'all'. Verdicts for every profile are shown either way.",
        ),
    ] = "smoke",
    json_out: JsonOption = False,
) -> None:
    """Check this machine: software, GPUs, DeepSpeed ops, disk, hub, lock drift, and a verdict per profile.

    Exit 0 when the asked profile(s) can run here, 3 when not.
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


# --- assets -----------------------------------------------------------------------------------------


@app.command("assets")
def assets_cmd(
    seed: Annotated[int, typer.Option("--seed", help="Seed of every generated file.")] = 1234,
    rows: Annotated[int, typer.Option("--rows", min=1, help="Rows of the synthetic dataset.")] = 3000,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to make them under (default: the kit cache, GPT4ALLJ_KIT_CACHE)."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Make the tiny offline assets (tiny GPT-J, tokenizer, synthetic data) and print paths and sha256."""
    from gpt4allj_kit import paths
    from gpt4allj_kit.assets import tiny_assets

    assets = tiny_assets(out or paths.kit_cache_dir(), seed=seed, rows=rows)
    checksums = assets.checksums()
    where = {
        "root": assets.root,
        "model_dir": assets.model_dir,
        "tokenizer_dir": assets.tokenizer_dir,
        "jsonl": assets.jsonl,
        "parquet": assets.parquet,
    }
    if json_out:
        import json

        payload = {"seed": seed, "rows": rows, **{k: str(v) for k, v in where.items()}, "sha256": checksums}
        console.print_json(json.dumps(payload))
        return
    from rich.table import Table

    for key, value in where.items():
        console.print(f"{key}: {value}", highlight=False, soft_wrap=True)
    table = Table(title=f"tiny assets, seed {seed}, {rows} rows")
    table.add_column("file")
    table.add_column("sha256")
    for name, digest in checksums.items():
        table.add_row(name, digest)
    console.print(table)


# --- fetch ------------------------------------------------------------------------------------------


@app.command("fetch")
def fetch_cmd(
    revision: Annotated[
        str, typer.Option("--revision", help="v1.0, v1.1-breezy, v1.2-jazzy, v1.3-groovy, main or a sha.")
    ] = "v1.2-jazzy",
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
    from gpt4allj_kit import hub
    from gpt4allj_kit.manifest import now_iso, write_manifest

    requests = hub.asset_requests(
        [w.strip() for w in what.split(",") if w.strip()],
        revision=revision,
        base_revision=base_revision,
        tasks_revision=tasks_revision,
    )
    run = {"lock_path": lock, "locked": locked, "verify": verify or offline, "cache_dir": cache_dir}
    started = now_iso()
    if json_out or not err_console.is_terminal:
        fetched = hub.fetch(requests, offline=offline or None, progress=None, **run)
    else:
        progress, on_file = _fetch_progress()
        with progress:
            fetched = hub.fetch(requests, offline=offline or None, progress=on_file, **run)
    write_manifest(
        lock.with_name(f"{lock.stem}.manifest.json"),
        stage="fetch",
        command=["gpt4allj-kit", *sys.argv[1:]],
        config={"what": what, "revision": revision, "locked": locked, "verify": verify, "offline": offline},
        started=started,
        lock=str(lock),
        assets=[_fetched_json(f) for f in fetched],
    )
    if json_out:
        console.print_json(data={"lock": str(lock), "assets": [_fetched_json(f) for f in fetched]})
        return
    for item in fetched:
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
    console.print(f"lock: {lock}", highlight=False, soft_wrap=True)


def _fetched_json(item: Any) -> dict[str, Any]:
    snap = item.snapshot
    return {
        "what": item.what,
        "repo_id": snap.repo_id,
        "repo_type": snap.repo_type,
        "revision": snap.revision,
        "sha": snap.sha,
        "path": str(snap.path),
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in snap.files],
        "repaired": list(snap.repaired),
        "previous_sha": item.previous_sha,
    }


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


# --- train ------------------------------------------------------------------------------------------


@app.command("train")
def train_cmd(
    revision: Annotated[
        str | None, typer.Option("--revision", help="Dataset revision (v1.0, v1.2-jazzy, ...).")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Training config YAML.")] = None,
    profile: Annotated[
        str, typer.Option("--profile", help="full (published recipe) or smoke (tiny, CPU).")
    ] = "full",
    num_processes: Annotated[
        int | None, typer.Option("--num-processes", help="Processes (GPUs); default: detected GPUs.")
    ] = None,
    keep_global_batch: Annotated[
        bool,
        typer.Option("--keep-global-batch", help="Raise gradient accumulation to keep the global batch 256."),
    ] = False,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Resume: 'latest' or a step_N directory.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the command and hyperparameters only.")
    ] = False,
    lora: Annotated[
        bool, typer.Option("--lora", help="Train a LoRA adapter (peft) instead of all weights.")
    ] = False,
    padding: Annotated[
        str | None, typer.Option("--padding", help="faithful (pad to max_length, default) or dynamic.")
    ] = None,
    set_: SetOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Launch even when the preflight says it cannot run.")
    ] = False,
    launcher: Annotated[
        str,
        typer.Option("--launcher", help="local (run here), slurm (sbatch script), accelerate (per host)."),
    ] = "local",
    nodes: Annotated[int, typer.Option("--nodes", help="Machines (slurm / accelerate launchers).")] = 1,
    gpus_per_node: Annotated[
        int | None, typer.Option("--gpus-per-node", help="Processes per machine.")
    ] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="Slurm partition.")] = None,
    container_image: Annotated[
        str | None, typer.Option("--container-image", help="Run inside this image (Slurm pyxis).")
    ] = None,
    hostfile: Annotated[
        Path | None, typer.Option("--hostfile", help="Hosts, one per line (first is main).")
    ] = None,
    main_process_ip: Annotated[
        str | None, typer.Option("--main-process-ip", help="Address of machine rank 0.")
    ] = None,
    submit: Annotated[bool, typer.Option("--submit", help="Submit the written sbatch script.")] = False,
) -> None:
    """Build the documented `accelerate launch ... train.py` command, check this machine, and run it."""
    from rich.table import Table

    from gpt4allj_kit.errors import ConfigError
    from gpt4allj_kit.train import launch as train_launch

    if launcher not in ("local", "slurm", "accelerate"):
        raise ConfigError(f"--launcher {launcher!r}: expected local, slurm or accelerate")
    if padding is not None and padding not in ("faithful", "dynamic"):
        raise ConfigError(f"--padding {padding!r}: expected faithful or dynamic")
    request = train_launch.TrainRequest(
        revision=revision,
        config=config,
        profile=profile,
        num_processes=gpus_per_node if launcher != "local" and gpus_per_node else num_processes,
        keep_global_batch=keep_global_batch,
        resume=resume,
        lora=lora,
        padding=padding,
        sets=list(set_ or []),
    )
    plan = train_launch.plan(request)
    if launcher != "local":
        _train_on_cluster(
            plan, launcher, nodes, partition, container_image, hostfile, main_process_ip, submit
        )
        return
    for note in plan.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    console.print(plan.shell(), highlight=False, soft_wrap=True, markup=False)
    if dry_run:
        import yaml

        header = f"{plan.config_file} (written at launch) = {plan.config_path} with:"
        console.print(header, highlight=False, soft_wrap=True)
        changes = yaml.safe_dump(plan.changes, sort_keys=False, width=1_000_000) if plan.changes else "{}\n"
        for line in changes.splitlines():
            console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
        table = Table(title=f"effective hyperparameters (profile {plan.profile.name})")
        table.add_column("setting")
        table.add_column("value")
        for key, value in plan.hyper.rows():
            table.add_row(key, value)
        console.print(table)
        return
    readiness = train_launch.preflight(plan, force=force)
    for reason in readiness.reasons:
        err_console.print(f"[yellow]preflight (forced):[/] {reason}", highlight=False, soft_wrap=True)
    result = train_launch.run(plan)
    if code := result.returncode:
        err_console.print(f"[bold red]error:[/] training exited with code {code}", highlight=False)
        raise typer.Exit(code)
    console.print(f"training done: {result.output_dir} (last step {result.last_step})")


def _train_on_cluster(
    plan: Any,
    launcher: str,
    nodes: int,
    partition: str | None,
    container_image: str | None,
    hostfile: Path | None,
    main_process_ip: str | None,
    submit: bool,
) -> None:
    """Writes (and with --submit, submits) the multi-node launch; the cluster module builds it."""
    from gpt4allj_kit import cluster

    request = cluster.ClusterRequest(
        launcher=launcher,  # type: ignore[arg-type]
        nodes=nodes,
        gpus_per_node=plan.hyper.num_processes,
        partition=partition,
        container_image=container_image,
        hostfile=hostfile,
        main_process_ip=main_process_ip,
        main_process_port=29500,
        job_name=f"gpt4allj-{plan.profile.name}",
        output_dir=plan.output_dir,
        cpu=plan.launch.cpu,
    )
    written = cluster.write_launch(request, plan)
    console.print(f"training config: {written.config_file}", highlight=False, soft_wrap=True)
    if launcher == "slurm":
        console.print(f"sbatch script: {written.script}")
        if submit:
            console.print(f"submitted Slurm job {cluster.submit(written.script)}")
        return
    for argv in written.host_commands:
        console.print(cluster.shell_command(argv), highlight=False, soft_wrap=True, markup=False)
    console.print(f"per-host script: {written.script}")


# --- eval -------------------------------------------------------------------------------------------


class EvalSuite(StrEnum):
    common_sense = "common-sense"
    self_instruct = "self-instruct"


@app.command("eval")
def eval_cmd(
    model: Annotated[
        str, typer.Option("--model", help="Model folder, training dir (each epoch_N, final) or hub repo.")
    ],
    revision: Annotated[str | None, typer.Option("--revision", help="Hub revision (tag/sha).")] = None,
    tasks: Annotated[str, typer.Option("--tasks", help="common-sense or t1,t2.")] = "common-sense",
    batch_size: Annotated[str, typer.Option("--batch-size", help="auto or a positive integer.")] = "auto",
    limit: Annotated[int | None, typer.Option("--limit", help="Documents per task (testing only).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto, float32, bfloat16, float16.")] = "auto",
    output: Annotated[Path, typer.Option("--output", help="Writes OUTPUT/<label>/.")] = Path("outputs/eval"),
    fixtures: Annotated[
        Path | None, typer.Option("--fixtures", help="lm-eval include_path of local task fixtures (offline).")
    ] = None,
    lock: Annotated[Path | None, typer.Option("--lock", help="Fetch lock pinning task datasets.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="Output folder name for one model.")] = None,
    suite: Annotated[EvalSuite, typer.Option("--suite", help="Which evaluation.")] = EvalSuite.common_sense,
    data: Annotated[
        Path | None, typer.Option("--data", help="self-instruct: user_oriented_instructions.jsonl")
    ] = None,
    conditioned: Annotated[
        bool,
        typer.Option("--conditioned", help="self-instruct: score the response with the prompt in context."),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Evaluate zero-shot with lm-evaluation-harness, or Self-Instruct ground-truth perplexity."""
    from gpt4allj_kit.errors import ConfigError
    from gpt4allj_kit.evaluate import harness

    sources = harness.resolve_models(model, revision=revision, label=label)
    dtype = harness.check_dtype(dtype)
    if suite is EvalSuite.self_instruct:
        if data is None:
            raise ConfigError("--suite self-instruct needs --data user_oriented_instructions.jsonl")
        mode = "conditioned" if conditioned else "faithful"
        _eval_self_instruct(sources, data, output, mode, device, dtype, json_out)
        return
    options = harness.EvalOptions(
        tasks=harness.parse_tasks(tasks),
        batch_size=harness.parse_batch_size(batch_size),
        limit=harness.check_limit(limit),
        device=device,
        dtype=dtype,
        include_path=fixtures.resolve() if fixtures else None,
        lock=lock,
        command=["gpt4allj-kit", *sys.argv[1:]],
    )
    # Bound to the terminal now: lm-eval's own stderr output is sent to a log file while it runs.
    status_console = Console(file=sys.stderr)
    with status_console.status("starting") as status:
        outcomes = harness.evaluate(sources, options, output, progress=lambda msg: status.update(msg))
    if json_out:
        console.print_json(data=[{"out_dir": str(o.out_dir), **o.summary} for o in outcomes])
        return
    _print_eval_tables(outcomes)


def _print_eval_tables(outcomes: list[Any]) -> None:
    from rich.table import Table

    for outcome in outcomes:
        table = Table(title=f"{outcome.label}: zero-shot (fractions; ± stderr)")
        for column in ("task", "acc", "acc_norm", "n"):
            table.add_column(column)
        for task, metrics in outcome.summary["tasks"].items():
            cells = [_metric_cell(metrics, name) for name in ("acc", "acc_norm")]
            n = (outcome.summary["n_samples"].get(task) or {}).get("effective", "")
            table.add_row(task, *cells, str(n))
        console.print(table)
        console.print(
            f"results: {outcome.out_dir}/ (results.json, summary.json, manifest.json)", highlight=False
        )


def _metric_cell(metrics: dict[str, Any], name: str) -> str:
    value = metrics.get(name)
    if value is None:
        return "-"
    stderr = metrics.get(f"{name}_stderr")
    return f"{value:.4f} ± {stderr:.4f}" if isinstance(stderr, int | float) else f"{value:.4f}"


def _eval_self_instruct(
    sources: list[Any], data: Path, output: Path, mode: str, device: str, dtype: str, json_out: bool
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from gpt4allj_kit.evaluate import harness, selfinstruct

    resolved_device = harness.resolve_device(device)
    selfinstruct.read_examples(data)  # a bad file is one line before any progress bar is drawn
    summaries = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=sys.stderr)) as progress:
        for source in sources:
            bar = progress.add_task(f"{source.label} ({mode})", total=None)
            summaries.append(
                selfinstruct.evaluate_self_instruct(
                    source,
                    data,
                    output,
                    mode=mode,  # type: ignore[arg-type]
                    device=resolved_device,
                    dtype=dtype,
                    command=["gpt4allj-kit", *sys.argv[1:]],
                    progress=lambda done, total, bar=bar: progress.update(bar, completed=done, total=total),
                )
            )
    if json_out:
        console.print_json(data=summaries)
        return
    for s in summaries:
        mean = "-" if s["mean"] is None else f"{s['mean']:.3f}"
        median = "-" if s["median"] is None else f"{s['median']:.3f}"
        console.print(
            f"{s['label']}: self-instruct ground-truth perplexity, {s['mode']} mode, {s['count']} examples: "
            f"median {median}, mean {mean}, {s['above_100']} above 100, {s['nan_count']} NaN "
            f"-> {s['out_dir']}",
            highlight=False,
        )


# --- compare / report -------------------------------------------------------------------------------


class CompareFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"
    html = "html"


AgainstOption = Annotated[
    str | None,
    typer.Option(
        "--against",
        help="Published row to compare with: its name, an alias or a revision (e.g. v1.2-jazzy, base). "
        "Default: the row of the evaluated model (model+revision), else (report) the run's data revision, "
        "else v1.2-jazzy.",
    ),
]


@app.command("compare")
def compare_cmd(
    results: Annotated[
        Path,
        typer.Argument(help="lm-eval results JSON (0.4 or 0.3 layout), the kit's summary.json, or a dir."),
    ],
    against: AgainstOption = None,
    fmt: Annotated[
        CompareFormat, typer.Option("--format", help="table (terminal), markdown, json or html.")
    ] = CompareFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the comparison to this file.")
    ] = None,
    fail_on_diff: Annotated[
        bool, typer.Option("--fail-on-diff", help="Exit 1 when a task cell differs.")
    ] = False,
    note: Annotated[str | None, typer.Option("--note", help="A note shown with the comparison.")] = None,
    not_comparable: Annotated[
        bool, typer.Option("--not-comparable", help="Mark the model as not comparable (a tiny/smoke model).")
    ] = False,
) -> None:
    """Compare our zero-shot numbers with a row of the published table, cell by cell, by our stderr."""
    from gpt4allj_kit import render
    from gpt4allj_kit.compare import compare_path
    from gpt4allj_kit.files import atomic_write_text
    from gpt4allj_kit.manifest import now_iso, write_manifest

    started = now_iso()
    comparison = compare_path(results, against, note=note, comparable=False if not_comparable else None)
    renderers = {
        "table": lambda c: render.plain_text(render.rich_comparison(c)),
        "markdown": render.markdown,
        "json": render.json_text,
        "html": render.html_document,
    }
    if output is None:
        if fmt is CompareFormat.table:
            console.print(render.rich_comparison(comparison))
        else:
            sys.stdout.write(renderers[fmt.value](comparison))
    else:
        atomic_write_text(output, renderers[fmt.value](comparison))
        manifest = output.with_name(f"{output.name}.manifest.json")
        write_manifest(
            manifest,
            stage="compare",
            command=sys.argv,
            started=started,
            input=str(results),
            against=comparison.against,
            format=fmt.value,
            output=str(output),
            reproduced=comparison.reproduced,
            differing=comparison.differing,
        )
        console.print(
            f"{comparison.ours_name} vs {comparison.against}: "
            + (
                "all 7 cells reproduced"
                if comparison.reproduced
                else f"differs: {', '.join(comparison.differing)}"
            )
            + f"\nwrote {output} (manifest {manifest.name})",
            highlight=False,
        )
    if fail_on_diff and not comparison.reproduced:
        raise typer.Exit(int(ExitCode.RESULTS_DIFFER))


@app.command("report")
def report_cmd(
    run_dir: Annotated[
        Path | None, typer.Argument(help="A reproduce run dir, a training output dir or an eval dir.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Report folder (default RUN_DIR/report).")
    ] = None,
    against: AgainstOption = None,
    published: Annotated[
        bool, typer.Option("--published", help="Print the published table (all rows, computed Avg) and exit.")
    ] = False,
) -> None:
    """Write a self-contained HTML report, a Markdown report and PNG charts about a run."""
    from gpt4allj_kit import render
    from gpt4allj_kit.errors import ConfigError
    from gpt4allj_kit.published import load_published_table

    if published:
        table = load_published_table()
        console.print(render.rich_published(render.published_rows(table), table.columns, table.title))
        console.print("Sources: " + "; ".join(table.sources), style="dim", highlight=False)
        return
    if run_dir is None:
        raise ConfigError("report needs RUN_DIR (or --published to print the published table)")
    from gpt4allj_kit.report import build_report

    with console.status("building the report (charts, manifests)"):
        result = build_report(run_dir, output, against=against, command=sys.argv)
    console.print(f"{result.kind}: {run_dir}", highlight=False)
    for c in result.comparisons:
        verdict = "all 7 cells reproduced" if c.reproduced else f"differs: {', '.join(c.differing)}"
        console.print(f"  {c.ours_name} vs {c.against}: {verdict}", highlight=False)
    for item in result.missing:
        console.print(f"  missing: {item}", style="yellow", highlight=False)
    for path in (result.html, result.markdown, *result.pngs, result.manifest):
        console.print(f"wrote {path}", highlight=False)


# --- reproduce / status -----------------------------------------------------------------------------


@app.command("reproduce")
def reproduce_cmd(
    revision: Annotated[
        str,
        typer.Option("--revision", help="GPT4All-J revision: v1.0, v1.1-breezy, v1.2-jazzy, v1.3-groovy."),
    ] = "v1.2-jazzy",
    profile: Annotated[
        str, typer.Option("--profile", help="full (the published recipe) or smoke (tiny, CPU, offline).")
    ] = "full",
    skip_train: Annotated[
        bool, typer.Option("--skip-train", help="Evaluate the published checkpoint of the revision only.")
    ] = False,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="Also evaluate base GPT-J and the published checkpoint.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Run directory (default outputs/reproduce/PROFILE-REVISION)."),
    ] = None,
    against: Annotated[
        str | None, typer.Option("--against", help="Published row to compare with (default: the revision's).")
    ] = None,
    fail_on_diff: Annotated[
        bool, typer.Option("--fail-on-diff", help="Exit 1 when a comparable cell differs beyond 2 stderr.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Run even when the doctor says it cannot.")] = False,
    set_: SetOption = None,
    json_out: JsonOption = False,
) -> None:
    """doctor → fetch → train → eval → compare → report, in one resumable run directory."""
    from gpt4allj_kit import reproduce as pipeline

    request = pipeline.ReproduceRequest(
        revision=revision,
        profile=profile,
        output=output,
        skip_train=skip_train,
        baseline=baseline,
        force=force,
        against=against,
        sets=tuple(set_ or ()),
        command=" ".join(["gpt4allj-kit", *sys.argv[1:]]),
    )
    run_dir = request.run_dir()
    if not json_out:
        err_console.print(f"run directory: {run_dir}", highlight=False)
    try:
        state = _run_with_progress(pipeline, request, quiet=json_out)
    finally:
        if not json_out and pipeline.state_path(run_dir).exists():
            console.print(_stage_table(pipeline.load_state(run_dir), run_dir))
    if json_out:
        console.print_json(state.model_dump_json())
    else:
        console.print(f"report: {run_dir / pipeline.REPORT_DIR / 'report.html'}", highlight=False)
    if fail_on_diff and pipeline.differs(run_dir):
        raise typer.Exit(int(ExitCode.RESULTS_DIFFER))


def _run_with_progress(pipeline: Any, request: Any, *, quiet: bool) -> Any:
    """Runs the pipeline with a live progress bar per stage on a terminal, plain lines otherwise."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if quiet:
        return pipeline.reproduce(request)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[stage]:<8}[/]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    tasks: dict[str, Any] = {}

    def started(name: str) -> None:
        tasks[name] = progress.add_task("", stage=name, total=None)
        if not err_console.is_terminal:
            err_console.print(f"[{name}] started", highlight=False, markup=False)

    def ended(name: str, state: Any) -> None:
        record = state.stage(name)
        progress.remove_task(tasks.pop(name))
        err_console.print(
            f"[{name}] {record.status} in {record.seconds or 0:.0f}s"
            + (f": {record.key}" if record.key else "")
            + (f" ({record.detail})" if record.detail and record.status == "failed" else ""),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

    def advance(message: str, done: float | None, total: float | None) -> None:
        if not tasks:
            return
        task = next(reversed(tasks.values()))
        progress.update(task, description=message[-60:], completed=done or 0, total=total)

    with progress:
        return pipeline.reproduce(
            request, pipeline.Hooks(stage_started=started, stage_ended=ended, progress=advance)
        )


def _stage_table(state: Any, run_dir: Path) -> Any:
    from rich.table import Table

    table = Table(title=f"{state.profile} reproduction of {state.revision}")
    for column in ("stage", "status", "time", "key number", "path"):
        table.add_column(column)
    colours = {"done": "green", "skipped": "cyan", "failed": "red", "interrupted": "red", "running": "yellow"}
    for record in state.stages.values():
        colour = colours.get(record.status, "white")
        seconds = f"{record.seconds:.0f}s" if record.seconds is not None else ""
        where = record.path or ""
        with_root = Path(where)
        shown = str(with_root.relative_to(run_dir)) if where and with_root.is_relative_to(run_dir) else where
        table.add_row(record.name, f"[{colour}]{record.status}[/]", seconds, record.key or "", shown)
    return table


@app.command("status")
def status_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A reproduction run directory.")],
    json_out: JsonOption = False,
) -> None:
    """Show each stage of a reproduction run: status, time, key number, path."""
    from gpt4allj_kit.runstate import load_state

    state = load_state(run_dir.resolve())
    if json_out:
        console.print_json(state.model_dump_json())
        return
    console.print(_stage_table(state, run_dir.resolve()))
    for record in state.stages.values():
        if record.status in ("failed", "interrupted") and record.detail:
            err_console.print(f"[red]{record.name}:[/] {record.detail}", highlight=False, soft_wrap=True)


def _deepspeed_logs_to_stderr() -> None:
    """DeepSpeed's logger writes to stdout (imported by transformers too), which corrupts `--json` output.

    Its handler is made at import time, whenever that happens, so the logger's `addHandler` is wrapped
    to point a stdout handler at stderr instead.
    """
    import logging

    logger = logging.getLogger("DeepSpeed")
    add = logger.addHandler

    def add_to_stderr(handler: logging.Handler) -> None:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
        add(handler)

    logger.addHandler = add_to_stderr  # type: ignore[method-assign]


def _interrupt_on_sigterm() -> None:
    """`docker stop` and schedulers send SIGTERM: treat it as Ctrl-C so launched training is stopped too."""
    import signal

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main() -> None:
    """Console-script entry: expected failures become one line and their exit code."""
    _deepspeed_logs_to_stderr()
    _interrupt_on_sigterm()
    try:
        # Without standalone mode click returns the code of typer.Exit instead of exiting itself.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except KitError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(int(exc.exit_code))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("[bold red]aborted[/]")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        # Typer (0.29+) carries its own copy of click: its usage errors are TyperExceptions.
        if isinstance(exc, typer.exceptions.TyperException):
            show = getattr(exc, "show", None)
            if callable(show):
                show()
            else:
                err_console.print(f"[bold red]error:[/] {exc.format_message()}", highlight=False)
            sys.exit(ExitCode.USAGE)
        if os.environ.get(DEBUG_ENV):
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(INTERNAL_ERROR)


if __name__ == "__main__":
    main()
