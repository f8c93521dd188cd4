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

from .recipe import BASE_COLUMNS, BSRGAN_COLUMNS, STRING_COLUMNS

HISTOGRAMS = "recipe_histograms.png"
EXAMPLES = "examples.png"


def plot_histograms(table: pd.DataFrame, path: Path) -> None:
    """One small panel per recipe column present in `table`: a histogram for numbers (NaN left
    out, count of NaN in the title), a bar chart of frequencies for names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in BASE_COLUMNS + BSRGAN_COLUMNS if c in table.columns and c != "bsrgan_order"]
    ncols = 6
    nrows = max(1, math.ceil(len(cols) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.2 * nrows), squeeze=False)
    for ax, col in zip(axes.ravel(), cols):
        values = table[col]
        if col in STRING_COLUMNS:
            counts = _labels(values).value_counts().sort_index()
            ax.bar(range(len(counts)), counts.values, color="tab:blue")
            ax.set_xticks(range(len(counts)), counts.index, rotation=30, ha="right", fontsize=6)
        else:
            numbers = pd.to_numeric(values, errors="coerce")
            present = numbers.dropna()
            if len(present):  # one filled outline, not 30 bar patches: a third of the drawing time
                ax.hist(present, bins=30, color="tab:orange", histtype="stepfilled")
            col = f"{col} (n/a {int(numbers.isna().sum())})"
        ax.set_title(col, fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(cols):]:
        ax.axis("off")
    # fixed margins sized for the 6-7 pt labels: tight_layout measured every label (~2 s)
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.08 / nrows ** 0.5, top=1 - 0.06 / nrows ** 0.5,
                        wspace=0.3, hspace=0.9)
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)


def _labels(values: pd.Series) -> pd.Series:
    """A string column as labels, 'n/a' where absent (a column absent everywhere is float NaN, and
    pandas will refuse to fill float64 with a string)."""
    return values.astype(object).where(values.notna(), "n/a").astype(str)


def _frequencies(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for col in BASE_COLUMNS + BSRGAN_COLUMNS:
        if col in STRING_COLUMNS and col in table.columns and col != "bsrgan_order":
            shares = _labels(table[col]).value_counts(normalize=True).sort_index()
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


def write_degrade_report(out: Path, index: pd.DataFrame, skipped: Sequence[tuple[str, str]],
                         examples: Sequence[tuple[bytes, bytes, str]], *, stats: dict, preset: str, seed: int,
                         scale: int) -> None:
    """report.md + recipe_histograms.png + examples.png in `out`."""
    plot_histograms(index, out / HISTOGRAMS)
    example_sheet(examples, out / EXAMPLES)
    lines = [
        "# degrade report", "",
        f"- preset: {preset}, scale: {scale}, seed: {seed}, backend: {stats['backend']}",
        f"- LR samples: {stats['samples']} in {stats['shards']} shards; skipped: {stats['skipped']} (see skipped.csv)",
    ]
    if len(index):
        lines.append(f"- LR sizes: {index['height'].min()}–{index['height'].max()} px high, "
                     f"{index['width'].min()}–{index['width'].max()} px wide")
    lines += ["", "## Skipped", "",
              markdown_table(pd.DataFrame(list(skipped)[:50], columns=["key", "reason"])) if skipped else "none",
              "", "## Drawn parameters", "", f"![histograms]({HISTOGRAMS})", ""]
    if len(index):
        lines += [markdown_table(_frequencies(index)), ""]
    lines += ["## Examples (HR | LR, nearest-upscaled)", "", f"![examples]({EXAMPLES})", "",
              " ".join(f"`{key}`" for _, _, key in examples), ""]
    (out / "report.md").write_text("\n".join(lines))


def write_recipes_report(out: Path, table: pd.DataFrame, *, preset: str, seed: int, scale: int) -> None:
    plot_histograms(table, out / HISTOGRAMS)
    numeric = [c for c in table.columns if c != "key" and c not in STRING_COLUMNS]
    summary = table[numeric].describe().T[["count", "mean", "min", "max"]].reset_index(names="column")
    lines = ["# recipes report", "", f"- preset: {preset}, scale: {scale}, seed: {seed}, recipes: {len(table)}",
             "", f"![histograms]({HISTOGRAMS})", "", "## Names", "", markdown_table(_frequencies(table)), "",
             "## Numbers (NaN excluded from count)", "", markdown_table(summary), ""]
    (out / "report.md").write_text("\n".join(lines))
