"""A small degradation fingerprint of a set of LR images, for the learn-degradation report and as the
benchmark's fallback when `pipeline.calibrate` is not there: three no-reference statistics of the luma.

- `noise`: Donoho's MAD estimate of the noise σ (8-bit units) from the Haar HH sub-band,
  median(|HH|) / 0.6745 — robust to content because edges are sparse in HH;
- `hf`: the share of the luma's spectral energy (DC left out) above half the Nyquist frequency:
  low for blurred images;
- `blockiness`: mean |step| across the 8-px grid over mean |step| elsewhere (rows and columns):
  1 for no JPEG, > 1 with visible 8×8 blocks.

`set_stats` averages over images; `stats_distance` is the mean |log ratio| over the three, so a set
twice as noisy as another is log 2 ≈ 0.69 away on that statistic.
"""
from __future__ import annotations

import math

import numpy as np

STATS = ("noise", "hf", "blockiness")


def luma(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (H, W) float64 BT.601 luma in [0, 255]."""
    return img[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def image_stats(img: np.ndarray) -> dict[str, float]:
    """The three statistics of one (H, W, 3) uint8 image of at least 16×16 px.
    Raises ValueError on a smaller or non-RGB image."""
    if img.ndim != 3 or img.shape[2] < 3 or min(img.shape[:2]) < 16:
        raise ValueError(f"image stats need an (H, W, 3) image of at least 16x16 px, got {img.shape}")
    y = luma(img)
    h, w = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
    a, b, c, d = y[0:h:2, 0:w:2], y[0:h:2, 1:w:2], y[1:h:2, 0:w:2], y[1:h:2, 1:w:2]
    noise = float(np.median(np.abs(a - b - c + d) / 2.0) / 0.6745)
    spec = np.abs(np.fft.fft2(y - y.mean())) ** 2
    fy = np.abs(np.fft.fftfreq(y.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(y.shape[1]))[None, :]
    high = np.maximum(fy, fx) > 0.25
    hf = float(spec[high].sum() / max(spec.sum(), 1e-12))
    return {"noise": noise, "hf": hf, "blockiness": _blockiness(y)}


def _blockiness(y: np.ndarray) -> float:
    steps, grid = [], []
    for d in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T):
        on = (np.arange(d.shape[1]) % 8) == 7   # the step between pixel 8k+7 and 8k+8
        steps.append(d[:, ~on].mean())
        grid.append(d[:, on].mean())
    return float(np.mean(grid) / max(np.mean(steps), 1e-12))


def set_stats(images: list[np.ndarray]) -> dict[str, float]:
    """Each statistic's mean over `images`. Raises ValueError on an empty list."""
    if not images:
        raise ValueError("set stats need at least one image")
    per = [image_stats(img) for img in images]
    return {k: float(np.mean([p[k] for p in per])) for k in STATS}


def stats_distance(a: dict[str, float], b: dict[str, float]) -> float:
    """Mean over STATS of |log(a / b)| (each floored at 1e-6)."""
    return float(np.mean([abs(math.log(max(a[k], 1e-6) / max(b[k], 1e-6))) for k in STATS]))
