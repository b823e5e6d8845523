"""The compare stage: writes each comparison and a manifest, and finds the stored comparisons.

A run's `compare/` holds `<label>.json` (the Comparison, `Comparison.to_json`), `<label>.md`,
`attribution.json` and `.md` (where the gap comes from, `attribution.Attribution`) and `manifest.json`;
the report and `reproduce --fail-on-diff` read these files (`comparison_files`, `read_comparison`,
`attribution.read_attribution`) rather than comparing again, so that they never disagree with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gpt4allj_kit import paths
from gpt4allj_kit.compare.attribution import Attribution, attribute, attribute_run
from gpt4allj_kit.compare.comparison import Comparison, compare_path
from gpt4allj_kit.compare.paired import SAMPLES_DIR, PairedComparison, Settings, compare_runs
from gpt4allj_kit.compare.results import evaluations
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import atomic_write_text, check_writable, sha256_file
from gpt4allj_kit.manifest import check_output, now_iso, write_manifest, write_output
from gpt4allj_kit.published import PublishedTable, Row
from gpt4allj_kit.redaction import redact
from gpt4allj_kit.report.render import (
    Format,
    attribution_markdown,
    attribution_text,
    comparison_markdown,
    comparison_text,
    paired_text,
)


@dataclass(frozen=True)
class ComparedEvals:
    """What `write_comparisons` wrote: the comparisons by eval label, their files and the manifest."""

    comparisons: dict[str, Comparison]
    files: tuple[Path, ...]
    manifest: Path
    attribution: Attribution | None = None


@dataclass(frozen=True)
class ComparedFile:
    """What `write_comparison` wrote: one comparison in one format, and its manifest beside it."""

    comparison: Comparison
    output: Path
    manifest: Path


def _summary(label: str, c: Comparison) -> dict[str, object]:
    return {
        "label": label,
        "against": c.against,
        "comparable": c.measured.comparable,
        "reproduced": c.reproduced,
        "differing": c.differing,
    }


def write_comparisons(
    eval_dir: Path,
    out_dir: Path,
    *,
    against: Callable[[str], Row],
    table: PublishedTable,
    note: str | None = None,
    comparable: bool | None = None,
    command: str | Sequence[str],
    attribute_against: Row | None = None,
) -> ComparedEvals:
    """Compares every model under `eval_dir` with the row `against(label)`; writes `<label>.json` and
    `<label>.md` for each, with `attribute_against` (the run's row) `attribution.json` and `.md`, then
    `manifest.json`, into `out_dir`."""
    started = now_iso()
    check_writable(out_dir, directory=True)
    folders = list(evaluations(eval_dir).values())
    if not folders:
        raise ConfigError(f"no evaluation results under {eval_dir}")
    comparisons: dict[str, Comparison] = {}
    files: list[Path] = []
    for folder in folders:
        c = compare_path(folder, against(folder.name), note=note, comparable=comparable, table=table)
        comparisons[folder.name] = c
        for path, text in (
            (out_dir / f"{folder.name}.json", c.to_json()),
            (out_dir / f"{folder.name}.md", comparison_markdown(c)),
        ):
            atomic_write_text(path, redact(text))
            files.append(path)
    inputs = {c.measured.source: sha256_file(Path(c.measured.source)) for c in comparisons.values()}
    attribution = None
    if attribute_against is not None:
        evaluated = {folder.name: folder for folder in folders}  # the ones compared above
        attribution = attribute(
            evaluated,
            attribute_against,
            run=str(eval_dir.parent),
            table=table,
            note=note,
            comparable=comparable,
        )
        files += _write_attribution(attribution, out_dir)
        for folder in evaluated.values():
            inputs |= _samples_digests(folder)
    manifest = out_dir / paths.MANIFEST
    write_manifest(
        manifest,
        stage="compare",
        command=command if isinstance(command, str) else list(command),
        config={"eval_dir": str(eval_dir), "note": note, "comparable": comparable},
        started=started,
        inputs=inputs,
        outputs=[p.name for p in files],
        comparisons=[_summary(label, c) for label, c in comparisons.items()],
        **({"attribution": _attribution_summary(attribution)} if attribution else {}),
    )
    return ComparedEvals(
        comparisons=comparisons, files=tuple(files), manifest=manifest, attribution=attribution
    )


def _write_attribution(attribution: Attribution, out_dir: Path) -> list[Path]:
    json_file = out_dir / paths.ATTRIBUTION
    written = [
        (json_file, attribution.to_json()),
        (json_file.with_suffix(".md"), attribution_markdown(attribution)),
    ]
    for path, text in written:
        atomic_write_text(path, redact(text))
    return [path for path, _ in written]


def _attribution_summary(a: Attribution) -> dict[str, object]:
    """What the manifest says of the attribution: its row, whether the gap is split, and the seeded
    bootstrap behind its paired intervals."""
    return {
        "file": paths.ATTRIBUTION,
        "row": a.row,
        "split": a.split,
        "base": a.base is not None,
        "checkpoints": list(a.checkpoints),
        "settings": a.settings.model_dump(mode="json"),
        "missing": list(a.missing),
    }


def write_comparison(
    results: Path,
    output: Path,
    *,
    fmt: Format,
    against: str | None = None,
    note: str | None = None,
    comparable: bool | None = None,
    command: str | Sequence[str],
) -> ComparedFile:
    """Compares one results file (or dir) and writes it to `output` in `fmt`, with
    `<output>.manifest.json` beside it."""
    started = now_iso()
    check_output(output)
    c = compare_path(results, against, note=note, comparable=comparable)
    manifest = write_output(
        output,
        comparison_text(c, fmt),
        stage="compare",
        command=command,
        started=started,
        input=str(results),
        against=c.against,
        format=fmt,
        reproduced=c.reproduced,
        differing=c.differing,
    )
    return ComparedFile(comparison=c, output=output, manifest=manifest)


@dataclass(frozen=True)
class ComparedPairs:
    """What `write_paired` wrote: the paired comparisons in one format, and the manifest beside them."""

    pairs: list[PairedComparison]
    output: Path
    manifest: Path


def _samples_digests(folder: Path) -> dict[str, str]:
    return {str(p): sha256_file(p) for p in sorted((folder / SAMPLES_DIR).glob("*.jsonl"))}


def write_paired(
    a: Path,
    b: Path,
    output: Path,
    *,
    fmt: Format,
    settings: Settings,
    command: str | Sequence[str],
) -> ComparedPairs:
    """`compare RUN_A RUN_B --output FILE`: the paired comparisons in `fmt`, with `<output>.manifest.json`
    (the bootstrap's seed and resamples, and the digests of every samples file read)."""
    started = now_iso()
    check_output(output)
    pairs = compare_runs(a, b, settings=settings)
    inputs: dict[str, str] = {}
    for p in pairs:
        inputs |= _samples_digests(Path(p.a_source)) | _samples_digests(Path(p.b_source))
    manifest = write_output(
        output,
        paired_text(pairs, fmt),
        stage="compare",
        command=command,
        config={"a": str(a), "b": str(b), **settings.model_dump(mode="json")},
        started=started,
        inputs=inputs,
        format=fmt,
        pairs=[
            {"a": p.a_label, "b": p.b_label, "differing": p.differing, "average": p.average.verdict}
            for p in pairs
        ],
    )
    return ComparedPairs(pairs=pairs, output=output, manifest=manifest)


@dataclass(frozen=True)
class AttributedRun:
    """What `write_run_attribution` wrote: a run's attribution in one format, and the manifest beside it."""

    attribution: Attribution
    output: Path
    manifest: Path


def write_run_attribution(
    run_dir: Path,
    output: Path,
    *,
    fmt: Format,
    against: str | None,
    settings: Settings,
    command: str | Sequence[str],
) -> AttributedRun:
    """`compare RUN_DIR --output FILE`: where the run's gap comes from, in `fmt`, with
    `<output>.manifest.json` (the row, the bootstrap's settings, every samples file's sha256)."""
    started = now_iso()
    check_output(output)
    attribution = attribute_run(run_dir, against=against, settings=settings)
    manifest = write_output(
        output,
        attribution_text(attribution, fmt),
        stage="compare",
        command=command,
        config={"run_dir": str(run_dir), "against": against},
        started=started,
        format=fmt,
        attribution=_attribution_summary(attribution),
    )
    return AttributedRun(attribution=attribution, output=output, manifest=manifest)


def comparison_files(compare_dir: Path) -> dict[str, Path]:
    """The stored comparisons in `compare_dir` by label (every `*.json` but the manifests and the
    attribution)."""
    if not compare_dir.is_dir():
        return {}
    found = sorted(compare_dir.glob("*.json"))
    return {p.stem: p for p in found if not p.name.endswith(paths.MANIFEST) and p.name != paths.ATTRIBUTION}
