"""Writing an evaluation: metrics.json, per_image.parquet, DVC plot data, grids and report.md.

Everything is byte-stable for the same inputs: JSON with sorted keys and values rounded to 4
decimals, CSV with fixed column order, PNGs from `encode_png`, no timestamps or temporary paths.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline.io.images import encode_png
from pipeline.report import markdown_table

if TYPE_CHECKING:
    from pipeline.config import EvaluateConfig
    from pipeline.evaluate.run import Run

METRICS_JSON = "metrics.json"
PER_IMAGE = "per_image.parquet"
PLOT_PER_IMAGE = "plots/per_image_psnr.csv"
PLOT_BY_MODEL = "plots/by_model.csv"
REPORT = "report.md"
COLUMNS = {"psnr_rgb": "PSNR RGB (dB)", "psnr_y": "PSNR Y (dB)", "ssim_rgb": "SSIM RGB", "ssim_y": "SSIM Y",
           "niqe": "NIQE ↓", "lpips": "LPIPS ↓", "realworld_niqe": "real-world NIQE ↓"}


def metrics_json(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """The canonical text of metrics.json: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_all(out_dir: Path, *, metrics: Mapping[str, Mapping[str, float]], per_image: pd.DataFrame,
              run: Run, labels: Mapping[str, str], cfg: EvaluateConfig) -> None:
    """Write every output of an evaluation into `out_dir` (created if needed)."""
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    (out_dir / "grids").mkdir(exist_ok=True)
    (out_dir / METRICS_JSON).write_text(metrics_json(metrics))
    per_image.to_parquet(out_dir / PER_IMAGE, index=False, engine="pyarrow", compression="zstd")
    _plot_data(out_dir, metrics, per_image, run.requested)
    for name, (img, _) in sorted(run.grids.items()):
        (out_dir / "grids" / f"{name}.png").write_bytes(encode_png(img))
    (out_dir / REPORT).write_text(report_md(metrics, run, labels, cfg))


def _plot_data(out_dir: Path, metrics: Mapping[str, Mapping[str, float]], per_image: pd.DataFrame,
               models: list[str]) -> None:
    """plots/per_image_psnr.csv: one row per val tile (`n`, `key`) and one PSNR-Y column per requested
    model (blank for a skipped one, so a fixed dvc.yaml plot finds its fields), so DVC draws a line per
    model; plots/by_model.csv: model, psnr_y, ssim_y, niqe (blank if absent), evaluated models only."""
    val = per_image[per_image["set"] == "val"]
    wide = val.pivot(index="key", columns="model", values="psnr_y").reindex(columns=models).round(4)
    wide = wide.reset_index()
    wide.insert(0, "n", range(len(wide)))
    wide.columns.name = None
    wide.to_csv(out_dir / PLOT_PER_IMAGE, index=False, lineterminator="\n")
    by_model = pd.DataFrame([{"model": m, **{k: v.get(k, math.nan) for k in ("psnr_y", "ssim_y", "niqe")}}
                             for m, v in metrics.items()], columns=["model", "psnr_y", "ssim_y", "niqe"])
    by_model.to_csv(out_dir / PLOT_BY_MODEL, index=False, lineterminator="\n")


def report_md(metrics: Mapping[str, Mapping[str, float]], run: Run, labels: Mapping[str, str],
              cfg: EvaluateConfig) -> str:
    """The human-readable report: the table, how it was measured, what was skipped, the grids."""
    lines = ["# Evaluation", "", metrics_table(metrics, labels), ""]
    lines += [
        "## How", "",
        f"- {run.n_val} val LR tiles, whole (not patches), each against its HR tile; scale x{run.scale}.",
        f"- PSNR/SSIM on RGB and on Y (BT.601, as MATLAB's `rgb2ycbcr`), {run.crop} px cropped from each "
        "border (BasicSR convention); SSIM is BasicSR's Gaussian-window SSIM, averaged over channels for RGB.",
        f"- NIQE (lower is more natural) of the SR output, {run.crop} px border cropped; LPIPS (AlexNet, lower is "
        "closer to HR) when its weights are on disk.",
        f"- Bicubic baseline: LR enlarged x{run.scale} with OpenCV `INTER_CUBIC` (a = -0.75) on uint8, so "
        "rounded and clipped to [0, 255].",
        f"- Generators: the weights named per model below (`evaluate.weights`); device {run.device}"
        + (f", tiles of {cfg.tile} LR px" if cfg.tile else "") + ".",
    ]
    if cfg.realworld_dir:
        lines.append(f"- Real-world NIQE: mean NIQE of each method's output on the photos in `{cfg.realworld_dir}` "
                     "(no HR exists for them).")
    for name, value in run.reference.items():
        if math.isfinite(value):
            lines.append(f"- Reference: NIQE of the {name} themselves: {value:.4f}.")
    if run.models:
        lines += ["", "## Models", ""] + [f"- `{n}` ({labels.get(n, n)}): {d}" for n, d in run.models.items()]
    failed = [_failure_line(metric, model, items) for (metric, model), items in run.failures.items()]
    if run.skipped or failed:
        lines += ["", "## Skipped", ""] + [f"- {s}" for s in run.skipped + failed]
    for name, (_, keys) in sorted(run.grids.items(), key=lambda kv: kv[0] != "val"):
        title = "Val tiles" if name == "val" else "Real-world photos"
        lines += ["", f"## {title}", "", f"![{name} grid](grids/{name}.png)", "",
                  f"Crops of {cfg.grid_crop} HR px at the most textured place, enlarged (nearest). Rows: "
                  + ", ".join(f"`{k}`" for k in keys) + "."]
    return "\n".join(lines) + "\n"


def _failure_line(metric: str, model: str, items: list[tuple[str, str]], shown: int = 5) -> str:
    keys = ", ".join(k for k, _ in items[:shown]) + (", ..." if len(items) > shown else "")
    return (f"`{metric}` of {model}: undefined on {len(items)} image(s) ({keys}), left out of the mean; "
            f"first reason: {items[0][1]}")


def metrics_table(metrics: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str] | None = None) -> str:
    """Markdown table of metrics.json, one row per model, columns only for metrics some model has."""
    labels = labels or {}
    present = [c for c in COLUMNS if any(c in v for v in metrics.values())]
    order = sorted(metrics, key=lambda m: (list(labels).index(m) if m in labels else len(labels), m))
    rows = [{"model": labels.get(m, m), **{COLUMNS[c]: metrics[m].get(c, math.nan) for c in present}}
            for m in order]
    df = pd.DataFrame(rows, columns=["model", *(COLUMNS[c] for c in present)])
    text = markdown_table(df, floatfmt=".4f")
    return text.replace("| nan ", "| – ")


def summary(eval_dir: str | Path, labels: Mapping[str, str] | None = None) -> str:
    """A terminal summary of an existing evaluation: the metrics table and where the grids and report are.

    Raises:
        FileNotFoundError: no metrics.json in `eval_dir` (the evaluate stage has not run).
    """
    eval_dir = Path(eval_dir)
    path = eval_dir / METRICS_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the evaluate stage first (dvc repro evaluate)")
    metrics = json.loads(path.read_text())
    out = [f"Evaluation ({path}):", "", metrics_table(metrics, labels), ""]
    grids = sorted((eval_dir / "grids").glob("*.png"))
    if grids:
        out.append("Image grids: " + ", ".join(str(g) for g in grids))
    out.append(f"Report: {eval_dir / REPORT}")
    return "\n".join(out)
