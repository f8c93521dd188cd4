"""A preview of a preset on one photo: K degraded samples in a grid, each captioned with its recipe,
so strength can be judged before spending compute (`realsynth preview`).

    grid, lines = preview(img, load_preset("realesrgan-x4plus"), n=8, seed=0)
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.degrade import TooSmallError, apply_recipe, sample_recipe
from pipeline.degrade.preset import Preset
from pipeline.degrade.recipe import Blur, Camera, Jpeg, Noise, Recipe, Resize, UserOp

CAPTION_PX = 12  # caption line height
COLUMNS = 4


def step_text(step) -> str | None:
    """A few characters for one recipe step (None for a step that did nothing visible to summarise)."""
    if isinstance(step, Blur):
        if step.kind == "none":
            return None
        if step.kind == "sinc":
            return f"{step.name} sinc w{step.omega:.2f}"
        return f"{step.name} {step.kind} s{step.sigma_x:.2f}"
    if isinstance(step, Resize):
        return f"{step.name} {step.interp} x{step.scale:.2f}" if step.mode != "lr" else f"{step.name} {step.interp}"
    if isinstance(step, Noise):
        return f"{step.name} {step.kind}{' gray' if step.gray else ''} {step.level:.2f}"
    if isinstance(step, Jpeg):
        return f"{step.name} q{step.quality}"
    if isinstance(step, Camera):
        return f"{step.name} shot {step.shot:.2g}"
    if isinstance(step, UserOp):
        return f"{step.name} " + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in step.params.items()) if step.applied else None
    return None


def recipe_text(recipe: Recipe) -> list[str]:
    """The recipe as short lines, one per step that did something."""
    return [t for t in (step_text(s) for s in recipe.steps) if t]


def _captioned(img: np.ndarray, lines: list[str], width: int, rows: int) -> np.ndarray:
    """`img` (scaled to `width` with nearest neighbours, as pixels) above `rows` caption lines."""
    scale = width / img.shape[1]
    tile = cv2.resize(img, (width, max(1, round(img.shape[0] * scale))), interpolation=cv2.INTER_NEAREST)
    cap = np.full((rows * CAPTION_PX + 4, width, 3), 255, np.uint8)
    for i, line in enumerate(lines[:rows]):
        cv2.putText(cap, line, (2, (i + 1) * CAPTION_PX), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([tile, cap])


def preview(img: np.ndarray, preset: Preset, *, n: int = 8, seed: int = 0, crop: int = 256,
            width: int = 256) -> tuple[np.ndarray, list[list[str]]]:
    """The central `crop` px of `img` (whole if smaller) and `n` LR samples of it (variants 0..n-1 of
    key `preview`), each shown `width` px wide over its recipe. Returns the grid (H, W, 3) uint8 RGB
    and each sample's lines. Raises ValueError on n < 1, TooSmallError when the crop is too small."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    h, w = img.shape[:2]
    y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    hr = np.ascontiguousarray(img[y: y + crop, x: x + crop])
    lrs, texts = [], []
    for v in range(n):
        recipe = sample_recipe(preset, seed, "preview", v)
        try:
            lrs.append(apply_recipe(hr, recipe))
        except TooSmallError as err:
            raise TooSmallError(f"preview: the {hr.shape[1]}x{hr.shape[0]} crop is too small for sample {v} "
                                f"({err}); pass a larger --crop") from None
        texts.append([f"#{v}"] + recipe_text(recipe))
    rows = max(len(t) for t in texts)
    tiles = [_captioned(hr, [f"HR {hr.shape[1]}x{hr.shape[0]}", f"{preset.name}, seed {seed}"], width, rows)]
    tiles += [_captioned(lr, t, width, rows) for lr, t in zip(lrs, texts)]
    cols = min(COLUMNS, len(tiles))
    th = max(t.shape[0] for t in tiles)
    tiles = [np.vstack([t, np.full((th - t.shape[0], width, 3), 255, np.uint8)]) for t in tiles]
    tiles += [np.full_like(tiles[0], 255)] * (math.ceil(len(tiles) / cols) * cols - len(tiles))
    grid = np.vstack([np.hstack(tiles[r * cols:(r + 1) * cols]) for r in range(len(tiles) // cols)])
    return grid, texts
