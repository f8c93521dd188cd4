"""The `reference` backend: the spec's bytes, computed faster. Each function here replaces one of
`spec`'s and says why its result is the same; tests/test_degrade_ops.py checks each against the
spec and whole recipes bit for bit.

- `blur`: kernels that OpenCV correlates through its DFT are run on tiles that each fit a smaller
  DFT block (the same float64 sums rounded to float32: at most one ulp apart, equal on the tested
  recipes);
- `unsharp_mask`: in place, its 0/1 mask blurred as uint8 (the same sums);
- `poisson_counts`: the same inversion, with a guide table per level instead of a search per pixel;
- `sharpen` / `apply_recipe(sharpened=)`: the variants of one tile share its USM, which draws nothing.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from . import spec
from .geometry import crop_to_scale, plan_shapes, usm_sigma
from .recipe import Blur, Noise, Recipe, Step, Usm

POISSON_GUIDE = 1024  # guide-table cells per level; most draws need no search (bench/README.md)

# cv2.filter2D correlates float32 images with kernels of >= 130 taps (13 px and up) through its DFT,
# in float64, over blocks of at least 244 px, so a tile just over a block costs 2x2 DFTs; cut into
# tiles that each fit one smaller block, the same sums take less time.
_DFT_MIN_TAPS = 130


def _opencv_dft_blocks(n: int, k: int) -> tuple[int, int]:
    """(blocks, DFT length) along one axis of OpenCV's crossCorr for an n px output, k px kernel."""
    block = min(max(round(4.5 * k), 257 - k), n)
    dft = cv2.getOptimalDFTSize(block + k - 1)
    return -(-n // min(dft - k + 1, n)), dft


@functools.lru_cache(maxsize=4096)
def dft_tiles(n: int, k: int) -> int:
    """Tiles along an axis of n px that minimise the DFT work of a k px kernel (1 = no tiling)."""
    if k * k < _DFT_MIN_TAPS:
        return 1

    def work(tiles: int) -> int:
        blocks, dft = _opencv_dft_blocks(-(-n // tiles) + (k - 1 if tiles > 1 else 0), k)
        return tiles * blocks * dft
    best = min(range(1, 5), key=lambda t: (work(t), t))
    return best if work(best) < 0.8 * work(1) else 1  # each tile costs a call and a copy


def _filter2d_tiled(img: np.ndarray, kernel: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """cv2.filter2D with a reflect-101 border, run on ny x nx tiles of the padded image."""
    p = kernel.shape[0] // 2
    h, w = img.shape[:2]
    padded = cv2.copyMakeBorder(img, p, p, p, p, spec.REFLECT_101)
    out = np.empty(img.shape[:2] + padded.shape[2:], img.dtype)  # filter2D drops a channel axis of 1, as here
    ys = [h * i // ny for i in range(ny + 1)]
    xs = [w * i // nx for i in range(nx + 1)]
    for y0, y1 in zip(ys, ys[1:]):
        for x0, x1 in zip(xs, xs[1:]):
            tile = cv2.filter2D(padded[y0:y1 + 2 * p, x0:x1 + 2 * p], -1, kernel, borderType=spec.REFLECT_101)
            out[y0:y1, x0:x1] = tile[p:p + y1 - y0, p:p + x1 - x0]
    return out


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """`spec.blur`, its DFT-sized 2-D sums run on `dft_tiles` tiles.

    img: (H, W, C) or (H, W) float32. kernel: (K, K), K odd. Returns img's shape, float32.
    Raises ValueError on a bad kernel.
    """
    kernel = spec.check_kernel(kernel)
    ny, nx = (dft_tiles(n, kernel.shape[0]) for n in img.shape[:2])
    if ny == nx == 1 or spec.separable_factors(kernel) is not None:
        return spec.blur(img, kernel)
    return _filter2d_tiled(img, kernel, ny, nx)


def unsharp_mask(img: np.ndarray, size: int = 51, weight: float = 0.5, threshold: float = 10.0) -> np.ndarray:
    """`spec.unsharp_mask` in place, the 0/1 mask blurred as uint8 into float32 (the same sums).

    img: (H, W, C) float32, not written to. Returns (H, W, C) float32.
    """
    sigma = usm_sigma(size)
    residual = cv2.GaussianBlur(img, (size, size), sigma, borderType=spec.REFLECT_101)
    np.subtract(img, residual, out=residual)
    mask = np.abs(residual)
    mask *= np.float32(255.0)
    mask = np.greater(mask, np.float32(threshold)).view(np.uint8)
    gauss = cv2.getGaussianKernel(size, sigma, cv2.CV_32F)
    soft = cv2.sepFilter2D(mask, cv2.CV_32F, gauss, gauss, borderType=spec.REFLECT_101)
    out = np.multiply(residual, np.float32(weight), out=residual)
    out += img
    np.clip(out, 0.0, 1.0, out=out)  # the sharpened image
    out -= img
    out *= soft
    out += img
    return out


@functools.lru_cache(maxsize=None)
def poisson_tables(vals: int) -> tuple[np.ndarray, np.ndarray, int]:
    """`spec.poisson_cdf(vals)` with its guide table, cached per process (vals <= 256).

    Returns (cdf, cells, m), row-major by level: cdf[l·m + k] = P(X <= k). cells[l·G + b] packs the
    guide table's bracket for u in [b/G, (b+1)/G), G = POISSON_GUIDE: its low 16 bits are
    lo = min{k : cdf_l(k) > b/G}, its high bits hi - lo, hi the same for (b+1)/G (read as 1 - 2⁻⁵³
    for b + 1 = G), so the count is in [lo, hi] and is lo when hi = lo.
    """
    cdf = spec.poisson_cdf(vals)
    bounds = np.arange(POISSON_GUIDE, dtype=np.float64) / POISSON_GUIDE
    guide = np.empty((256, POISSON_GUIDE + 1), np.int32)
    for level in range(256):
        guide[level, :-1] = np.searchsorted(cdf[level], bounds, side="right")
    guide[:, -1] = np.argmax(cdf == 1.0, axis=1)  # u < 1 never goes past the first P(X <= k) = 1
    cells = guide[:, :-1] | (np.diff(guide, axis=1) << 16)  # one gather per draw instead of two
    return cdf.ravel(), cells.ravel(), cdf.shape[1]


def poisson_counts(levels: np.ndarray, vals: int, seed: int) -> np.ndarray:
    """`spec.poisson_counts`: cell floor(u·G) of the level's guide table gives the count outright
    for most draws, a bisection between the cell's bounds finds the rest. (SciPy's
    `DiscreteGuideTable` does this for one distribution; here each pixel has its own.)

    levels: uint8, any shape. vals: a power of two <= 256. Returns int32 of the same shape.
    """
    cdf, cells, m = poisson_tables(vals)
    u = np.random.default_rng(seed).random(levels.size)
    level = levels.ravel()
    cell = (u * POISSON_GUIDE).astype(np.int32)
    cell += level * np.int32(POISSON_GUIDE)
    bracket = cells.take(cell)
    counts = bracket & 0xFFFF
    todo = np.flatnonzero(bracket >= 1 << 16)
    lo = counts[todo]
    hi = lo + (bracket[todo] >> 16)
    u, start = u[todo], level[todo].astype(np.intp) * m
    while todo.size:  # bisection; the answer stays in [lo, hi]
        mid = (lo + hi) >> 1
        above = cdf.take(start + mid) <= u
        lo = np.where(above, mid + 1, lo)
        hi = np.where(above, hi, mid)
        done = lo == hi
        counts[todo[done]] = lo[done]
        todo, lo, hi, u, start = (a[~done] for a in (todo, lo, hi, u, start))
    return counts.reshape(levels.shape)


def apply_step(img: np.ndarray, step: Step, hr_shape: tuple[int, int], scale: int) -> np.ndarray:
    """`spec.apply_step`, with this module's blur, unsharp mask and Poisson sampler."""
    if isinstance(step, Usm):
        return unsharp_mask(img, step.size, step.weight, step.threshold)
    if isinstance(step, Blur) and step.kind != "none":
        return blur(img, step.kernel)
    if isinstance(step, Noise) and step.kind == "poisson":
        return spec.add_poisson_noise(img, step.level, step.gray, step.seed, counts=poisson_counts)
    return spec.apply_step(img, step, hr_shape, scale)


def leading_usm(recipe: Recipe) -> Usm | None:
    """The recipe's first step when it is an unsharp mask (the Real-ESRGAN presets), else None."""
    first = recipe.steps[0] if recipe.steps else None
    return first if isinstance(first, Usm) else None


def sharpen(hr: np.ndarray, recipe: Recipe) -> np.ndarray:
    """What the recipe's first degradation step sees: the HR cropped to the scale, as float32 in
    [0, 1], through the recipe's `leading_usm` when it has one.

    It depends on the HR, the scale and the USM's constants only (the USM draws nothing per sample),
    so every variant of one tile can share it: pass it to `apply_recipe(..., sharpened=)`. Returned
    read-only, so that no step can change it under the next variant.

    hr: (H, W, 3) uint8. Returns (H - H % s, W - W % s, 3) float32, read-only.
    """
    img = spec.to_float(crop_to_scale(hr, recipe.scale))
    usm = leading_usm(recipe)
    if usm is not None:
        img = unsharp_mask(img, usm.size, usm.weight, usm.threshold)
    img.flags.writeable = False
    return img


def apply_recipe(hr: np.ndarray, recipe: Recipe, *, sharpened: np.ndarray | None = None) -> np.ndarray:
    """`spec.apply_recipe`: (H, W, 3) uint8 RGB → (H // s, W // s, 3) uint8 RGB.

    sharpened: `sharpen(hr, r)` of this HR, computed already for a recipe `r` with the same scale
    and `leading_usm` (another variant of the tile); the result is the same bytes, without
    repeating the USM.

    Raises:
        ValueError: hr is not (H, W, 3) uint8, or `sharpened` has another shape than the cropped HR.
        TooSmallError: the tile is smaller than the recipe needs (see `geometry.plan_shapes`).
    """
    spec.check_hr(hr)
    hr = crop_to_scale(hr, recipe.scale)
    plan_shapes(recipe, hr.shape[:2])
    if sharpened is None:
        img = sharpen(hr, recipe)
    elif sharpened.shape != hr.shape or sharpened.dtype != np.float32:
        raise ValueError(f"sharpened must be the {hr.shape} float32 image of sharpen(hr, recipe), "
                         f"got {sharpened.shape} {sharpened.dtype}")
    else:
        img = sharpened
    steps = recipe.steps[1:] if leading_usm(recipe) is not None else recipe.steps
    for step in steps:
        img = apply_step(img, step, hr.shape[:2], recipe.scale)
    return spec.quantize(img)
