"""The report's PNG charts (matplotlib's object API: no global pyplot state, no display needed)."""

from __future__ import annotations

import io
from typing import Any

from gpt4allj_kit.compare.comparison import Comparison
from gpt4allj_kit.report.contents import Metrics


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
        title += "\n(not comparable with the published numbers: see the notes)"
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
