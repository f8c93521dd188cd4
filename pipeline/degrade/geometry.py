"""What every backend derives from a recipe before touching a pixel: the crop, the shape entering
each step, the unsharp mask's sigma and the noise fields.

The spec, its fast path and the DALI graph all import these, so the three agree on sizes and
noise by construction rather than by test.
"""
from __future__ import annotations

import numpy as np

from .recipe import Blur, Recipe, Resize, Usm


class TooSmallError(ValueError):
    """The HR tile is smaller than the recipe needs (message: the step and the sizes)."""


def crop_to_scale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Top-left crop to a multiple of the scale, so LR pixel (i, j) covers HR [s·i, s·i + s) × [s·j, s·j + s).

    hr: (H, W, ...) any dtype. Returns a view (H - H % scale, W - W % scale, ...).
    """
    h, w = hr.shape[:2]
    return hr[: h - h % scale, : w - w % scale]


def resize_shape(step: Resize, shape: tuple[int, int], hr_shape: tuple[int, int], scale: int) -> tuple[int, int]:
    """(int(base_h·step.scale), int(base_w·step.scale)): base is `shape`, the image entering the step
    (`relative_to="input"`), or the LR size hr_shape / scale (`"lr"`); `hr_shape` is the cropped HR."""
    if step.relative_to == "input":
        base_h, base_w = float(shape[0]), float(shape[1])
    else:
        base_h, base_w = hr_shape[0] / scale, hr_shape[1] / scale
    return int(base_h * step.scale), int(base_w * step.scale)


def plan_shapes(recipe: Recipe, hr_shape: tuple[int, int]) -> list[tuple[int, int]]:
    """(h, w) of the image entering each step, plus the final LR shape (len = steps + 1).

    hr_shape: (H, W) of the HR before the crop to the scale.

    Raises:
        TooSmallError: the HR is not at least `scale` px, a resize would produce an empty image, or
            a blur/unsharp-mask kernel is wider than twice the image it filters (reflect-101 needs
            each side > kernel radius).
    """
    hr_shape = (hr_shape[0] - hr_shape[0] % recipe.scale, hr_shape[1] - hr_shape[1] % recipe.scale)
    if min(hr_shape) < 1:
        raise TooSmallError(f"HR tile smaller than the scale {recipe.scale}")
    shapes = [hr_shape]
    shape = hr_shape
    for step in recipe.steps:
        if isinstance(step, (Blur, Usm)) and min(shape) <= step.size // 2:
            raise TooSmallError(f"{step.name}: {step.size} px kernel on a {shape[0]}x{shape[1]} image "
                                f"(needs sides > {step.size // 2})")
        if isinstance(step, Resize):
            shape = resize_shape(step, shape, hr_shape, recipe.scale)
            if min(shape) < 1:
                raise TooSmallError(f"{step.name}: resizing to an empty {shape[0]}x{shape[1]} image")
        shapes.append(shape)
    return shapes


def usm_sigma(size: int) -> float:
    """OpenCV's sigma for a Gaussian of `size` px given sigma 0 (8.0 for 51 px)."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def standard_normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The noise field of a noise step: float32 N(0, 1) of `shape` from PCG64(seed).

    A function of (seed, shape) alone, so the DALI graph is fed the very field the spec adds.
    """
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
