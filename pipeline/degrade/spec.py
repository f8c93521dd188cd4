"""The degradation spec: a recipe applied step by step, in the plain formulas of Real-ESRGAN's
definition (BasicSR's `degradations.py`, `USMSharp`, `DiffJPEG`), NumPy/OpenCV on float32.

It defines the bytes of every sample; `fast` computes the same bytes faster (tests/test_degrade_ops.py
checks it over many recipes) and is what the `reference` backend runs. Numerics, for every backend:
- the HR is cropped to a multiple of the scale (`geometry.crop_to_scale`), then x / 255 in float32;
- everything in between stays float32 and unclipped, except where Real-ESRGAN clips: after noise
  (to [0, 1]), and at every JPEG, whose input is rounded to 8 bits (`quantize`) and whose output is
  8-bit by nature; the result is quantized once more at the end;
- borders are reflect-101 (`dcb|abcd|cba`, the edge not repeated), as BasicSR's filter2D;
- resizes are `cv2.resize` to `geometry.resize_shape`: area = INTER_AREA, bilinear = INTER_LINEAR,
  bicubic = INTER_CUBIC (a = -0.75, as torch's); none antialiases, as F.interpolate;
- Gaussian and camera noise add `geometry.standard_normal(step.seed, shape)`; Poisson counts invert
  the Poisson CDF at one `Generator.random` uniform per pixel drawn from PCG64(step.seed).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
from scipy import special

from .geometry import crop_to_scale, plan_shapes, resize_shape, standard_normal, usm_sigma
from .jpeg import jpeg_roundtrip
from .recipe import Blur, Camera, Jpeg, Noise, Recipe, Resize, Step, UserOp, Usm
from .userops import apply_user_op

INTERPOLATIONS = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as torchvision's rgb_to_grayscale
CAMERA_GAMMA = 2.2
REFLECT_101 = cv2.BORDER_REFLECT_101

# The largest float32 below 0.5: the one v in [0, 255] for which float32 v + 0.5 rounds up to 1.0.
_BELOW_HALF = np.nextafter(np.float32(0.5), np.float32(0.0))


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 → float32 x / 255 (as x · float32(1/255)), any shape."""
    return img.astype(np.float32) * np.float32(1.0 / 255.0)


def quantize(img: np.ndarray) -> np.ndarray:
    """float32 → uint8: floor(clip(x·255, 0, 255) + 0.5), i.e. rounded half away from zero, any shape.

    In float32, v + 0.5 is exact or stays below the next integer for every v in [0, 255] but one
    (`_BELOW_HALF`), which is set to 0 first: the same result as the sum in float64.
    """
    v = img * np.float32(255.0)
    np.clip(v, 0.0, 255.0, out=v)
    v[v == _BELOW_HALF] = 0.0
    v += np.float32(0.5)
    return v.astype(np.uint8)


def gray(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 → (H, W, 1) float32 BT.601 luma."""
    r, g, b = (np.float32(w) for w in GRAY_WEIGHTS)
    return img[:, :, 0:1] * r + img[:, :, 1:2] * g + img[:, :, 2:3] * b


def unsharp_mask(img: np.ndarray, size: int = 51, weight: float = 0.5, threshold: float = 10.0) -> np.ndarray:
    """Real-ESRGAN's USMSharp: sharpen where |img - G(img)| > threshold/255, feathered by G.

    G is the `size` px Gaussian with σ = usm_sigma(size).
    img: (H, W, C) float32. Returns (H, W, C) float32, in [0, 1] when img is.
    """
    def g(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (size, size), usm_sigma(size), borderType=REFLECT_101)
    residual = img - g(img)
    mask = (np.abs(residual) * np.float32(255.0) > np.float32(threshold)).astype(np.float32)
    soft = g(mask)
    sharp = np.clip(img + np.float32(weight) * residual, 0.0, 1.0)
    return img + soft * (sharp - img)


def check_kernel(kernel: np.ndarray) -> np.ndarray:
    """`kernel` as float32. Raises ValueError unless it is (K, K) with K odd."""
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be square with an odd side, got shape {kernel.shape}")
    return kernel.astype(np.float32, copy=False)


def separable_factors(kernel: np.ndarray, rtol: float = 1e-6) -> tuple[np.ndarray, np.ndarray] | None:
    """(col, row) float32 with kernel = col ⊗ row for a rank-1 kernel of 5 px or more (isotropic and
    axis-aligned Gaussians), else None: col = row sums, row = column sums / total."""
    if kernel.shape[0] < 5:
        return None
    col = kernel.sum(axis=1, dtype=np.float64)
    row = kernel.sum(axis=0, dtype=np.float64) / kernel.sum(dtype=np.float64)
    if np.abs(np.outer(col, row) - kernel).max() > rtol * float(np.abs(kernel).max()):
        return None
    return col.astype(np.float32), row.astype(np.float32)


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate each channel with `kernel`: out(y, x) = Σ_ij k(i, j)·img(y + i - r, x + j - r), reflect-101.

    The float32 rounding follows how the kernel is built: a rank-1 kernel as its two 1-D passes
    (`separable_factors`), any other as one 2-D sum (`cv2.filter2D`, in float64 through a DFT
    from 130 taps up).

    img: (H, W, C) float32. kernel: (K, K), K odd. Returns (H, W, C) float32.
    Raises ValueError on a bad kernel.
    """
    kernel = check_kernel(kernel)
    factors = separable_factors(kernel)
    if factors is not None:
        col, row = factors
        return cv2.sepFilter2D(img, -1, row, col, borderType=REFLECT_101)
    return cv2.filter2D(img, -1, kernel, borderType=REFLECT_101)


def resize(img: np.ndarray, shape: tuple[int, int], interp: str) -> np.ndarray:
    """(H, W, C) float32 → (h, w, C) float32, `shape` = (h, w), `interp` in {area, bilinear, bicubic}.
    Raises ValueError on another interp."""
    if interp not in INTERPOLATIONS:
        raise ValueError(f"interp must be one of {list(INTERPOLATIONS)}, got {interp!r}")
    if tuple(shape) == img.shape[:2]:
        return img
    return cv2.resize(img, (shape[1], shape[0]), interpolation=INTERPOLATIONS[interp])


def add_gaussian_noise(img: np.ndarray, sigma: float, gray_noise: bool, seed: int) -> np.ndarray:
    """clip(img + z·σ/255, 0, 1), z = standard_normal(seed, (H, W, 1 if gray_noise else C)).
    img: (H, W, C) float32. Returns (H, W, C) float32."""
    h, w = img.shape[:2]
    z = standard_normal(seed, (h, w, 1 if gray_noise else img.shape[2]))
    return np.clip(img + z * np.float32(sigma / 255.0), 0.0, 1.0)


def poisson_levels(img_q: np.ndarray) -> int:
    """Real-ESRGAN's Poisson 'vals': 2 ** ceil(log2(number of distinct values)) of a uint8 array."""
    distinct = int(np.count_nonzero(np.bincount(img_q.ravel(), minlength=256)))
    return int(2 ** math.ceil(math.log2(max(distinct, 1))))


def poisson_cdf(vals: int) -> np.ndarray:
    """(256, m) float64: row l is P(X <= k), X ~ Poisson(l·vals/255), for k < m = int(vals + 12√vals) + 21,
    the last column set to 1 (the tail it drops is below 1e-30)."""
    lam = np.arange(256, dtype=np.float64) * vals / 255.0
    m = int(vals + 12 * math.sqrt(vals)) + 21
    cdf = special.pdtr(np.arange(m, dtype=np.float64)[None, :], lam[:, None])
    cdf[:, -1] = 1.0
    return cdf


def poisson_counts(levels: np.ndarray, vals: int, seed: int) -> np.ndarray:
    """Poisson(level·vals/255) draws by inversion: count = min{k : P(X <= k) > u}, one uniform u per
    element (C order) from PCG64(seed).random. levels: uint8, any shape. Returns int32, same shape."""
    cdf = poisson_cdf(vals)
    u = np.random.default_rng(seed).random(levels.size).reshape(levels.shape)
    counts = np.zeros(levels.shape, np.int32)
    for level in np.unique(levels):
        at = levels == level
        counts[at] = np.searchsorted(cdf[level], u[at], side="right")
    return counts


def add_poisson_noise(img: np.ndarray, scale: float, gray_noise: bool, seed: int,
                      counts: Callable[[np.ndarray, int, int], np.ndarray] = poisson_counts) -> np.ndarray:
    """Real-ESRGAN's Poisson noise from the 8-bit image (its luma when `gray_noise`):
    clip(img + (counts(base, vals, seed) / vals - base / 255)·scale, 0, 1), base = quantize(img),
    vals = poisson_levels(base). `counts`: the sampler (any exact one gives these bytes).
    img: (H, W, 3) float32. Returns (H, W, 3) float32."""
    base = quantize(gray(img) if gray_noise else img)
    vals = poisson_levels(base)
    noise = (counts(base, vals, seed) / vals - base / 255.0) * scale
    return np.clip(img + noise.astype(np.float32), 0.0, 1.0)


def add_camera_noise(img: np.ndarray, shot: float, read: float, seed: int) -> np.ndarray:
    """Heteroscedastic sensor noise: lin = clip(img)^2.2, lin' = clip(lin + z·√(shot·lin + read), 0, 1),
    out = lin'^(1/2.2), z = standard_normal(seed, img.shape). img: (H, W, C) float32 → same."""
    lin = np.power(np.clip(img, 0.0, 1.0), np.float32(CAMERA_GAMMA))
    z = standard_normal(seed, img.shape)
    lin = np.clip(lin + z * np.sqrt(lin * np.float32(shot) + np.float32(read)), 0.0, 1.0)
    return np.power(lin, np.float32(1.0 / CAMERA_GAMMA))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """to_float(jpeg_roundtrip(quantize(img), quality)): libjpeg, chroma decoded as DiffJPEG does.
    img: (H, W, 3) float32. Returns (H, W, 3) float32. Raises ValueError on a quality outside [1, 100]."""
    return to_float(jpeg_roundtrip(quantize(img), quality))


def apply_step(img: np.ndarray, step: Step, hr_shape: tuple[int, int], scale: int) -> np.ndarray:
    """One recipe step on (H, W, 3) float32; `hr_shape` is the cropped HR (h, w). Raises TypeError
    on an unknown step."""
    if isinstance(step, Usm):
        return unsharp_mask(img, step.size, step.weight, step.threshold)
    if isinstance(step, Blur):
        return img if step.kind == "none" else blur(img, step.kernel)
    if isinstance(step, Resize):
        return resize(img, resize_shape(step, img.shape[:2], hr_shape, scale), step.interp)
    if isinstance(step, Noise) and step.kind == "gaussian":
        return add_gaussian_noise(img, step.level, step.gray, step.seed)
    if isinstance(step, Noise):
        return add_poisson_noise(img, step.level, step.gray, step.seed)
    if isinstance(step, Camera):
        return add_camera_noise(img, step.shot, step.read, step.seed)
    if isinstance(step, Jpeg):
        return jpeg(img, step.quality)
    if isinstance(step, UserOp):
        return apply_user_op(img, step.function, step.params, step.seed) if step.applied else img
    raise TypeError(f"unknown recipe step {step!r}")


def check_hr(hr: np.ndarray) -> None:
    """Raise ValueError unless `hr` is (H, W, 3) uint8."""
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"hr must be (H, W, 3) uint8 RGB, got {hr.shape} {hr.dtype}")


def apply_recipe(hr: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Degrade one HR tile: (H, W, 3) uint8 RGB → (H // s, W // s, 3) uint8 RGB, s = recipe.scale.

    Raises:
        ValueError: hr is not (H, W, 3) uint8.
        TooSmallError: the tile is smaller than the recipe needs (see `geometry.plan_shapes`).
    """
    check_hr(hr)
    hr = crop_to_scale(hr, recipe.scale)
    plan_shapes(recipe, hr.shape[:2])
    img = to_float(hr)
    for step in recipe.steps:
        img = apply_step(img, step, hr.shape[:2], recipe.scale)
    return quantize(img)
