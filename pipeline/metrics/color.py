"""RGB → luma (Y of ITU-R BT.601 YCbCr, "studio swing"), as MATLAB's `rgb2ycbcr` computes it.

SR papers report PSNR/SSIM on this Y: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with
R, G, B in [0, 255], so Y lies in [16, 235]. BasicSR's `bgr2ycbcr(y_only=True)` is the same formula
on BGR input.
"""
from __future__ import annotations

import numpy as np

Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64) / 255.0  # R, G, B on [0, 255]
Y_OFFSET = 16.0


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Luma of an RGB image, not rounded.

    img: (H, W, 3) uint8 RGB. Returns (H, W) float64 in [16, 235].

    Raises:
        ValueError: `img` is not (H, W, 3) uint8.

    >>> rgb_to_y(np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8))
    array([[235.,  16.]])
    """
    if img.dtype != np.uint8:
        raise ValueError(f"img must be uint8, got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"img must be (H, W, 3) RGB, got shape {img.shape}")
    return img.astype(np.float64) @ Y_WEIGHTS + Y_OFFSET
