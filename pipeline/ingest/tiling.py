"""Tiling and multiscale variants of HR photos (BasicSR extract_subimages conventions)."""
from __future__ import annotations

import numpy as np
from PIL import Image


def tile_starts(length: int, crop: int, step: int, thresh: int) -> list[int]:
    """Start offsets along one axis: every `step` px, plus a last tile flush with the edge when the
    leftover exceeds `thresh`. A side shorter than `crop` gives the single start 0."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh:
        starts.append(length - crop)
    return starts


def tiles(img: np.ndarray, crop: int, step: int, thresh: int) -> list[tuple[int, int, np.ndarray]]:
    """(y, x, tile) for every tile of `img` (H, W, 3); tiles are crop×crop, or the whole short side."""
    h, w = img.shape[:2]
    return [(y, x, img[y:y + crop, x:x + crop]) for y in tile_starts(h, crop, step, thresh)
            for x in tile_starts(w, crop, step, thresh)]


def rescale(img: np.ndarray, scale: float) -> np.ndarray:
    """Downscale by `scale` with Lanczos (antialiased), as Real-ESRGAN's multiscale DF2K script."""
    if scale == 1.0:
        return img
    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))


def is_flat(tile: np.ndarray, min_std: float) -> bool:
    """True when the tile's gray-level standard deviation (0..255 units) is below `min_std`."""
    if min_std <= 0:
        return False
    gray = tile.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(gray.std()) < min_std
