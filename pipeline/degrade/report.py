"""Human-readable reports of the degrade stage: parameter histograms and HR/LR contact sheets."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.io.images import decode_png, encode_png
from pipeline.report import grid, markdown_table

from .panels import Panel, Pieces, Summary, is_names, summarize
from .recipe import STRING_COLUMNS

HISTOGRAMS = "recipe_histograms.png"
EXAMPLES = "examples.png"


def plot_histograms(table: pd.DataFrame, path: Path) -> None:
    """`plot_panels` of a table in memory."""
    plot_panels(summarize(lambda: [table]).panels, path)


def plot_panels(panels: Sequence[Panel], path: Path) -> None:
    """One small panel per recipe column with a value (`summarize`): a histogram for numbers, its x
    axis labelled with the unit as stored, a bar chart of frequencies for names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = 6
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.3 * nrows), squeeze=False)
    for ax, panel in zip(axes.ravel(), panels):
        if panel.labels is None:
            # the counts drawn on their edges, as `ax.hist(values, bins=edges)` draws them; one filled
            # outline, not 30 bar patches: a third of the drawing time
            ax.hist(panel.edges[:-1], bins=panel.edges, weights=panel.counts, color="tab:orange",
                    histtype="stepfilled")
            if panel.log:
                ax.set_xscale("log")
            ax.set_xlabel(panel.xlabel, fontsize=6, labelpad=1)
        else:
            counts = panel.labels
            ax.bar(range(len(counts)), counts.values, color="tab:blue")
            ax.set_xticks(range(len(counts)), counts.index, rotation=30, ha="right", fontsize=6)
        ax.set_ylabel("count", fontsize=6, labelpad=1)
        ax.set_title(panel.title, fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    # fixed margins sized for the 6-7 pt labels: tight_layout measured every label (~2 s)
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.1 / nrows ** 0.5, top=1 - 0.06 / nrows ** 0.5,
                        wspace=0.32, hspace=1.0)
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)


def _frequencies(summary: Summary) -> pd.DataFrame:
    rows = []
    for col, counts in summary.names.items():
        shares = counts / counts.sum()
        rows.append({"column": col, "shares": ", ".join(f"{k} {v:.2f}" for k, v in shares.items())})
    return pd.DataFrame(rows)


def example_sheet(examples: Sequence[tuple[bytes, bytes, str]], path: Path, cell: int = 192) -> None:
    """HR | LR (nearest-upscaled to the HR size) pairs, two pairs per row."""
    pairs = []
    for hr_png, lr_png, _ in examples:
        hr, lr = decode_png(hr_png), decode_png(lr_png)
        pairs += [hr, cv2.resize(lr, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_NEAREST)]
    if not pairs:
        pairs = [np.full((cell, cell, 3), 255, np.uint8)]
    rows = [pairs[i:i + 4] for i in range(0, len(pairs), 4)]
    Path(path).write_bytes(encode_png(grid(rows, cell=cell)))


def write_degrade_report(out: Path, index: Pieces, skipped: Sequence[tuple[str, str]],
                         examples: Sequence[tuple[bytes, bytes, str]], *, stats: dict, preset: str, seed: int,
                         scale: int) -> None:
    """report.md + recipe_histograms.png + examples.png in `out`. `index` gives the LR index in
    pieces, each time it is called (`ShardSet.iter_frames(report_columns(...))`): it is read twice,
    and never held whole."""
    summary = summarize(index, extra=("height", "width"))
    plot_panels(summary.panels, out / HISTOGRAMS)
    example_sheet(examples, out / EXAMPLES)
    lines = [
        "# degrade report", "",
        f"- preset: {preset}, scale: {scale}, seed: {seed}, backend: {stats['backend']}",
        f"- LR samples: {stats['samples']} in {stats['shards']} shards; skipped: {stats['skipped']} (see skipped.csv)",
    ]
    if summary.rows:
        (h0, h1), (w0, w1) = summary.ranges["height"], summary.ranges["width"]
        lines.append(f"- LR sizes: {h0}–{h1} px high, {w0}–{w1} px wide")
    lines += ["", "## Skipped", "",
              markdown_table(pd.DataFrame(list(skipped)[:50], columns=["key", "reason"])) if skipped else "none",
              "", "## Drawn parameters", "", f"![histograms]({HISTOGRAMS})", ""]
    if summary.rows:
        lines += [markdown_table(_frequencies(summary)), ""]
    lines += ["## Examples (HR | LR, nearest-upscaled)", "", f"![examples]({EXAMPLES})", "",
              " ".join(f"`{key}`" for _, _, key in examples), ""]
    (out / "report.md").write_text("\n".join(lines))


def write_recipes_report(out: Path, table: pd.DataFrame, *, preset: str, seed: int, scale: int) -> None:
    panels = summarize(lambda: [table])
    plot_panels(panels.panels, out / HISTOGRAMS)
    numeric = [c for c in table.columns if c != "key" and c not in STRING_COLUMNS and not is_names(table[c])]
    summary = table[numeric].describe().T[["count", "mean", "min", "max"]].reset_index(names="column")
    lines = ["# recipes report", "", f"- preset: {preset}, scale: {scale}, seed: {seed}, recipes: {len(table)}",
             "", f"![histograms]({HISTOGRAMS})", "", "## Names", "", markdown_table(_frequencies(panels)), "",
             "## Numbers (NaN excluded from count)", "", markdown_table(summary), ""]
    (out / "report.md").write_text("\n".join(lines))
