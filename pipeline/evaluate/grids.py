"""Comparison grids: the same crop of every method side by side, enlarged so artefacts are visible.

One row per image, one column per method (LR nearest-upscaled, bicubic, each model, HR), under a
header row of labels. Crops sit at a deterministic textured place (largest mean gradient), since
flat sky shows no difference between methods.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CELL_TARGET = 288   # px: crops are enlarged (nearest) by the integer factor that brings them closest
HEADER = 30         # px: label row height
PAD = 4             # px between cells


def crop_side(grid_crop: int, scale: int, hr_shape: tuple[int, ...]) -> int:
    """The HR crop side actually used: `grid_crop` rounded down to a multiple of `scale`, at most the
    image's shorter side (also rounded), at least `scale`."""
    side = min(grid_crop, hr_shape[0], hr_shape[1])
    return max(scale, side - side % scale)


def textured_window(img: np.ndarray, side: int, step: int = 1) -> tuple[int, int]:
    """Top-left (y, x) of the `side`×`side` window with the largest mean gradient magnitude.

    img: (H, W, 3) or (H, W) uint8, H and W >= side. Candidates lie on a grid of `step` px (so that a
    multiple of the SR scale maps back onto LR pixels); the first maximum in raster order wins.

    Raises:
        ValueError: a window larger than the image, or step < 1.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    h, w = img.shape[:2]
    if side > h or side > w:
        raise ValueError(f"window side {side} does not fit an image of {w}x{h}")
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    g = gray.astype(np.float64)
    mag = np.abs(cv2.Sobel(g, cv2.CV_64F, 1, 0, ksize=3)) + np.abs(cv2.Sobel(g, cv2.CV_64F, 0, 1, ksize=3))
    integral = cv2.integral(mag)  # (h+1, w+1)
    ys = np.arange(0, h - side + 1, step)
    xs = np.arange(0, w - side + 1, step)
    sums = (integral[ys[:, None] + side, xs[None, :] + side] - integral[ys[:, None], xs[None, :] + side]
            - integral[ys[:, None] + side, xs[None, :]] + integral[ys[:, None], xs[None, :]])
    i, j = np.unravel_index(int(np.argmax(np.round(sums, 6))), sums.shape)
    return int(ys[i]), int(xs[j])


def enlarge_factor(side: int) -> int:
    return max(1, round(CELL_TARGET / side))


def comparison_grid(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str]) -> np.ndarray:
    """Lay out crops ((h, w, 3) uint8) on white under a header row of `labels`.

    Cells are as large as the largest crop; a smaller crop (from a small image) sits in its cell's
    top-left corner, and a row shorter than `labels` leaves its last cells blank.
    Returns (H, W, 3) uint8.

    Raises:
        ValueError: no rows, or a crop that is not (h, w, 3) uint8.
    """
    if not rows:
        raise ValueError("comparison_grid needs at least one row")
    for row in rows:
        for img in row:
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"grid crops must be (h, w, 3) uint8, got {img.shape} {img.dtype}")
    ch = max(img.shape[0] for row in rows for img in row)
    cw = max(img.shape[1] for row in rows for img in row)
    n_cols = max(len(labels), max(len(r) for r in rows))
    out = np.full((HEADER + len(rows) * (ch + PAD) + PAD, n_cols * (cw + PAD) + PAD, 3), 255, np.uint8)
    for j, text in enumerate(labels):
        _put_label(out, text, x=PAD + j * (cw + PAD), width=cw)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = HEADER + PAD + i * (ch + PAD), PAD + j * (cw + PAD)
            out[y:y + img.shape[0], x:x + img.shape[1]] = img
    return out


def _put_label(canvas: np.ndarray, text: str, *, x: int, width: int) -> None:
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1
    while scale > 0.3 and cv2.getTextSize(text, font, scale, thick)[0][0] > width - 4:
        scale -= 0.05
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    org = (x + max(0, (width - tw) // 2), (HEADER + th) // 2)
    cv2.putText(canvas, text, org, font, scale, (0, 0, 0), thick, cv2.LINE_AA)


def enlarge(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor (pixels stay visible as blocks)."""
    if factor == 1:
        return img
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)
