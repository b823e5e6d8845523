"""`report`: self-contained HTML, Markdown and PNGs from a crafted run dir and from partial ones."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import pytest
from gpt4allj_kit.compare.stage import write_comparisons
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.manifest import write_manifest
from gpt4allj_kit.published import PublishedTable, load_published_table
from gpt4allj_kit.report import build as report_build
from gpt4allj_kit.report.build import build_report
from PIL import Image

TRAIN_COMMAND = (
    "accelerate launch --dynamo_backend=inductor --num_processes=8 --num_machines=1 --machine_rank=0 "
    "--deepspeed_multinode_launcher standard --mixed_precision=bf16 --use_deepspeed "
    "--deepspeed_config_file=configs/deepspeed/ds_config_gptj.json train.py "
    "--config configs/train/finetune_gptj.yaml"
)
NETWORK_REF = re.compile(r"""(src|href|url)\s*[=(]\s*["']?\s*(https?:)?//""", re.IGNORECASE)


def write_metrics(path: Path, steps: int = 40, eval_every: int = 10, steps_per_epoch: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(1, steps + 1):
        line = {
            "step": step,
            "epoch": (step - 1) // steps_per_epoch,
            "train_loss": 3.0 * math.exp(-step / 15) + 1.0,
            "lr": 2e-5 * min(1.0, step / 10),
            "grad_norm": 1.0,
            "tokens_per_s": 1000.0,
            "nonpad_tokens_per_s": 600.0,
            "time": step * 0.5,
        }
        if step % eval_every == 0:
            line["val_loss"] = 3.2 * math.exp(-step / 15) + 1.1
        lines.append(json.dumps(line))
    lines.insert(5, "{not json")  # a torn line must not break the report
    path.write_text("\n".join(lines) + "\n")


def write_eval(folder: Path, table: PublishedTable, *, shift: float = 0.0, comparable: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    results = {}
    for c in table.columns:
        value = table.row("v1.2-jazzy").values[c.key] / 100 + shift
        results[c.task] = {"alias": c.task, f"{c.metric},none": value, f"{c.metric}_stderr,none": 0.011}
    (folder / "results.json").write_text(json.dumps({"results": results, "lm_eval_version": "0.4.13"}))
    summary = {"model": str(folder), "revision": None, "label": folder.name, "comparable": comparable}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "manifest.json").write_text(
        json.dumps(
            {"stage": "eval", "command": f"gpt4allj-kit eval --model {folder.name}", "label": folder.name}
        )
    )


@pytest.fixture(scope="module")
def table() -> PublishedTable:
    return load_published_table()


@pytest.fixture
def run_dir(tmp_path: Path, table: PublishedTable) -> Path:
    root = tmp_path / "run"
    write_metrics(root / "train" / "metrics.jsonl")
    write_manifest(
        root / "train" / "manifest.json",
        stage="train",
        command=TRAIN_COMMAND,
        config={"revision": "v1.2-jazzy"},
    )
    write_eval(root / "eval" / "epoch_1", table, shift=-0.05)
    write_eval(root / "eval" / "final", table)
    (root / "run.json").write_text(
        json.dumps(
            {
                "stage": "reproduce",
                "command": "gpt4allj-kit reproduce --revision v1.2-jazzy",
                "revision": "v1.2-jazzy",
            }
        )
    )
    asset = {
        "repo_id": "nomic-ai/gpt4all-j-prompt-generations",
        "repo_type": "dataset",
        "revision": "v1.2-jazzy",
    }
    files = [{"path": "data/train-0.parquet", "size": 1, "sha256": "b" * 64}]
    lock = {"assets": [{**asset, "sha": "a" * 40, "files": files}]}
    (root / "gpt4allj-kit.lock.json").write_text(json.dumps(lock))
    return root


def assert_png(path: Path) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 200


def test_report_on_a_reproduce_run_dir(run_dir: Path) -> None:
    # In-process: the CLI's exit codes are tested below; a second interpreter would re-import torch.
    result = build_report(run_dir, command="gpt4allj-kit report run")
    out = run_dir / "report"
    assert result.html == out / "report.html" and result.kind == "reproduce run"
    page = (out / "report.html").read_text()
    assert not NETWORK_REF.search(page), NETWORK_REF.search(page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # two comparisons and the loss curves
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert image.format == "PNG"
    # what the report must show
    assert TRAIN_COMMAND in page
    assert "gpt4allj-kit reproduce --revision v1.2-jazzy" in page
    assert "GPT4All-J v1.2-jazzy" in page and "a" * 40 in page
    assert "ours: epoch_1" in page and "ours: final" in page
    md = (out / "report.md").read_text()
    for name in ("compare_epoch_1.png", "compare_final.png", "loss.png"):
        assert f"]({name})" in md
        assert_png(out / name)
    assert "| BoolQ | acc | 74.8 | 74.80 | +0.00 | 1.10 | — | reproduced |" in md
    assert "| BoolQ | acc | 74.8 | 69.80 | -5.00 | 1.10 | — | differs |" in md
    assert "```sh\n" + TRAIN_COMMAND in md
    assert "unreadable lines skipped" in md
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "report" and manifest["kind"] == "reproduce run"
    assert "train/metrics.jsonl" in manifest["inputs"] and "eval/final/results.json" in manifest["inputs"]
    assert manifest["comparisons"][1] == {
        "label": "final", "against": "GPT4All-J v1.2-jazzy", "reproduced": True, "differing": []
    }  # fmt: skip


def test_report_with_only_metrics(tmp_path: Path) -> None:
    write_metrics(tmp_path / "metrics.jsonl")
    result = build_report(tmp_path, tmp_path / "out", command="test")
    assert result.kind == "training output" and result.comparisons == ()
    assert any("no eval results" in m for m in result.missing)
    assert any("no manifests" in m for m in result.missing)
    assert [p.name for p in result.pngs] == ["loss.png"]
    assert_png(result.pngs[0])
    assert "What is missing" in result.markdown.read_text()
    assert "data:image/png;base64," in result.html.read_text()


def test_report_on_a_bare_eval_dir_of_a_tiny_model(tmp_path: Path, table: PublishedTable) -> None:
    write_eval(tmp_path / "eval-out" / "final", table, shift=-0.3, comparable=False)
    result = build_report(tmp_path / "eval-out", command="test")
    assert result.kind == "eval dir" and len(result.comparisons) == 1
    assert any("no metrics.jsonl" in m for m in result.missing)
    md = result.markdown.read_text()
    assert "a tiny random model is not comparable" in md
    assert "a tiny random model is not comparable" in result.html.read_text()
    assert result.html.parent == tmp_path / "eval-out" / "report"


def test_report_says_which_eval_cannot_be_compared(run_dir: Path) -> None:
    (run_dir / "eval" / "epoch_1" / "results.json").write_text("{torn")
    result = build_report(run_dir, command="test")
    assert [c.measured.label for c in result.comparisons] == ["final"]
    assert any("eval 'epoch_1' cannot be compared" in m and "malformed JSON" in m for m in result.missing)


def test_report_lists_damaged_json_it_reads_as_problems(run_dir: Path) -> None:
    # Too deep for a JSON parser, not UTF-8, a torn line in metrics.jsonl: listed, never a crash.
    depth = 100_000
    (run_dir / "train" / "manifest.json").write_text("[" * depth + "]" * depth)
    (run_dir / "eval" / "final" / "manifest.json").write_bytes(b"\xff\xfe{")
    with (run_dir / "train" / "metrics.jsonl").open("a") as fh:
        fh.write("[" * depth + "]" * depth + "\n")
    result = build_report(run_dir, command="test")
    assert "train/manifest.json: not a readable JSON object" in result.missing
    assert "eval/final/manifest.json: not a readable JSON object" in result.missing
    assert result.html.is_file()


def test_report_on_an_empty_dir_is_one_line_exit_2(tmp_path: Path, kit_cli) -> None:
    (tmp_path / "unrelated.txt").write_text("hello")
    proc = kit_cli("report", tmp_path)
    assert proc.returncode == 2
    assert (
        len(proc.stderr.strip().splitlines()) == 1 and "not a run, training output or eval dir" in proc.stderr
    )
    with pytest.raises(ConfigError):
        build_report(tmp_path / "missing")


def test_report_published_prints_every_row(table: PublishedTable, kit_cli) -> None:
    proc = kit_cli("report", "--published")
    assert proc.returncode == 0, proc.stderr
    for row in table.rows:
        assert row.name in proc.stdout
    assert (
        "58.57" not in proc.stdout and "58.6" in proc.stdout
    )  # Avg computed, shown as published (1 decimal)


def _compare_stage(run_dir: Path, table: PublishedTable) -> None:
    write_comparisons(
        run_dir / "eval",
        run_dir / "compare",
        against=lambda _label: table.row("v1.2-jazzy"),
        table=table,
        command="gpt4allj-kit reproduce --profile smoke",
    )


def test_report_reads_the_compare_stages_results(
    run_dir: Path, table: PublishedTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    _compare_stage(run_dir, table)
    stored = run_dir / "compare" / "final.json"
    data = json.loads(stored.read_text())
    next(c for c in data["cells"] if c["label"] == "BoolQ")["verdict"] = "differs"
    stored.write_text(json.dumps(data))

    def compare_again(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the report compared again instead of reading compare/")

    monkeypatch.setattr(report_build, "compare_path", compare_again)
    result = build_report(run_dir, command="test")
    # Comparing final's numbers again would say reproduced; the report says what compare/ says.
    assert not result.compared_here
    assert [c.measured.label for c in result.comparisons] == ["epoch_1", "final"]
    assert result.comparisons[1].differing == ["BoolQ"]
    md, page = result.markdown.read_text(), result.html.read_text()
    assert "| BoolQ | acc | 74.8 | 74.80 | +0.00 | 1.10 | — | differs |" in md
    assert "| final | GPT4All-J v1.2-jazzy | 6/7 |" in md
    assert "1 of 7 cells differ (BoolQ); average reproduced" in md and "1 of 7 cells differ (BoolQ)" in page
    assert "gpt4allj-kit reproduce --profile smoke" in md  # the compare stage's manifest is shown
    manifest = json.loads(result.manifest.read_text())
    assert manifest["comparisons_from"] == "compare/"
    assert "compare/final.json" in manifest["inputs"] and "eval/final/results.json" not in manifest["inputs"]
    assert manifest["comparisons"][1] == {
        "label": "final", "against": "GPT4All-J v1.2-jazzy", "reproduced": False, "differing": ["BoolQ"]
    }  # fmt: skip


def test_report_names_evals_the_compare_stage_has_not_compared(run_dir: Path, table: PublishedTable) -> None:
    _compare_stage(run_dir, table)
    write_eval(run_dir / "eval" / "epoch_2", table)
    (run_dir / "compare" / "epoch_1.json").write_text("{torn")
    result = build_report(run_dir, command="test")
    assert [c.measured.label for c in result.comparisons] == ["final"]
    assert any("eval 'epoch_2' has no comparison in compare/" in m for m in result.missing)
    assert any(m.startswith("compare/epoch_1.json cannot be read") for m in result.missing)


def test_against_cannot_overrule_the_compare_stage(run_dir: Path, table: PublishedTable) -> None:
    _compare_stage(run_dir, table)
    with pytest.raises(ConfigError, match=r"compare holds the comparisons \(against GPT4All-J v1.2-jazzy\)"):
        build_report(run_dir, command="test", against="v1.3-groovy")
    assert not (run_dir / "report").exists()
    assert build_report(run_dir, command="test", against="v1.2-jazzy").comparisons


def test_bare_eval_dir_is_compared_with_against(tmp_path: Path, table: PublishedTable) -> None:
    write_eval(tmp_path / "evals" / "final", table)
    result = build_report(tmp_path / "evals", command="test", against="v1.3-groovy")
    assert result.compared_here and [c.against for c in result.comparisons] == ["GPT4All-J v1.3-groovy"]
    manifest = json.loads(result.manifest.read_text())
    assert manifest["comparisons_from"].startswith("compared here")
    assert "final/results.json" in manifest["inputs"]


def test_html_escapes_what_it_shows(tmp_path: Path, table: PublishedTable) -> None:
    write_eval(tmp_path / "evals" / "<script>odd", table)
    result = build_report(tmp_path / "evals", command="test")
    page = result.html.read_text()
    assert "<script" not in page and "ours: &lt;script&gt;odd" in page
    assert "ours: <script>odd" in result.markdown.read_text()  # Markdown shows the label as it is


def test_report_shows_the_band_of_the_base_row_apart(tmp_path: Path, table: PublishedTable) -> None:
    """A base evaluation is compared with the GPT-J row, which has a documented evaluation-stack band: the
    report shows it beside the verdict; the jazzy comparison says it has none."""
    evals = tmp_path / "evals"
    write_eval(evals / "final", table)
    base = evals / "base"
    write_eval(base, table)
    gptj = table.row("base").values
    results = {
        c.task: {"alias": c.task, f"{c.metric},none": gptj[c.key] / 100, f"{c.metric}_stderr,none": 0.011}
        for c in table.columns
    }
    (base / "results.json").write_text(json.dumps({"results": results, "lm_eval_version": "0.4.13"}))
    summary = {"model": "EleutherAI/gpt-j-6B", "revision": "main", "label": "base"}
    (base / "summary.json").write_text(json.dumps(summary))
    result = build_report(evals, command="test")
    assert {c.measured.label: c.against for c in result.comparisons} == {
        "base": "GPT-J 6.7B", "final": "GPT4All-J v1.2-jazzy"
    }  # fmt: skip
    md, page = result.markdown.read_text(), result.html.read_text()
    assert "| Avg ours | Avg report | Δ Avg ± stderr | With band |" in md
    assert re.search(r"\| base \| GPT-J 6\.7B \| 7/7 \|[^\n]*\| 7/7 \|", md)
    assert re.search(r"\| final \| GPT4All-J v1\.2-jazzy \| 7/7 \|[^\n]*\| no documented band \|", md)
    for text in (md, page):
        assert "with the evaluation-stack band of GPT-J 6.7B: all 7 cells reproduced" in text
        assert "no documented band for GPT4All-J v1.2-jazzy" in text
        # The published table says which row has a band, and where every row comes from.
        assert "Evaluation-stack bands (shown apart from the verdict; other rows have none): GPT-J" in text
        assert "Rows: all 12 from [gpt4all-j-model-card]" in text
        assert "[dolly-v2-model-card]" in text and "commit unknown" in text
