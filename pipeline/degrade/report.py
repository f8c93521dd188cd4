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


# x-axis label of a numeric recipe column, by the end of its name: the unit as stored (DESIGN §4)
_UNITS = (
    ("_size", "kernel size (px)"), ("_sigma_x", "σx (px)"), ("_sigma_y", "σy (px)"),
    ("_theta", "rotation θ (radians)"), ("_beta", "shape β (no unit)"), ("_omega", "cut-off ω (radians/px)"),
    ("_scale", "scale factor (×)"), ("_gray", "gray noise (0 colour, 1 gray)"),
    ("_quality", "JPEG quality (0–100)"), ("_shot", "shot: variance per unit linear signal"),
    ("camera_read", "read: variance, linear signal in [0, 1]"), ("_generations", "re-encodings"),
    ("codec_strength", "place in the codec's CRF range (0 finest)"), ("_frames", "clip length (frames)"),
    ("_motion", "most shift per frame (px)"),
)
# noise{s}_level holds σ for gaussian noise and a scale for poisson noise: one panel for each
_LEVELS = {"gaussian": "σ (grey levels of 255)", "poisson": "Poisson scale (no unit)"}
_LOG_X = ("_shot", "camera_read")  # column endings drawn log-uniformly: log bins show the draw as drawn


def _unit(col: str) -> str:
    return next((label for end, label in _UNITS if col.endswith(end)), "")


def user_op_columns(table: pd.DataFrame) -> list[str]:
    """The user ops' `<name>_<param>` columns of an index or recipes table: `recipe_columns` puts
    them after every built-in column, and neither table adds a column after those."""
    cols = list(table.columns)
    known = [i for i, c in enumerate(cols) if c in BASE_COLUMNS or c in BSRGAN_COLUMNS]
    return cols[known[-1] + 1:] if known else []


def _is_names(values: pd.Series) -> bool:
    """A user op's param drawn from a `choice` of names (strings), not numbers."""
    return not pd.api.types.is_numeric_dtype(values) and bool(values.dropna().map(lambda v: isinstance(v, str)).any())


def histogram_panels(table: pd.DataFrame) -> list[tuple[str, pd.Series, str]]:
    """(title, values, x label) for each recipe column of `table` that has a value somewhere, user
    ops' columns last: a column absent for the preset (every value NaN) gets no panel. String columns
    keep 'n/a' among their labels; numeric values come without NaN, and the title counts them."""
    panels = []
    builtin = [c for c in BASE_COLUMNS + BSRGAN_COLUMNS if c in table.columns and c != "bsrgan_order"]
    for col in builtin + user_op_columns(table):
        values = table[col]
        if values.notna().sum() == 0:
            continue
        if col in STRING_COLUMNS or _is_names(values):
            panels.append((col, _labels(values), ""))
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        kind_col = col.replace("_level", "_kind")
        if col.endswith("_level") and kind_col in table.columns:
            for kind, label in _LEVELS.items():
                part = numbers[table[kind_col] == kind].dropna()
                if len(part):
                    panels.append((f"{col}, {kind}", part, label))
            continue
        missing = int(numbers.isna().sum())
        panels.append((col + (f" ({missing} n/a)" if missing else ""), numbers.dropna(), _unit(col)))
    return panels


def plot_histograms(table: pd.DataFrame, path: Path) -> None:
    """One small panel per recipe column with a value in `table` (`histogram_panels`): a histogram
    for numbers, its x axis labelled with the unit as stored, a bar chart of frequencies for names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = histogram_panels(table)
    ncols = 6
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.3 * nrows), squeeze=False)
    for ax, (title, values, xlabel) in zip(axes.ravel(), panels):
        if xlabel:
            log = title.split(" ")[0].rstrip(",").endswith(_LOG_X) and (values > 0).all()
            bins = np.geomspace(values.min(), values.max(), 31) if log and values.max() > values.min() else 30
            # one filled outline, not 30 bar patches: a third of the drawing time
            ax.hist(values, bins=bins, color="tab:orange", histtype="stepfilled")
            if log:
                ax.set_xscale("log")
            ax.set_xlabel(xlabel, fontsize=6, labelpad=1)
        else:
            counts = values.value_counts().sort_index()
            ax.bar(range(len(counts)), counts.values, color="tab:blue")
            ax.set_xticks(range(len(counts)), counts.index, rotation=30, ha="right", fontsize=6)
        ax.set_ylabel("count", fontsize=6, labelpad=1)
        ax.set_title(title, fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    # fixed margins sized for the 6-7 pt labels: tight_layout measured every label (~2 s)
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.1 / nrows ** 0.5, top=1 - 0.06 / nrows ** 0.5,
                        wspace=0.32, hspace=1.0)
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)


def _labels(values: pd.Series) -> pd.Series:
    """A string column as labels, 'n/a' where absent (a column absent everywhere is float NaN, and
    pandas will refuse to fill float64 with a string)."""
    return values.astype(object).where(values.notna(), "n/a").astype(str)


def _frequencies(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for col in list(BASE_COLUMNS + BSRGAN_COLUMNS) + user_op_columns(table):
        if col in table.columns and col != "bsrgan_order" and (col in STRING_COLUMNS or _is_names(table[col])):
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
    numeric = [c for c in table.columns if c != "key" and c not in STRING_COLUMNS and not _is_names(table[c])]
    summary = table[numeric].describe().T[["count", "mean", "min", "max"]].reset_index(names="column")
    lines = ["# recipes report", "", f"- preset: {preset}, scale: {scale}, seed: {seed}, recipes: {len(table)}",
             "", f"![histograms]({HISTOGRAMS})", "", "## Names", "", markdown_table(_frequencies(table)), "",
             "## Numbers (NaN excluded from count)", "", markdown_table(summary), ""]
    (out / "report.md").write_text("\n".join(lines))
