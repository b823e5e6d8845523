"""`report RUN_DIR`: one self-contained HTML file, a Markdown file and PNG charts about a run.

Works on a reproduce run dir (run.json, train/, eval/<label>/), a bare training output dir (metrics.jsonl,
manifest.json) or a bare eval dir (<label>/summary.json|results.json, or those files directly), and says
what is missing instead of failing. The HTML embeds its charts as base64 data URIs and its CSS inline, so
it opens offline.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt4allj_kit import paths
from gpt4allj_kit.compare import (
    NOT_COMPARABLE_NOTE,
    Comparison,
    combined_table,
    compare,
    default_against,
    read_measured,
    result_candidates,
    slug,
)
from gpt4allj_kit.errors import ConfigError, KitError
from gpt4allj_kit.files import atomic_write_bytes, atomic_write_text, sha256_file
from gpt4allj_kit.manifest import now_iso, write_manifest
from gpt4allj_kit.published import PublishedTable, load_published_table
from gpt4allj_kit.recipe import DEFAULT_REVISION
from gpt4allj_kit.render import (
    e,
    html_fragment,
    html_notes,
    html_page,
    html_published,
    html_table,
    markdown,
    markdown_published,
)

METRICS_NAME = "metrics.jsonl"
MANIFEST_NAME = "manifest.json"
RUN_NAME = "run.json"
LOCK_NAME = paths.LOCK_NAME
REPORT_DIR = "report"
_SKIP_DIRS = {REPORT_DIR, "compare"}
_LABEL_ORDER = ("epoch_", "final", "published", "base")


@dataclass(frozen=True)
class EvalDir:
    label: str
    path: Path


@dataclass(frozen=True)
class RunContents:
    """What a directory holds that a report can show."""

    root: Path
    kind: str
    metrics: Path | None
    evals: tuple[EvalDir, ...]
    manifests: tuple[Path, ...]
    run_json: Path | None
    lock: Path | None


@dataclass
class Metrics:
    """metrics.jsonl as series; unreadable lines are counted, not fatal."""

    train: list[tuple[float, float]] = field(default_factory=list)
    val: list[tuple[float, float]] = field(default_factory=list)
    lr: list[tuple[float, float]] = field(default_factory=list)
    epoch_starts: list[tuple[float, int]] = field(default_factory=list)
    lines: int = 0
    skipped: int = 0
    last: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportResult:
    html: Path
    markdown: Path
    pngs: tuple[Path, ...]
    manifest: Path
    kind: str
    comparisons: tuple[Comparison, ...]
    missing: tuple[str, ...]


# --- finding things --------------------------------------------------------------------------------------


def _label_key(path: Path) -> tuple[int, float, str]:
    name = path.name
    if m := re.fullmatch(r"epoch_(\d+)", name):
        return (0, int(m.group(1)), name)
    order = {"final": 1, "published": 2, "base": 3}
    return (order.get(name, 4), 0, name)


def _eval_dirs(root: Path) -> tuple[EvalDir, ...]:
    base = root / "eval" if (root / "eval").is_dir() else root
    if result_candidates(base):
        return (EvalDir(base.name, base),)
    subdirs = [d for d in base.iterdir() if d.is_dir() and d.name not in _SKIP_DIRS and result_candidates(d)]
    return tuple(EvalDir(d.name, d) for d in sorted(subdirs, key=_label_key))


def _manifests(root: Path, exclude: Path | None) -> tuple[Path, ...]:
    found = [root / RUN_NAME, root / MANIFEST_NAME]
    for pattern in (f"*/{MANIFEST_NAME}", f"*/*/{MANIFEST_NAME}", "compare/*manifest*.json"):
        found += sorted(root.glob(pattern))
    unique = dict.fromkeys(p for p in found if p.is_file() and not (exclude and exclude in p.parents))
    return tuple(unique)


def scan(root: Path, *, exclude: Path | None = None) -> RunContents:
    """What `root` holds, or a one-line ConfigError when it is none of the three layouts."""
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory (expected a run, training output or eval dir)")
    train = root / "train" if (root / "train").is_dir() else root
    metrics = train / METRICS_NAME if (train / METRICS_NAME).is_file() else None
    evals = _eval_dirs(root)
    manifests = _manifests(root, exclude)
    run_json = root / RUN_NAME if (root / RUN_NAME).is_file() else None
    lock = root / LOCK_NAME if (root / LOCK_NAME).is_file() else None
    if not (metrics or evals or manifests or lock):
        raise ConfigError(
            f"{root}: no {METRICS_NAME}, eval results or manifests here"
            " - not a run, training output or eval dir"
        )
    if run_json or ((root / "train").is_dir() and (root / "eval").is_dir()):
        kind = "reproduce run"
    elif metrics:
        kind = "training output"
    elif evals:
        kind = "eval dir"
    else:
        kind = "run directory (partial)"
    return RunContents(root, kind, metrics, evals, manifests, run_json, lock)


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def read_metrics(path: Path) -> Metrics:
    series = Metrics()
    last_epoch: int | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        series.lines += 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            series.skipped += 1
            continue
        step = _finite(row.get("step")) if isinstance(row, dict) else None
        if step is None:
            series.skipped += 1
            continue
        if (loss := _finite(row.get("train_loss"))) is not None:
            series.train.append((step, loss))
        if (val := _finite(row.get("val_loss"))) is not None:
            series.val.append((step, val))
        if (lr := _finite(row.get("lr"))) is not None:
            series.lr.append((step, lr))
        if (epoch := _finite(row.get("epoch"))) is not None and int(epoch) != last_epoch:
            last_epoch = int(epoch)
            series.epoch_starts.append((step, last_epoch))
        series.last = row
    return series


# --- charts ----------------------------------------------------------------------------------------------


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def comparison_chart(c: Comparison) -> bytes:
    """Grouped bars per task and the average: the report's value and ours with ±2·stderr error bars."""
    from matplotlib.figure import Figure

    labels = [cell.label for cell in c.cells] + ["Avg"]
    reported = [cell.reported for cell in c.cells] + [c.average.reported]
    ours = [cell.ours for cell in c.cells] + [c.average.ours]
    errors = [2 * cell.stderr for cell in c.cells] + [2 * c.average.stderr]
    verdicts = [cell.verdict for cell in c.cells] + [c.average.verdict]
    fig = Figure(figsize=(9.5, 4.4))
    ax = fig.add_subplot()
    x = list(range(len(labels)))
    width = 0.38
    ax.bar([i - width / 2 for i in x], reported, width, label=f"report: {c.against}", color="#8c959f")
    ax.bar(
        [i + width / 2 for i in x],
        ours,
        width,
        yerr=errors,
        capsize=4,
        color="#0969da",
        error_kw={"elinewidth": 1.2, "ecolor": "#1f2328"},
        label=f"ours ({c.measured.label}) ± 2·stderr",
    )
    for i, v in enumerate(verdicts):
        top = max(reported[i], ours[i] + errors[i])
        ax.text(
            i,
            top + 1.5,
            "✓" if v == "reproduced" else "✗",
            ha="center",
            color="#1a7f37" if v == "reproduced" else "#cf222e",
            fontsize=12,
            fontweight="bold",
        )
    ax.set_xticks(x, labels)
    ax.set_ylabel("percent (zero-shot)")
    ax.set_ylim(0, min(110, max(max(reported), max(o + e for o, e in zip(ours, errors, strict=True))) + 12))
    title = f"{c.measured.label} vs {c.against} (published); ✓ reproduced, ✗ differs (|Δ| > 2·stderr)"
    if not c.measured.comparable:
        title += f"\n({NOT_COMPARABLE_NOTE})"
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return _png(fig)


def loss_chart(series: Metrics) -> bytes:
    """Training and validation loss against step; the learning rate below on the same steps."""
    from matplotlib.figure import Figure

    panels = 2 if series.lr else 1
    fig = Figure(figsize=(9.5, 5.6 if panels == 2 else 4.0))
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": [3, 1][:panels]})
    ax = axes[0][0]
    if series.train:
        ax.plot(*zip(*series.train, strict=True), color="#0969da", linewidth=1.0, label="train loss")
    if series.val:
        ax.plot(
            *zip(*series.val, strict=True),
            color="#cf222e",
            marker="o",
            markersize=4,
            linewidth=1.5,
            label="validation loss",
        )
    for step, epoch in series.epoch_starts[1:]:
        for row in axes:
            row[0].axvline(step, color="#8c959f", linestyle="--", linewidth=0.8)
        ax.text(
            step,
            1.0,
            f" epoch {epoch}",
            transform=ax.get_xaxis_transform(),
            va="top",
            fontsize=8,
            color="#59636e",
        )
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss (metrics.jsonl)", fontsize=10)
    ax.grid(alpha=0.3)
    if series.train or series.val:
        ax.legend(fontsize=8)
    if series.lr:
        lr_ax = axes[1][0]
        lr_ax.plot(*zip(*series.lr, strict=True), color="#8250df", linewidth=1.0)
        lr_ax.set_ylabel("lr")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        lr_ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel("optimizer step")
    return _png(fig)


# --- content ---------------------------------------------------------------------------------------------


def _run_revision(
    contents: RunContents, manifests: dict[Path, dict[str, Any]], table: PublishedTable
) -> str | None:
    """The data revision the run trained on, when it names a row of the table."""
    sources = [manifests.get(contents.run_json) if contents.run_json else None, *manifests.values()]
    for data in sources:
        if not data:
            continue
        config = data.get("config") if isinstance(data.get("config"), dict) else {}
        for value in (data.get("revision"), config.get("revision")):
            if isinstance(value, str) and value.lower() in {n.lower() for r in table.rows for n in r.names()}:
                return value
    return None


def _is_smoke(manifests: dict[Path, dict[str, Any]]) -> bool:
    return any(str(m.get("profile", "")).lower() == "smoke" for m in manifests.values())


def _comparisons(
    contents: RunContents,
    manifests: dict[Path, dict[str, Any]],
    table: PublishedTable,
    against: str | None,
    problems: list[str],
) -> list[Comparison]:
    fallback = _run_revision(contents, manifests, table) or DEFAULT_REVISION
    forced = table.row(against) if against else None
    smoke = _is_smoke(manifests)
    result = []
    for ev in contents.evals:
        try:
            measured = read_measured(ev.path, table=table, comparable=False if smoke else None)
        except KitError as exc:
            problems.append(f"eval '{ev.label}' cannot be compared: {exc.message}")
            continue
        row = forced or default_against(measured, table, fallback)
        result.append(compare(measured, row, table))
    return result


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def _manifest_facts(data: dict[str, Any]) -> list[tuple[str, str]]:
    env = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    hw = env.get("hardware") if isinstance(env.get("hardware"), dict) else {}
    packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
    gpus = hw.get("gpus") or []
    gpu_text = ", ".join(f"{g.get('name')} ({g.get('memory_gb')} GiB)" for g in gpus if isinstance(g, dict))
    facts = [
        ("stage", data.get("stage")),
        ("started", data.get("started")),
        ("ended", data.get("ended")),
        ("kit version", env.get("kit_version")),
        (
            "git commit",
            f"{git.get('sha')}{' (dirty)' if git.get('dirty') else ''}" if git.get("sha") else None,
        ),
        ("lock sha256", env.get("lock_sha256")),
        ("python", env.get("python")),
        ("packages", ", ".join(f"{k} {v}" for k, v in packages.items() if v)),
        ("hardware", f"{hw.get('cpu_cores')} CPU cores, {hw.get('memory_gb')} GiB RAM" if hw else None),
        ("GPUs", gpu_text or ("none" if hw else None)),
        ("platform", hw.get("platform")),
    ]
    for key in ("model", "revision", "sha", "label", "dtype", "profile"):
        if isinstance(data.get(key), str | int | float):
            facts.append((key, data[key]))
    return [(k, str(v)) for k, v in facts if v not in (None, "")]


def _commands(manifests: dict[Path, dict[str, Any]], root: Path) -> list[tuple[str, str]]:
    found = []
    for path, data in manifests.items():
        where = _rel(path, root)
        if isinstance(data.get("command"), str) and data["command"].strip():
            found.append((where, data["command"]))
        for cmd in data.get("commands", []) if isinstance(data.get("commands"), list) else []:
            found.append((where, cmd if isinstance(cmd, str) else " ".join(map(str, cmd))))
    return found


def _lock_assets(path: Path | None) -> list[list[str]]:
    data = _json_file(path) if path else None
    if not data:
        return []
    assets = data.get("assets", data)
    items = assets.values() if isinstance(assets, dict) else assets if isinstance(assets, list) else []
    rows = []
    for asset in items:
        if isinstance(asset, dict) and asset.get("repo_id"):
            files = asset.get("files") if isinstance(asset.get("files"), list) else []
            rows.append(
                [
                    str(asset.get("repo_id")),
                    str(asset.get("repo_type", "")),
                    str(asset.get("revision", "")),
                    str(asset.get("sha", "")),
                    str(len(files)),
                ]
            )
    return rows


def _training_facts(series: Metrics) -> list[tuple[str, str]]:
    facts = [("lines", str(series.lines))]
    if series.skipped:
        facts.append(("unreadable lines skipped", str(series.skipped)))
    if series.train:
        facts += [
            ("last step", f"{series.train[-1][0]:g}"),
            ("last train loss", f"{series.train[-1][1]:.4f}"),
        ]
    if series.val:
        best = min(series.val, key=lambda p: p[1])
        facts += [
            ("last validation loss", f"{series.val[-1][1]:.4f} (step {series.val[-1][0]:g})"),
            ("best validation loss", f"{best[1]:.4f} (step {best[0]:g})"),
        ]
    for key in ("epoch", "tokens_per_s", "nonpad_tokens_per_s", "time"):
        if (value := _finite(series.last.get(key))) is not None:
            facts.append((f"last {key}", f"{value:.4g}"))
    return facts


def _missing(contents: RunContents, series: Metrics | None, comparisons: Sequence[Comparison]) -> list[str]:
    missing = []
    if contents.metrics is None:
        missing.append(f"no {METRICS_NAME}: no training in this directory, so no loss curves")
    elif series and not (series.train or series.val):
        missing.append(f"{METRICS_NAME} has no train_loss or val_loss values")
    elif series and not series.val:
        missing.append(f"{METRICS_NAME} has no val_loss lines (no validation curve)")
    if not contents.evals:
        missing.append(
            "no eval results (summary.json / results.json): no comparison with the published table"
        )
    elif not comparisons:
        missing.append("no eval result could be compared (see problems)")
    if not contents.manifests:
        missing.append("no manifests: versions, shas, hardware and commands unknown")
    if contents.kind == "reproduce run" and contents.lock is None:
        missing.append(f"no {LOCK_NAME}: asset shas unknown")
    return missing


# --- documents -------------------------------------------------------------------------------------------


@dataclass
class _Doc:
    """The report's sections, kept as pairs of Markdown and HTML so both documents say the same."""

    md: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.md += [f"## {title}", ""]
        self.html.append(f"<h2>{e(title)}</h2>")

    def facts(self, facts: Sequence[tuple[str, str]]) -> None:
        self.md += [f"- **{k}**: {v}" for k, v in facts] + [""]
        self.html.append(html_table(None, [[e(k), e(v)] for k, v in facts], numeric=[False, False]))

    def listing(self, items: Sequence[str], css: str) -> None:
        self.md += [f"- {i}" for i in items] + [""]
        self.html.append(
            f'<div class="{css}"><ul>' + "".join(f"<li>{e(i)}</li>" for i in items) + "</ul></div>"
        )

    def overview(self, comparisons: Sequence[Comparison]) -> None:
        header = [
            "Evaluated",
            "Compared with",
            "Cells reproduced",
            "Avg ours",
            "Avg report",
            "Δ Avg ± stderr",
        ]
        rows = [
            [
                c.measured.label,
                c.against,
                f"{7 - len(c.differing)}/7",
                f"{c.average.ours:.2f}",
                f"{c.average.reported:.2f}",
                f"{c.average.delta:+.2f} ± {c.average.stderr:.2f}",
            ]
            for c in comparisons
        ]
        self.md += ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * 4]
        self.md += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        self.html.append(
            html_table(header, [[e(v) for v in r] for r in rows], numeric=[False, False, *[True] * 4])
        )
        notes = dict.fromkeys(n for c in comparisons for n in c.notes)
        self.md += [f"> **Note: {n}.**" for n in notes] + ([""] if notes else [])
        self.html.append(html_notes(list(notes)))

    def image(self, name: str, data: bytes, alt: str) -> None:
        self.md += [f"![{alt}]({name})", ""]
        b64 = base64.b64encode(data).decode("ascii")
        self.html.append(f'<img alt="{e(alt)}" src="data:image/png;base64,{b64}">')


def build_report(
    run_dir: Path,
    output: Path | None = None,
    *,
    against: str | None = None,
    command: str | Sequence[str] = "gpt4allj-kit report",
    table: PublishedTable | None = None,
) -> ReportResult:
    """Writes report.html, report.md, the PNGs and a manifest to `output` (default RUN_DIR/report)."""
    started = now_iso()
    root = run_dir.resolve()
    out = (output or root / REPORT_DIR).resolve()
    table = table or load_published_table()
    if against:
        table.row(against)  # an unknown row is a usage error before anything is written
    contents = scan(root, exclude=out)
    manifests = {p: d for p in contents.manifests if (d := _json_file(p)) is not None}
    problems = [
        f"{_rel(p, root)}: not a readable JSON object" for p in contents.manifests if p not in manifests
    ]
    comparisons = _comparisons(contents, manifests, table, against, problems)
    series = read_metrics(contents.metrics) if contents.metrics else None
    missing = _missing(contents, series, comparisons)
    pngs: dict[str, bytes] = {}

    doc = _Doc()
    title = f"gpt4allj-kit report: {root.name}"
    doc.md += [f"# {title}", "", f"{contents.kind} at `{root}`, generated {started}.", ""]
    doc.html.append(
        f'<h1>{e(title)}</h1><p class="muted">{e(contents.kind)} at <code>{e(root)}</code>, '
        f"generated {e(started)}.</p>"
    )
    if missing or problems:
        doc.section("What is missing")
        doc.listing(missing + problems, "missing")

    if comparisons:
        doc.section("Comparison with the published table")
        doc.overview(comparisons)
        for c in comparisons:
            name = f"compare_{slug(c.measured.label)}.png"
            pngs[name] = comparison_chart(c)
            doc.md += [markdown(c, heading_level=3, with_table=False)]
            doc.html.append(html_fragment(c, heading="h3", with_table=False))
            doc.image(name, pngs[name], f"{c.ours_name} vs {c.against}: bars per task, ours ± 2·stderr")
        doc.section("Published table with our rows")
        rows = combined_table(comparisons, table)
        doc.md += [markdown_published(rows, table.columns, table.title)]
        doc.html.append(html_published(rows, table.columns, table.title))

    if series is not None and contents.metrics is not None:
        doc.section("Training")
        doc.md += [f"From `{_rel(contents.metrics, root)}`.", ""]
        doc.html.append(f'<p class="muted">From <code>{e(_rel(contents.metrics, root))}</code>.</p>')
        doc.facts(_training_facts(series))
        if series.train or series.val:
            pngs["loss.png"] = loss_chart(series)
            doc.image("loss.png", pngs["loss.png"], "training and validation loss")

    commands = _commands(manifests, root)
    doc.section("Commands that produced it")
    if commands:
        for where, cmd in commands:
            doc.md += [f"`{where}`:", "", "```sh", cmd, "```", ""]
            doc.html.append(f'<p class="muted"><code>{e(where)}</code></p><pre>{e(cmd)}</pre>')
    else:
        doc.listing(["no manifest records a command"], "missing")

    if assets := _lock_assets(contents.lock):
        doc.section("Assets (locked)")
        header = ["repo", "type", "revision", "sha", "files"]
        doc.md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        doc.md += ["| " + " | ".join(r) + " |" for r in assets] + [""]
        doc.html.append(html_table(header, [[e(v) for v in r] for r in assets], numeric=[False] * 4 + [True]))

    if manifests:
        doc.section("Manifests")
        for path, data in manifests.items():
            doc.md += [f"### `{_rel(path, root)}`", ""]
            doc.html.append(f"<h3><code>{e(_rel(path, root))}</code></h3>")
            doc.facts(_manifest_facts(data))
            full = e(json.dumps(data, indent=2))
            doc.html.append(f"<details><summary>full manifest</summary><pre>{full}</pre></details>")

    doc.md += ["---", "", "Sources of the published table: " + "; ".join(table.sources), ""]
    doc.html.append(f'<hr><p class="muted">Sources of the published table: {e("; ".join(table.sources))}</p>')

    out.mkdir(parents=True, exist_ok=True)
    for name, data in pngs.items():
        atomic_write_bytes(out / name, data)
    html_path, md_path = out / "report.html", out / "report.md"
    atomic_write_text(md_path, "\n".join(doc.md))
    atomic_write_text(html_path, html_page(title, "\n".join(doc.html)))
    inputs = [p for p in (contents.metrics, contents.lock, *contents.manifests) if p]
    inputs += [f for ev in contents.evals for f in result_candidates(ev.path)]
    write_manifest(
        out / MANIFEST_NAME,
        stage="report",
        command=command if isinstance(command, str) else list(command),
        started=started,
        run_dir=str(root),
        kind=contents.kind,
        inputs={_rel(p, root): sha256_file(p) for p in dict.fromkeys(inputs)},
        outputs=sorted(["report.html", "report.md", *pngs]),
        comparisons=[
            {
                "label": c.measured.label,
                "against": c.against,
                "reproduced": c.reproduced,
                "differing": c.differing,
            }
            for c in comparisons
        ],
        missing=missing + problems,
    )
    return ReportResult(
        html=html_path,
        markdown=md_path,
        pngs=tuple(out / n for n in pngs),
        manifest=out / MANIFEST_NAME,
        kind=contents.kind,
        comparisons=tuple(comparisons),
        missing=tuple(missing + problems),
    )
