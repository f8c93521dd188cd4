"""PSNR and SSIM with BasicSR's conventions (the numbers SR papers report).

Both take two HWC uint8 images, crop `crop_border` pixels from every side, optionally reduce them
to MATLAB's Y (`color.rgb_to_y`, not rounded), and compute in float64 on the [0, 255] scale.
SSIM is Wang et al.'s: 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, L = 255, filtered
with `cv2.filter2D` and cropped by 5 px so only windows lying wholly inside the image count
('valid'), averaged over the map and then over channels.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.metrics.color import rgb_to_y

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255.0) ** 2
SSIM_C2 = (0.03 * 255.0) ** 2


def psnr(a: np.ndarray, b: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB with peak 255.

    a, b: (H, W), (H, W, 1) or (H, W, 3) uint8 RGB, same shape. `y_channel` compares the Y of
    MATLAB's YCbCr (needs 3 channels). Returns ``10 log10(255² / MSE)``; ``inf`` when the
    (cropped) images are identical.

    Raises:
        ValueError: shapes differ or are not HWC with 1 or 3 channels, dtype is not uint8,
            `crop_border` is negative or leaves no pixel, `y_channel` on a 1-channel image.

    >>> a = np.zeros((4, 4, 3), np.uint8)
    >>> round(psnr(a, a + 1), 4)  # MSE 1 -> 20 log10(255)
    48.1308
    """
    x, y = _prepare(a, b, crop_border, y_channel, min_side=1)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity (mean SSIM), BasicSR's `calculate_ssim`.

    a, b: (H, W), (H, W, 1) or (H, W, 3) uint8 RGB, same shape, at least 11×11 after cropping.
    Returns the mean of the 'valid' SSIM map, averaged over channels (RGB) or of Y; 1.0 for
    identical images.

    Raises:
        ValueError: as `psnr`, or fewer than 11 rows/columns left after cropping.
    """
    x, y = _prepare(a, b, crop_border, y_channel, min_side=SSIM_WINDOW)
    return float(np.mean([_ssim_map(x[..., c], y[..., c]).mean() for c in range(x.shape[2])]))


def _ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM map of two (H, W) float64 planes over the windows inside them: (H - 10, W - 10)."""
    g = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA)
    window = g @ g.T
    r = SSIM_WINDOW // 2

    def local_mean(p: np.ndarray) -> np.ndarray:
        return cv2.filter2D(p, -1, window)[r:-r, r:-r]

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov_xy = local_mean(x * y) - mu_x * mu_y
    num = (2.0 * mu_x * mu_y + SSIM_C1) * (2.0 * cov_xy + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return num / den


def _prepare(a: np.ndarray, b: np.ndarray, crop_border: int, y_channel: bool,
             min_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair and return them cropped as (H', W', C) float64 (C = 1 when `y_channel`)."""
    for name, img in (("a", a), ("b", b)):
        if not isinstance(img, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8 (quantise float outputs first), got {img.dtype}")
        if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))):
            raise ValueError(f"{name} must be (H, W), (H, W, 1) or (H, W, 3), got shape {img.shape}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative int, got {crop_border!r}")
    h, w = a.shape[:2]
    if h - 2 * crop_border < min_side or w - 2 * crop_border < min_side:
        raise ValueError(f"crop_border={crop_border} leaves {max(h - 2 * crop_border, 0)}x"
                         f"{max(w - 2 * crop_border, 0)} of a {h}x{w} image; need at least "
                         f"{min_side}x{min_side}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        if a.shape[2] != 3:
            raise ValueError(f"y_channel=True needs 3-channel RGB images, got {a.shape[2]} channel")
        return rgb_to_y(a)[..., None], rgb_to_y(b)[..., None]
    return a.astype(np.float64), b.astype(np.float64)
