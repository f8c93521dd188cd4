"""The reference backend: a recipe applied with NumPy/OpenCV, step by step. Readable as the spec.

Numerics (shared by every backend):
- the HR is cropped to a multiple of the scale (top-left anchored), so LR pixel (i, j) covers HR
  pixels [s·i, s·i + s) × [s·j, s·j + s); then converted to float32 in [0, 1] (x / 255);
- everything in between stays float32 and unclipped, except where Real-ESRGAN clips: after noise
  (clip to [0, 1]), and at every JPEG, whose input is rounded to 8 bits (`quantize`) and whose output
  is 8-bit by nature; the result is quantized once more at the end;
- `quantize` = clip(x·255, 0, 255) rounded half away from zero (what DALI's float→uint8 cast does);
- borders are reflect-101 (`dcb|abcd|cba` without repeating the edge), as BasicSR's filter2D;
- resizes are `cv2.resize` to (int(base_h·scale), int(base_w·scale)), base the current size or the
  LR size (H/s, W/s); `area` = INTER_AREA, `bilinear` = INTER_LINEAR, `bicubic` = INTER_CUBIC (a = -0.75,
  like torch's bicubic; neither antialiases, like Real-ESRGAN's F.interpolate);
- Gaussian and camera noise fields come from `standard_normal(step.seed, shape)`, so DALI can
  regenerate them exactly; Poisson counts come from `poisson_counts`, an exact sampler (inverse CDF,
  one `Generator.random` uniform per pixel from PCG64(step.seed)) that DALI matches in law only;
- the USM is computed in place and its 0/1 mask blurred as uint8: the same bits as the float formula.
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from scipy import special

from .recipe import Blur, Camera, Jpeg, Noise, Recipe, Resize, Step, Usm

INTERPOLATIONS = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as torchvision's rgb_to_grayscale
CAMERA_GAMMA = 2.2
POISSON_GUIDE = 1024  # guide-table cells per level: ~94 % of Poisson draws need no search


class TooSmallError(ValueError):
    """The HR tile is smaller than the recipe needs (message: the step and the sizes)."""


# ---- shapes -------------------------------------------------------------------------------------

def crop_to_scale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Top-left crop of (H, W, C) to (H - H % scale, W - W % scale)."""
    h, w = hr.shape[:2]
    return hr[: h - h % scale, : w - w % scale]


def resize_shape(step: Resize, shape: tuple[int, int], hr_shape: tuple[int, int], scale: int) -> tuple[int, int]:
    """Output (h, w) of a resize step applied to an image of `shape`; `hr_shape` is the cropped HR."""
    if step.relative_to == "input":
        base_h, base_w = float(shape[0]), float(shape[1])
    else:
        base_h, base_w = hr_shape[0] / scale, hr_shape[1] / scale
    return int(base_h * step.scale), int(base_w * step.scale)


def plan_shapes(recipe: Recipe, hr_shape: tuple[int, int]) -> list[tuple[int, int]]:
    """(h, w) of the image entering each step, plus the final LR shape (len = steps + 1).

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


# ---- ops: (H, W, 3) float32 in [0, 1] (give or take overshoot) → same -----------------------------

# The largest float32 below 0.5: the one value in [0, 255] whose float32 sum with 0.5 rounds up to the
# next integer (to 1.0). Every other v + 0.5 is exact or stays below it (checked over all float32 in [0, 255]).
_BELOW_HALF = np.nextafter(np.float32(0.5), np.float32(0.0))


def quantize(img: np.ndarray) -> np.ndarray:
    """float32 [0, 1] → uint8: clip(x·255, 0, 255) rounded half away from zero."""
    v = img * np.float32(255.0)
    np.clip(v, 0.0, 255.0, out=v)
    v[v == _BELOW_HALF] = 0.0  # so that floor(v + 0.5) can stay in float32
    v += np.float32(0.5)
    return v.astype(np.uint8)


def usm_sigma(size: int) -> float:
    """OpenCV's sigma for a Gaussian of `size` px given sigma 0 (8.0 for 51 px)."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def unsharp_mask(img: np.ndarray, size: int = 51, weight: float = 0.5, threshold: float = 10.0) -> np.ndarray:
    """Real-ESRGAN's USMSharp: sharpen where |img - blur| > threshold/255, feathered by the same blur.

    residual = img - G(img); mask = |residual|·255 > threshold; soft = G(mask);
    out = img + soft·(clip(img + weight·residual, 0, 1) - img), G the `size` px Gaussian, σ = usm_sigma.
    Computed in place and with the 0/1 mask blurred as uint8 into float32 (the same sums, ~1.5x
    faster than a float mask): equal bit for bit to the formula above.

    img: (H, W, C) float32. Returns (H, W, C) float32 in [0, 1] when img is.
    """
    sigma = usm_sigma(size)
    residual = cv2.GaussianBlur(img, (size, size), sigma, borderType=cv2.BORDER_REFLECT_101)
    np.subtract(img, residual, out=residual)
    mask = np.abs(residual)
    mask *= np.float32(255.0)
    mask = np.greater(mask, np.float32(threshold)).view(np.uint8)
    gauss = cv2.getGaussianKernel(size, sigma, cv2.CV_32F)
    soft = cv2.sepFilter2D(mask, cv2.CV_32F, gauss, gauss, borderType=cv2.BORDER_REFLECT_101)
    out = np.multiply(residual, np.float32(weight), out=residual)
    out += img
    np.clip(out, 0.0, 1.0, out=out)  # the sharpened image
    out -= img
    out *= soft
    out += img
    return out


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate each channel with `kernel` ((K, K) float32, K odd), reflect-101 border.

    img: (H, W, C) float32. Returns (H, W, C) float32. Raises ValueError on a bad kernel.
    """
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be square with an odd side, got shape {kernel.shape}")
    kernel = kernel.astype(np.float32, copy=False)
    separable = _separate(kernel)
    if separable is not None:  # same sum in another order: equal to float rounding, ~10x faster
        col, row = separable
        return cv2.sepFilter2D(img, -1, row, col, borderType=cv2.BORDER_REFLECT_101)
    ny, nx = (_dft_tiles(n, kernel.shape[0]) for n in img.shape[:2])
    if ny == nx == 1:
        return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return _filter2d_tiled(img, kernel, ny, nx)


# cv2.filter2D correlates float32 images with kernels of >= 130 taps (13 px and up) through its
# DFT, in float64, over blocks of at least 244 px; a 256 px tile needs 2x2 such blocks (256² DFTs)
# for 268² px of data. Cut into tiles that each fit one smaller block, the same float64 sums take
# 1.3-1.8x less time; both are the exact correlation rounded to float32 (at most an ulp apart,
# and equal on every bench tile).
_DFT_MIN_TAPS = 130


def _opencv_dft_blocks(n: int, k: int) -> tuple[int, int]:
    """(blocks, DFT length) along one axis of OpenCV's crossCorr for an n px output, k px kernel."""
    block = min(max(round(4.5 * k), 257 - k), n)
    dft = cv2.getOptimalDFTSize(block + k - 1)
    return -(-n // min(dft - k + 1, n)), dft


@functools.lru_cache(maxsize=4096)
def _dft_tiles(n: int, k: int) -> int:
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
    padded = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_REFLECT_101)
    out = np.empty(img.shape[:2] + padded.shape[2:], img.dtype)  # filter2D drops a channel axis of 1, as here
    ys = [h * i // ny for i in range(ny + 1)]
    xs = [w * i // nx for i in range(nx + 1)]
    for y0, y1 in zip(ys, ys[1:]):
        for x0, x1 in zip(xs, xs[1:]):
            tile = cv2.filter2D(padded[y0:y1 + 2 * p, x0:x1 + 2 * p], -1, kernel, borderType=cv2.BORDER_REFLECT_101)
            out[y0:y1, x0:x1] = tile[p:p + y1 - y0, p:p + x1 - x0]
    return out


def _separate(kernel: np.ndarray, rtol: float = 1e-6) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, row) factors with kernel = column ⊗ row when the kernel is rank 1 (isotropic and
    axis-aligned Gaussians), else None. The factors are the marginals, scaled to the kernel's sum."""
    if kernel.shape[0] < 5:
        return None
    col = kernel.sum(axis=1, dtype=np.float64)
    row = kernel.sum(axis=0, dtype=np.float64) / kernel.sum(dtype=np.float64)
    if np.abs(np.outer(col, row) - kernel).max() > rtol * float(np.abs(kernel).max()):
        return None
    return col.astype(np.float32), row.astype(np.float32)


def resize(img: np.ndarray, shape: tuple[int, int], interp: str) -> np.ndarray:
    """Resize (H, W, C) float32 to `shape` = (h, w) with `interp` in {area, bilinear, bicubic}."""
    if interp not in INTERPOLATIONS:
        raise ValueError(f"interp must be one of {list(INTERPOLATIONS)}, got {interp!r}")
    if tuple(shape) == img.shape[:2]:
        return img
    return cv2.resize(img, (shape[1], shape[0]), interpolation=INTERPOLATIONS[interp])


def standard_normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The noise field of a noise step: float32 N(0, 1) of `shape` from PCG64(seed)."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def gray(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) → (H, W, 1) BT.601 luma, in float32."""
    r, g, b = (np.float32(w) for w in GRAY_WEIGHTS)
    return img[:, :, 0:1] * r + img[:, :, 1:2] * g + img[:, :, 2:3] * b


def poisson_levels(img_q: np.ndarray) -> int:
    """Real-ESRGAN's Poisson 'vals': 2 ** ceil(log2(number of distinct 8-bit values))."""
    distinct = int(np.count_nonzero(np.bincount(img_q.ravel(), minlength=256)))
    return int(2 ** math.ceil(math.log2(max(distinct, 1))))


def add_gaussian_noise(img: np.ndarray, sigma: float, gray_noise: bool, seed: int) -> np.ndarray:
    """img + N(0, σ/255) per pixel (one field for all channels when `gray_noise`), clipped to [0, 1]."""
    h, w = img.shape[:2]
    z = standard_normal(seed, (h, w, 1 if gray_noise else img.shape[2]))
    return np.clip(img + z * np.float32(sigma / 255.0), 0.0, 1.0)


@functools.lru_cache(maxsize=None)
def _poisson_tables(vals: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Inversion tables of Poisson(l·vals/255) for the 256 levels l (cached per process; vals <= 256).

    Returns (cdf, cells, m), row-major by level: cdf[l·m + k] = P(X <= k) for k < m, float64 from
    `scipy.special.pdtr`, last column set to 1 (m = vals + 12√vals + 21, so the tail it drops is
    below 1e-30). cells[l·G + b] packs the guide table's bracket for u in [b/G, (b+1)/G): its low 16
    bits are lo = min{k : cdf_l(k) > b/G}, its high bits hi - lo, hi the same for (b+1)/G (read as
    1 - 2⁻⁵³ for b + 1 = G), so the count is in [lo, hi] and is lo when hi = lo.
    """
    lam = np.arange(256, dtype=np.float64) * vals / 255.0
    m = int(vals + 12 * math.sqrt(vals)) + 21
    cdf = special.pdtr(np.arange(m, dtype=np.float64)[None, :], lam[:, None])
    cdf[:, -1] = 1.0
    bounds = np.arange(POISSON_GUIDE, dtype=np.float64) / POISSON_GUIDE
    guide = np.empty((256, POISSON_GUIDE + 1), np.int32)
    for level in range(256):
        guide[level, :-1] = np.searchsorted(cdf[level], bounds, side="right")
    guide[:, -1] = np.argmax(cdf == 1.0, axis=1)  # u < 1 never goes past the first P(X <= k) = 1
    cells = guide[:, :-1] | (np.diff(guide, axis=1) << 16)  # one gather per draw instead of two
    return cdf.ravel(), cells.ravel(), m


def poisson_counts(levels: np.ndarray, vals: int, seed: int) -> np.ndarray:
    """Poisson(levels·vals/255) draws, one per element, by exact inversion of the CDF.

    One uniform u per element from PCG64(seed) (`Generator.random`, 53 bits), count =
    min{k : P(X <= k) > u}. The guide table brackets that k: cell b = floor(u·G) of the level
    gives it outright for ~94 % of draws, a bisection between the cell's bounds finds the rest.
    (SciPy's `DiscreteGuideTable` does this for one distribution; here each pixel has its own.)

    levels: uint8 array, any shape. vals: a power of two <= 256. Returns int32 of the same shape.
    """
    cdf, cells, m = _poisson_tables(vals)
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


def add_poisson_noise(img: np.ndarray, scale: float, gray_noise: bool, seed: int) -> np.ndarray:
    """Real-ESRGAN's Poisson noise: counts from the 8-bit image (its luma when `gray_noise`).

    base = round(clip(x)·255)/255, vals = poisson_levels(base), counts = poisson_counts(base·255,
    vals, seed) ~ Poisson(base·vals), noise = (counts/vals - base)·scale, out = clip(img + noise, 0, 1).
    """
    base_q = quantize(gray(img) if gray_noise else img)
    vals = poisson_levels(base_q)
    noise = np.divide(poisson_counts(base_q, vals, seed), vals, dtype=np.float64)
    noise -= base_q / 255.0
    noise *= scale
    out = img + noise.astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def add_camera_noise(img: np.ndarray, shot: float, read: float, seed: int) -> np.ndarray:
    """Heteroscedastic sensor noise: to linear light (x^2.2), add N(0, shot·x + read), back, clip."""
    lin = np.power(np.clip(img, 0.0, 1.0), np.float32(CAMERA_GAMMA))
    z = standard_normal(seed, img.shape)
    lin = np.clip(lin + z * np.sqrt(lin * np.float32(shot) + np.float32(read)), 0.0, 1.0)
    return np.power(lin, np.float32(1.0 / CAMERA_GAMMA))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg round trip (OpenCV's encoder: 4:2:0) of the 8-bit-rounded image, decoded with
    nearest-neighbour chroma upsampling, as Real-ESRGAN's DiffJPEG reconstructs. Returns float32.

    libjpeg's own decoder upsamples chroma smoothly ("fancy" upsampling), which leaves a milder
    image than DiffJPEG's 2x2 repeat. The decode here stays libjpeg's (quantisation, IDCT): the
    luma plane comes from a grayscale decode (libjpeg outputs the Y component as it is) and the
    chroma planes from a half-size YCbCr decode (Pillow), where libjpeg decodes 4:2:0 chroma at
    its own resolution, neither scaled nor upsampled; those are repeated 2x2 and converted to RGB
    by OpenCV's YCrCb → RGB (full-range JFIF, coefficients rounded to 3 decimals: within a level).
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    h, w = img.shape[:2]
    # A side of 1 px has no half-size decode; libjpeg fills a block by repeating the edge, so
    # repeating it once more beforehand encodes the same blocks.
    img_q = np.pad(quantize(img), ((0, max(0, 2 - h)), (0, max(0, 2 - w)), (0, 0)), mode="edge")
    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(img_q, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    luma = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)
    half = _decode_half_ycbcr(enc, img_q.shape[:2])
    crcb = cv2.resize(half[:, :, [2, 1]], (2 * half.shape[1], 2 * half.shape[0]), interpolation=cv2.INTER_NEAREST)
    ycrcb = np.dstack([luma, crcb[: luma.shape[0], : luma.shape[1]]])[:h, :w]
    return to_float(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB))


def _decode_half_ycbcr(enc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """libjpeg (Pillow) 1/2-scale decode of `enc`, a JPEG of `shape` = (h, w) >= 2, to YCbCr uint8
    of ((h + 1) // 2, (w + 1) // 2). Raises ValueError if libjpeg returns another size."""
    import io

    from PIL import Image
    h, w = shape
    with Image.open(io.BytesIO(enc.tobytes())) as im:
        im.draft("YCbCr", (w // 2, h // 2))  # draft picks the largest reduction that stays >= the size
        out = np.asarray(im)
    if out.shape != ((h + 1) // 2, (w + 1) // 2, 3):
        raise ValueError(f"JPEG half-size decode of a {w}x{h} image: expected {(w + 1) // 2}x{(h + 1) // 2} "
                         f"YCbCr, got {out.shape[1]}x{out.shape[0]} {im.mode}")
    return out


# ---- the interpreter ----------------------------------------------------------------------------

def apply_step(img: np.ndarray, step: Step, hr_shape: tuple[int, int], scale: int) -> np.ndarray:
    """One recipe step on float32 (H, W, 3); `hr_shape` is the cropped HR (h, w)."""
    if isinstance(step, Usm):
        return unsharp_mask(img, step.size, step.weight, step.threshold)
    if isinstance(step, Blur):
        return img if step.kind == "none" else blur(img, step.kernel)
    if isinstance(step, Resize):
        return resize(img, resize_shape(step, img.shape[:2], hr_shape, scale), step.interp)
    if isinstance(step, Noise):
        if step.kind == "gaussian":
            return add_gaussian_noise(img, step.level, step.gray, step.seed)
        return add_poisson_noise(img, step.level, step.gray, step.seed)
    if isinstance(step, Camera):
        return add_camera_noise(img, step.shot, step.read, step.seed)
    if isinstance(step, Jpeg):
        return jpeg(img, step.quality)
    raise TypeError(f"unknown recipe step {step!r}")


def to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) * np.float32(1.0 / 255.0)


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
    """
    img = to_float(crop_to_scale(hr, recipe.scale))
    usm = leading_usm(recipe)
    if usm is not None:
        img = unsharp_mask(img, usm.size, usm.weight, usm.threshold)
    img.flags.writeable = False
    return img


def apply_recipe(hr: np.ndarray, recipe: Recipe, *, sharpened: np.ndarray | None = None) -> np.ndarray:
    """Degrade one HR tile: (H, W, 3) uint8 RGB → (H // s, W // s, 3) uint8 RGB.

    sharpened: `sharpen(hr, r)` of this HR, computed already for a recipe `r` with the same scale
    and `leading_usm` (another variant of the tile); the result is the same bytes, without
    repeating the USM (a third of a 256 px tile's work).

    Raises:
        ValueError: hr is not (H, W, 3) uint8, or `sharpened` has another shape than the cropped HR.
        TooSmallError: the tile is smaller than the recipe needs (see `plan_shapes`).
    """
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"hr must be (H, W, 3) uint8 RGB, got {hr.shape} {hr.dtype}")
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
    return quantize(img)
