"""No-reference estimators of how an image was degraded, each robust to what the image shows.

Every function takes one image, (H, W, 3) uint8 RGB, or its luma/chroma planes as float32 in 8-bit
units, and returns a float (NaN where the image gives no evidence). `fingerprint.py` averages them
over a set of images; `calibrate` fits a preset so that synthetic LR gives the same numbers.

- noise: Immerkær's 3x3 mask (it cancels any locally planar signal) on the flattest pixels, as a
  robust median (MAD), so edges and texture add little;
- blur / effective resolution: Welch-averaged power spectrum over 64 px tiles (size-independent),
  as the share of energy above half Nyquist and the log-log slope of the mid band;
- JPEG: 8x8 blockiness on decoded pixels; the quantisation step of a few DCT coefficients (their
  values cluster on multiples of it) mapped to the IJG quality; for JPEG files, the IJG quality of
  the stored quantisation tables (`table_quality`);
- chroma subsampling: chroma's high-frequency share relative to luma's (4:2:0 leaves chroma little
  energy above a quarter cycle per pixel).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

NAN = float("nan")
TILE = 64  # spectrum tile, px
# IJG (libjpeg) standard tables, natural order (ITU T.81 Annex K)
STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64).reshape(8, 8)
STD_CHROMA = np.full((8, 8), 99.0)
STD_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
DCT_POSITIONS = ((0, 0), (0, 1), (1, 0), (1, 1))  # coefficients whose quantisation step is estimated
IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)  # response std = 6 σ on white noise


def ycbcr(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (H, W, 3) float32 Y, Cb, Cr (JFIF full range, 8-bit units)."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"img: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    ycrcb = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float32)  # rounds; within half a level
    y = _luma(img)
    return np.dstack([y, ycrcb[:, :, 2], ycrcb[:, :, 1]])


def _luma(img: np.ndarray) -> np.ndarray:
    """Unrounded JFIF luma: a JPEG's decoded Y plane comes back within rounding of RGB."""
    f = img.astype(np.float32)
    return 0.299 * f[:, :, 0] + 0.587 * f[:, :, 1] + 0.114 * f[:, :, 2]


def qualities_table(base: np.ndarray) -> np.ndarray:
    """(100, 8, 8): the IJG table scaled for quality 1..100 (libjpeg's `jpeg_quality_scaling`, baseline clamp)."""
    q = np.arange(1, 101, dtype=np.float64)
    scale = np.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)[:, None, None]
    return np.clip(np.floor((base[None] * scale + 50.0) / 100.0), 1, 255)


_LUMA_Q = qualities_table(STD_LUMA)
_CHROMA_Q = qualities_table(STD_CHROMA)


def noise_sigma(plane: np.ndarray, flat_fraction: float = 0.5) -> float:
    """Gaussian noise σ (8-bit units) of one plane: the MAD of Immerkær's mask response over the
    `flat_fraction` of pixels with the smallest Sobel gradient, / 6. On white Gaussian noise the
    gradient and the mask response are independent (odd vs even filters), so picking flat pixels
    does not bias the estimate; it keeps edges and texture out. Pixels near 0 or 255 (clipped) are left out."""
    if min(plane.shape) < 8:
        return NAN
    resp = cv2.filter2D(plane, cv2.CV_32F, IMMERKAER)[1:-1, 1:-1]
    gx = cv2.Sobel(plane, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1]
    gy = cv2.Sobel(plane, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1]
    grad = np.hypot(gx, gy)
    core = plane[1:-1, 1:-1]
    ok = (core > 3) & (core < 252)
    if ok.sum() < 64:
        return NAN
    cut = np.quantile(grad[ok], flat_fraction)
    sel = np.abs(resp[ok & (grad <= cut)])
    return float(np.median(sel) / 0.6745 / 6.0)


def _tiles(plane: np.ndarray, tile: int = TILE, max_tiles: int = 64) -> np.ndarray:
    """(n, tile, tile) tiles on a regular grid (evenly thinned to `max_tiles`), or the whole plane
    reflect-padded to one tile when it is smaller."""
    h, w = plane.shape
    if h < tile or w < tile:
        plane = np.pad(plane, ((0, max(0, tile - h)), (0, max(0, tile - w))), mode="reflect")[:tile, :tile]
        h, w = plane.shape
    ny, nx = h // tile, w // tile
    tiles = plane[: ny * tile, : nx * tile].reshape(ny, tile, nx, tile).swapaxes(1, 2).reshape(-1, tile, tile)
    if len(tiles) > max_tiles:
        tiles = tiles[np.linspace(0, len(tiles) - 1, max_tiles).round().astype(int)]
    return tiles


def _radius(tile: int = TILE) -> np.ndarray:
    f = np.fft.fftfreq(tile)
    return np.hypot(f[:, None], f[None, :])


def power_spectrum(plane: np.ndarray) -> np.ndarray:
    """Welch estimate: the mean periodogram of Hann-windowed, mean-removed TILE px tiles."""
    tiles = _tiles(plane.astype(np.float32))
    win = np.outer(np.hanning(TILE), np.hanning(TILE)).astype(np.float32)
    tiles = (tiles - tiles.mean(axis=(1, 2), keepdims=True)) * win
    return (np.abs(np.fft.fft2(tiles)) ** 2).mean(axis=0)


def hf_share(power: np.ndarray, cut: float = 0.25, low: float = 0.04) -> float:
    """Share of the energy between `low` and Nyquist (cycles/px, radial) that lies above `cut`."""
    r = _radius(power.shape[0])
    total = power[(r > low) & (r <= 0.5)].sum()
    return float(power[(r > cut) & (r <= 0.5)].sum() / total) if total > 1e-6 else NAN


def spectral_slope(power: np.ndarray, lo: float = 0.04, hi: float = 0.3) -> float:
    """Slope of log power vs log radial frequency over [lo, hi] cycles/px: about -2 for sharp
    natural images, steeper as blur removes the upper band."""
    r = _radius(power.shape[0])
    sel = (r >= lo) & (r <= hi) & (power > 0)
    if sel.sum() < 8:
        return NAN
    return float(np.polyfit(np.log(r[sel]), np.log(power[sel]), 1)[0])


def blockiness(plane: np.ndarray) -> float:
    """Mean absolute step across the 8x8 grid's boundaries over the mean step elsewhere, minus 1:
    about 0 without a grid, positive for JPEG blocks (both directions averaged)."""
    vals = []
    for d in (np.abs(np.diff(plane, axis=1)), np.abs(np.diff(plane, axis=0)).T):
        if d.shape[1] < 16:
            continue
        at = np.arange(d.shape[1]) % 8 == 7
        inside = d[:, ~at].mean()
        if inside > 1e-3:
            vals.append(d[:, at].mean() / inside - 1.0)
    return float(np.mean(vals)) if vals else NAN


def dct_blocks(plane: np.ndarray) -> np.ndarray:
    """(n, 8, 8) orthonormal DCT-II of the plane's aligned 8x8 blocks (level-shifted by 128): the
    transform JPEG quantises."""
    h, w = (s - s % 8 for s in plane.shape)
    blocks = (plane[:h, :w] - 128.0).reshape(h // 8, 8, w // 8, 8).swapaxes(1, 2).reshape(-1, 8, 8)
    k = np.arange(8)
    d = np.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * np.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return np.einsum("ij,njk,lk->nil", d, blocks.astype(np.float64), d)


def quant_step(coefs: np.ndarray, max_step: int = 120, threshold: float = 0.75, min_count: int = 32) -> float:
    """The largest step Q whose multiples the coefficients cluster on, else NaN (no quantisation
    seen). For each Q (largest first), the coefficients a step Q would not round to zero (|c| >= Q/2)
    must number `min_count` and have mean cos(2π c / Q) above `threshold`: 1 on multiples of Q,
    about 0 for unquantised values, and -1 on the odd levels when Q is twice the true step."""
    mag = np.abs(coefs)
    for q in range(max_step, 1, -1):
        c = coefs[mag >= q / 2]
        if len(c) >= min_count and np.cos(2 * np.pi * c / q).mean() > threshold:
            return float(q)
    return NAN


def dct_quality(plane: np.ndarray) -> float:
    """IJG quality whose luma table best fits the quantisation steps seen in the decoded pixels
    (`quant_step` of DCT_POSITIONS); 100 when no coefficient shows quantisation (no JPEG, or the
    grid was blurred or shifted after it), NaN for an image under 64 blocks."""
    blocks = dct_blocks(plane)
    if len(blocks) < 64:
        return NAN
    steps = {(u, v): quant_step(blocks[:, u, v]) for u, v in DCT_POSITIONS}
    seen = {p: s for p, s in steps.items() if not math.isnan(s)}
    if not seen:
        return 100.0
    err = sum(np.abs(_LUMA_Q[:, u, v] - s) / s for (u, v), s in seen.items())
    return float(np.argmin(err) + 1)


def table_quality(tables: dict[int, list[int]]) -> float:
    """IJG quality of a JPEG file's quantisation tables (Pillow's `im.quantization`): the quality
    whose scaled standard tables are nearest, compared as sorted values (so zigzag or natural order
    does not matter). NaN without tables."""
    if not tables:
        return NAN
    err = np.zeros(100)
    for idx, table in tables.items():
        ref = _LUMA_Q if idx == 0 else _CHROMA_Q
        t = np.sort(np.asarray(table, dtype=np.float64).ravel())
        if t.size != 64:
            continue
        err += np.abs(np.sort(ref.reshape(100, 64), axis=1) - t).sum(axis=1)
    return float(np.argmin(err) + 1)


def chroma_hf_ratio(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> float:
    """Chroma's share of energy above a quarter cycle/px over luma's: near 1 with full-resolution
    chroma, well below it after 4:2:0 subsampling. NaN for a near-gray image (no chroma signal)."""
    share_y = hf_share(power_spectrum(y))
    chroma = [hf_share(power_spectrum(c)) for c in (cb, cr) if float(np.std(c)) > 1.0]
    if not chroma or not share_y or math.isnan(share_y):
        return NAN
    return float(np.nanmean(chroma) / share_y)
