"""`report RUN_DIR`: one self-contained HTML file, a Markdown file and PNG charts about a run.

Works on a reproduce run dir, a bare training output dir or a bare eval dir (see `contents`), and says
what is missing instead of failing. The comparisons are the ones the compare stage stored in `compare/`
(so that the report and the comparison never disagree); only a directory without them, such as a bare eval
dir, is compared here. The HTML embeds its charts as base64 data URIs and its CSS inline, so it opens
offline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt4allj_kit import paths
from gpt4allj_kit.compare.attribution import Attribution, attribute_run, read_attribution
from gpt4allj_kit.compare.comparison import Comparison, combined_table, compare_path, read_comparison
from gpt4allj_kit.compare.results import evaluations, label_order, result_candidates
from gpt4allj_kit.compare.stage import comparison_files
from gpt4allj_kit.errors import ConfigError, KitError
from gpt4allj_kit.files import atomic_write_bytes, atomic_write_text, check_writable, sha256_file
from gpt4allj_kit.manifest import now_iso, write_manifest
from gpt4allj_kit.published import PublishedTable, load_eval_stack, load_published_table
from gpt4allj_kit.redaction import redact
from gpt4allj_kit.report.charts import comparison_chart, loss_chart
from gpt4allj_kit.report.contents import (
    Metrics,
    RunContents,
    commands,
    json_object,
    lock_assets,
    manifest_facts,
    read_metrics,
    relative,
    scan,
    training_facts,
)
from gpt4allj_kit.report.render import report_html, report_markdown
from gpt4allj_kit.report.view import (
    AttributionView,
    ComparisonSection,
    Figure,
    ManifestSection,
    ReportView,
    TrainingSection,
    attribution_unavailable,
    attribution_view,
    comparison_view,
    compliance_view,
    notes_view,
    overview_grid,
    table_view,
    text_grid,
)

if TYPE_CHECKING:
    from gpt4allj_kit.verify.run import Verification

# The recipe-compliance verdicts beside the report (verify-run's --json).
COMPLIANCE_FILE = "compliance.json"


@dataclass(frozen=True)
class ReportResult:
    html: Path
    markdown: Path
    pngs: tuple[Path, ...]
    manifest: Path
    kind: str
    comparisons: tuple[Comparison, ...]
    missing: tuple[str, ...]
    # True when the comparisons were made here (no compare/ results), False when read from compare/.
    compared_here: bool
    attribution: Attribution | None = None
    compliance: Verification | None = None


@dataclass(frozen=True)
class _Comparisons:
    found: list[Comparison]
    files: list[Path]
    compared_here: bool


def slug(text: str) -> str:
    """A file-name-safe form of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "results"


def _stored(files: dict[str, Path], root: Path, problems: list[str]) -> list[Comparison]:
    found = []
    for label in sorted(files, key=label_order):
        try:
            found.append(read_comparison(files[label]))
        except KitError as exc:
            problems.append(f"{relative(files[label], root)} cannot be read: {exc.message}")
    return found


def _check_against(stored: Sequence[Comparison], against: str, table: PublishedTable, where: Path) -> None:
    wanted = table.row(against).name
    rows = sorted({c.against for c in stored})
    if rows and rows != [wanted]:
        raise ConfigError(
            f"{where} holds the comparisons (against {'; '.join(rows)}); --against applies only to a "
            f"directory without them: run `gpt4allj-kit compare` to compare with '{against}'"
        )


def _comparisons(
    contents: RunContents, table: PublishedTable, against: str | None, problems: list[str]
) -> _Comparisons:
    """The compare stage's comparisons when there are any, else each eval compared here: with `against`,
    else the evaluated model's own row (its model and revision), else the default revision's."""
    files = comparison_files(contents.root / paths.COMPARE_DIR)
    if files:
        stored = _stored(files, contents.root, problems)
        if against:
            _check_against(stored, against, table, contents.root / paths.COMPARE_DIR)
        labels = {c.measured.label for c in stored} | set(files)
        problems += [
            f"eval '{ev.label}' has no comparison in {paths.COMPARE_DIR}/ (run the compare stage again)"
            for ev in contents.evals
            if ev.label not in labels
        ]
        return _Comparisons(stored, list(files.values()), compared_here=False)
    row = table.row(against) if against else None
    found = []
    for ev in contents.evals:
        try:
            found.append(compare_path(ev.path, row, table=table))
        except KitError as exc:
            problems.append(f"eval '{ev.label}' cannot be compared: {exc.message}")
    inputs = [f for ev in contents.evals for f in result_candidates(ev.path)]
    return _Comparisons(found, inputs, compared_here=True)


@dataclass(frozen=True)
class _Attributed:
    view: AttributionView | None
    attribution: Attribution | None = None
    file: Path | None = None  # compare/attribution.json when read from there


def _attributed(contents: RunContents, table: PublishedTable, against: str | None) -> _Attributed:
    """Where the gap comes from: the compare stage's attribution.json, else made here from the evaluations
    (an older run, an eval dir of several models), else what is missing; nothing for a single eval."""
    stored = contents.root / paths.COMPARE_DIR / paths.ATTRIBUTION
    where = relative(stored, contents.root)
    if stored.is_file():
        try:
            a = read_attribution(stored)
            return _Attributed(attribution_view(a, f"From {where} (the compare stage's)."), a, stored)
        except KitError as exc:
            reason = f"{where} cannot be read ({exc.message}): made here from the evaluations"
    else:
        reason = f"No {where}: made here from the evaluations"
    # A single eval folder has nothing to split its gap with.
    if not evaluations(contents.root) or result_candidates(contents.root):
        return _Attributed(None)
    try:
        a = attribute_run(contents.root, against=against, table=table)
    except KitError as exc:
        return _Attributed(attribution_unavailable(f"no attribution: {exc.message}"))
    return _Attributed(attribution_view(a, f"{reason}."), a)


def _missing(contents: RunContents, series: Metrics | None, comparisons: Sequence[Comparison]) -> list[str]:
    missing = []
    if contents.metrics is None:
        missing.append(f"no {paths.METRICS}: no training in this directory, so no loss curves")
    elif series and not (series.train or series.val):
        missing.append(f"{paths.METRICS} has no train_loss or val_loss values")
    elif series and not series.val:
        missing.append(f"{paths.METRICS} has no val_loss lines (no validation curve)")
    if not contents.evals and not comparisons:
        missing.append(
            "no eval results (summary.json / results.json): no comparison with the published table"
        )
    elif not comparisons:
        missing.append("no eval result could be compared (see problems)")
    if not contents.manifests:
        missing.append("no manifests: versions, shas, hardware and commands unknown")
    if contents.kind == "reproduce run" and contents.lock is None:
        missing.append(f"no {paths.LOCK_NAME}: asset shas unknown")
    return missing


def _comparison_section(c: Comparison) -> ComparisonSection:
    figure = Figure(
        name=f"compare_{slug(c.measured.label)}.png",
        alt=f"{c.ours_name} vs {c.against}: bars per task, ours ± 2·stderr",
        png=comparison_chart(c),
    )
    return ComparisonSection(view=comparison_view(c), figure=figure)


def _training_section(series: Metrics, metrics: Path, root: Path) -> TrainingSection:
    figure = (
        Figure(name="loss.png", alt="training and validation loss", png=loss_chart(series))
        if series.train or series.val
        else None
    )
    return TrainingSection(source=relative(metrics, root), facts=tuple(training_facts(series)), figure=figure)


def _view(
    contents: RunContents,
    table: PublishedTable,
    comparisons: Sequence[Comparison],
    manifests: dict[Path, dict[str, Any]],
    series: Metrics | None,
    missing: Sequence[str],
    started: str,
    attribution: AttributionView | None = None,
    compliance: Verification | None = None,
) -> ReportView:
    root = contents.root
    assets = lock_assets(contents.lock)
    return ReportView(
        title=f"gpt4allj-kit report: {root.name}",
        kind=contents.kind,
        root=str(root),
        generated=started,
        missing=tuple(missing),
        overview=overview_grid(comparisons) if comparisons else None,
        overview_notes=notes_view(list(dict.fromkeys(n for c in comparisons for n in c.notes))),
        comparisons=tuple(_comparison_section(c) for c in comparisons),
        published=(
            table_view(combined_table(comparisons, table), table, load_eval_stack(table))
            if comparisons
            else None
        ),
        training=(_training_section(series, contents.metrics, root) if series and contents.metrics else None),
        commands=tuple(commands(manifests, root)),
        assets=(
            text_grid(("repo", "type", "revision", "sha", "files"), assets, numeric=(False,) * 4 + (True,))
            if assets
            else None
        ),
        manifests=tuple(
            ManifestSection(
                path=relative(path, root), facts=tuple(manifest_facts(data)), full=json.dumps(data, indent=2)
            )
            for path, data in manifests.items()
        ),
        sources=table.citations,
        attribution=attribution,
        compliance=compliance_view(compliance) if compliance else None,
    )


def _compliance(root: Path) -> tuple[Verification | None, str | None]:
    """The training's verdicts against its recipe (verify-run); (None, why) when they cannot be had."""
    from gpt4allj_kit.verify.facts import holds_training
    from gpt4allj_kit.verify.run import verify_run

    if not holds_training(root):
        return None, None
    try:
        return verify_run(root), None
    except KitError as exc:
        return None, f"recipe compliance could not be checked: {exc.message}"


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
    out = (output or root / paths.REPORT_DIR).resolve()
    table = table or load_published_table()
    if against:
        table.row(against)  # an unknown row is a usage error before anything is written
    contents = scan(root, exclude=out)
    # Charts and comparisons take seconds: an output that cannot take them is said first.
    check_writable(out, "--output" if output else "", directory=True)
    manifests = {p: d for p in contents.manifests if (d := json_object(p)) is not None}
    problems = [
        f"{relative(p, root)}: not a readable JSON object" for p in contents.manifests if p not in manifests
    ]
    compared = _comparisons(contents, table, against, problems)
    comparisons = compared.found
    series = read_metrics(contents.metrics) if contents.metrics else None
    attributed = _attributed(contents, table, against)
    compliance, compliance_problem = _compliance(root)
    missing = (
        _missing(contents, series, comparisons)
        + problems
        + ([compliance_problem] if compliance_problem else [])
    )
    view = _view(
        contents, table, comparisons, manifests, series, missing, started, attributed.view, compliance
    )

    out.mkdir(parents=True, exist_ok=True)
    for figure in view.figures:
        atomic_write_bytes(out / figure.name, figure.png)
    html_path, md_path = out / "report.html", out / "report.md"
    atomic_write_text(md_path, redact(report_markdown(view)))
    atomic_write_text(html_path, redact(report_html(view)))
    if compliance is not None:
        atomic_write_text(out / COMPLIANCE_FILE, redact(json.dumps(compliance.as_json(), indent=2) + "\n"))
    inputs = [p for p in (contents.metrics, contents.lock, *contents.manifests) if p] + compared.files
    inputs += [attributed.file] if attributed.file else []
    pngs = [f.name for f in view.figures]
    extra = [COMPLIANCE_FILE] if compliance is not None else []
    write_manifest(
        out / paths.MANIFEST,
        stage="report",
        command=command if isinstance(command, str) else list(command),
        started=started,
        run_dir=str(root),
        kind=contents.kind,
        inputs={relative(p, root): sha256_file(p) for p in dict.fromkeys(inputs)},
        outputs=sorted(["report.html", "report.md", *pngs, *extra]),
        comparisons_from="compared here (no compare/ results)"
        if compared.compared_here
        else f"{paths.COMPARE_DIR}/",
        comparisons=[
            {
                "label": c.measured.label,
                "against": c.against,
                "reproduced": c.reproduced,
                "differing": c.differing,
            }
            for c in comparisons
        ],
        missing=missing,
        attribution=_attribution_record(attributed),
        compliance=(
            {
                "recipe": compliance.recipe,
                **compliance.counts,
                "differing": [v.id for v in compliance.verdicts if v.verdict == "differs"],
            }
            if compliance is not None
            else None
        ),
    )
    return ReportResult(
        html=html_path,
        markdown=md_path,
        pngs=tuple(out / n for n in pngs),
        manifest=out / paths.MANIFEST,
        kind=contents.kind,
        comparisons=tuple(comparisons),
        missing=tuple(missing),
        compared_here=compared.compared_here,
        attribution=attributed.attribution,
        compliance=compliance,
    )


def _attribution_record(attributed: _Attributed) -> dict[str, object] | None:
    a = attributed.attribution
    if attributed.view is None:
        return None
    return {
        "from": f"{paths.COMPARE_DIR}/{paths.ATTRIBUTION}" if attributed.file else "made here",
        "row": a.row if a else None,
        "split": a.split if a else False,
        "missing": list(attributed.view.missing),
    }
