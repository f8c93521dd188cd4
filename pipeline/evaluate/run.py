"""`evaluate`: bicubic and each trained generator on the full val tiles, and optionally on real photos.

For every method and val tile: PSNR and SSIM on RGB and on Y (BT.601, MATLAB's convention) with
`crop_border` pixels cut from each side (default: the scale, as BasicSR), NIQE of the SR output (same
crop) and LPIPS (AlexNet) against HR when its weights are on disk. A metric that cannot run (no NIQE
pristine model, no LPIPS weights) is left out, with its reason in the report; so is a model whose
checkpoint does not exist yet (evaluate works after train_net alone).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from pipeline.config import EvaluateConfig
from pipeline.evaluate import grids, outputs
from pipeline.evaluate.pairs import grid_picks, iter_pairs, val_pairs
from pipeline.evaluate.checkpoints import Upscaler, describe, load_upscaler
from pipeline.infer import IMAGE_SUFFIXES, resolve_device
from pipeline.io.images import ImageError, read_image
from pipeline.metrics import lpips, lpips_available, niqe, niqe_available, psnr, ssim

LABELS = {"bicubic": "Bicubic", "net": "Real-ESRNet", "gan": "Real-ESRGAN"}
METRICS = ("psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y", "niqe", "lpips")
LPIPS_NET = "alex"


@dataclass
class Run:
    """What one evaluation found, for the outputs: per-image records, notes and grids."""
    scale: int
    crop: int
    device: str
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)        # one line per skipped model/metric/photo
    # (metric, model) → [(key, why)] for images where NIQE/LPIPS is undefined (left out of the mean)
    failures: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)    # name → description (file, architecture)
    reference: dict[str, float] = field(default_factory=dict)  # NIQE of HR tiles / real-world inputs
    grids: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)  # name → (png, row keys)
    n_val: int = 0
    requested: list[str] = field(default_factory=list)  # bicubic + every model asked for, found or not


def bicubic(scale: int) -> Upscaler:
    """LR → ×scale with OpenCV's bicubic (INTER_CUBIC, a = -0.75) on uint8, so clipped to [0, 255]."""
    def up(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
    return up


def label(name: str) -> str:
    return LABELS.get(name, name)


def evaluate(hr_dir: str | Path, lr_dir: str | Path, models: Mapping[str, str | Path], out_dir: str | Path,
             cfg: EvaluateConfig, *, scale: int, seed: int) -> dict[str, dict[str, float]]:
    """Score bicubic and `models` (name → generator checkpoint) on the val split; write `out_dir`.

    hr_dir, lr_dir: the HR tile and LR shard sets. out_dir: a fresh directory (wrap it in
    `atomic_dir`); it receives metrics.json, per_image.parquet, plots/per_image_psnr.csv,
    plots/by_model.csv, grids/val.png (and grids/realworld.png) and report.md.
    Returns the content of metrics.json: {model: {metric: value}}.

    Raises:
        FileNotFoundError: a missing shard set or `cfg.realworld_dir`.
        ValueError: no val rows, a checkpoint that is not a generator of `scale`, a model named
            'bicubic', or an HR tile smaller than scale × its LR tile.
    """
    if "bicubic" in models:
        raise ValueError("models: the name 'bicubic' is reserved for the baseline")
    crop = scale if cfg.crop_border < 0 else cfg.crop_border
    device = resolve_device(cfg.device)
    run = Run(scale=scale, crop=crop, device=str(device), requested=["bicubic", *models])
    upscalers: dict[str, Upscaler] = {"bicubic": bicubic(scale)}
    for name, path in models.items():
        path = Path(path)
        if not path.is_file():
            run.skipped.append(f"model `{name}` ({label(name)}): {path} not found (has its training stage run?)")
            continue
        upscalers[name], info = load_upscaler(path, device, scale=scale, weights=cfg.weights, tile=cfg.tile)
        run.models[name] = describe(path, info)

    niqe_params = cfg.niqe_params or None
    niqe_ok, why = niqe_available(niqe_params)
    if not niqe_ok:
        run.skipped.append(f"metric `niqe`: {why}")
    lpips_dir = cfg.lpips_weights or None
    lpips_ok, why = lpips_available(lpips_dir, net=LPIPS_NET)
    if not lpips_ok:
        run.skipped.append(f"metric `lpips`: {why}")
    scorer = Scorer(crop=crop, niqe_params=niqe_params if niqe_ok else False,
                     lpips_dir=lpips_dir if lpips_ok else False)

    _val(Path(hr_dir), Path(lr_dir), upscalers, scorer, run, cfg, seed)
    if cfg.realworld_dir:
        _realworld(Path(cfg.realworld_dir), upscalers, scorer, run, cfg.grid_crop, cfg.grid_images)

    per_image = pd.DataFrame(run.records, columns=["set", "key", "model", *METRICS])
    metrics = aggregate(per_image, order=list(upscalers))
    outputs.write_all(Path(out_dir), metrics=metrics, per_image=per_image, run=run, labels=LABELS, cfg=cfg)
    return metrics


def _val(hr_dir: Path, lr_dir: Path, upscalers: Mapping[str, Upscaler], scorer: Scorer, run: Run,
         cfg: EvaluateConfig, seed: int) -> None:
    """Every method on every val pair: full metrics, the HR tiles' own NIQE, and the val grid."""
    rows = val_pairs(hr_dir, lr_dir, max_images=cfg.max_images, seed=seed)
    run.n_val = len(rows)
    picks = grid_picks(hr_dir, rows, cfg.grid_images)
    grid_rows, grid_keys, hr_niqe = [], [], []
    for i, pair in enumerate(iter_pairs(hr_dir, lr_dir, rows, run.scale)):
        cells = _GridRow(pair.lr, run.scale, cfg.grid_crop, anchor=pair.hr) if i in picks else None
        for name, up in upscalers.items():
            sr = up(pair.lr)
            scores = scorer.full(sr, pair.hr, run, name, pair.key)
            run.records.append(dict(set="val", key=pair.key, model=name, **scores))
            if cells is not None:
                cells.add(sr)
        hr_niqe.append(scorer.niqe(pair.hr, run, "hr", pair.key))
        if cells is not None:
            cells.add(pair.hr)
            grid_rows.append(cells.row)
            grid_keys.append(pair.key)
    labels = ["LR (nearest)"] + [label(n) for n in upscalers] + ["HR"]
    run.grids["val"] = (grids.comparison_grid(grid_rows, labels), grid_keys)
    run.reference["HR tiles"] = _nanmean(hr_niqe)


class Scorer:
    """Per-image metrics; NIQE/LPIPS per-image failures become NaN plus a note."""

    def __init__(self, *, crop: int, niqe_params, lpips_dir) -> None:
        self.crop, self.niqe_params, self.lpips_dir = crop, niqe_params, lpips_dir

    def full(self, sr: np.ndarray, hr: np.ndarray, run: Run, model: str, key: str) -> dict[str, float]:
        c = self.crop
        out = dict(psnr_rgb=psnr(sr, hr, crop_border=c), psnr_y=psnr(sr, hr, crop_border=c, y_channel=True),
                   ssim_rgb=ssim(sr, hr, crop_border=c), ssim_y=ssim(sr, hr, crop_border=c, y_channel=True),
                   niqe=self.niqe(sr, run, model, key), lpips=math.nan)
        for name in ("psnr_rgb", "psnr_y"):
            if not math.isfinite(out[name]):  # identical to HR: a mean with inf in it says nothing
                why = "identical to HR after the crop (infinite PSNR)"
                run.failures.setdefault((name, model), []).append((key, why))
                out[name] = math.nan
        if self.lpips_dir is not False:
            try:
                out["lpips"] = lpips(sr, hr, net=LPIPS_NET, weights_dir=self.lpips_dir)
            except ValueError as err:
                run.failures.setdefault(("lpips", model), []).append((key, str(err)))
        return out

    def niqe(self, img: np.ndarray, run: Run, model: str, key: str) -> float:
        if self.niqe_params is False:
            return math.nan
        try:
            return niqe(img, crop_border=self.crop, params=self.niqe_params)
        except ValueError as err:
            run.failures.setdefault(("niqe", model), []).append((key, str(err)))
            return math.nan


class _GridRow:
    """The crops of one grid row, at one textured place chosen on `anchor` (HR, or the LR itself)."""

    def __init__(self, lr: np.ndarray, scale: int, grid_crop: int, anchor: np.ndarray | None = None) -> None:
        sr_shape = (lr.shape[0] * scale, lr.shape[1] * scale)
        self.side = grids.crop_side(grid_crop, scale, sr_shape)
        if anchor is not None:
            self.y, self.x = grids.textured_window(anchor, self.side, step=scale)
        else:
            y, x = grids.textured_window(lr, self.side // scale)
            self.y, self.x = y * scale, x * scale
        self.factor = grids.enlarge_factor(self.side)
        s, ly, lx = self.side // scale, self.y // scale, self.x // scale
        self.row = [grids.enlarge(lr[ly:ly + s, lx:lx + s], scale * self.factor)]

    def add(self, img: np.ndarray) -> None:
        self.row.append(grids.enlarge(img[self.y:self.y + self.side, self.x:self.x + self.side], self.factor))


def _realworld(folder: Path, upscalers: Mapping[str, Upscaler], scorer: Scorer, run: Run,
               grid_crop: int, grid_images: int) -> None:
    """NIQE of each method's output on real low-quality photos (no HR exists), and their grid."""
    if not folder.is_dir():
        raise FileNotFoundError(f"evaluate.realworld_dir: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if scorer.niqe_params is False:
        run.skipped.append("`realworld_niqe`: NIQE is unavailable (see above)")
    grid_rows, grid_keys, inputs = [], [], []
    for path in files:
        try:
            img = read_image(path)
        except (ImageError, OSError) as err:
            run.skipped.append(f"real-world photo {path.name}: {err}")
            continue
        key = path.name
        cells = _GridRow(img, run.scale, grid_crop) if len(grid_rows) < grid_images else None
        for name, up in upscalers.items():
            sr = up(img)
            run.records.append(dict(set="realworld", key=key, model=name, psnr_rgb=math.nan, psnr_y=math.nan,
                                    ssim_rgb=math.nan, ssim_y=math.nan, niqe=scorer.niqe(sr, run, name, key),
                                    lpips=math.nan))
            if cells is not None:
                cells.add(sr)
        inputs.append(scorer.niqe(img, run, "input", key))
        if cells is not None:
            grid_rows.append(cells.row)
            grid_keys.append(key)
    if grid_rows:
        labels = ["Input (nearest)"] + [label(n) for n in upscalers]
        run.grids["realworld"] = (grids.comparison_grid(grid_rows, labels), grid_keys)
    run.reference["real-world inputs"] = _nanmean(inputs)


def _nanmean(values) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan


def aggregate(per_image: pd.DataFrame, order: list[str]) -> dict[str, dict[str, float]]:
    """Mean of each metric per model over the val rows (NaN ignored; a metric with no value at all is
    left out) plus `realworld_niqe` from the real-world rows; values rounded to 4 decimals."""
    out: dict[str, dict[str, float]] = {}
    for model in order:
        rows = per_image[per_image["model"] == model]
        val, real = rows[rows["set"] == "val"], rows[rows["set"] == "realworld"]
        entry = {m: _nanmean(val[m]) for m in METRICS}
        entry["realworld_niqe"] = _nanmean(real["niqe"]) if len(real) else math.nan
        out[model] = {k: round(v, 4) for k, v in entry.items() if math.isfinite(v)}
    return out
