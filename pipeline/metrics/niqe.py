"""NIQE (Mittal, Soundararajan & Bovik 2013), computed as BasicSR 1.4.2's `calculate_niqe` does.

It reproduces BasicSR's scores on the shared fixtures (fixtures/niqe/basicsr_niqe.json, RGB of
cv2.imread's BGR) to 2e-5; tests/test_metrics.py holds every entry to 1e-4. It follows BasicSR's
float32 arithmetic, not MATLAB's float64, so it matches MATLAB's `niqe` only as closely as BasicSR
does (5.729573 against MATLAB's 5.72957338 on BasicSR's baboon.png). Every step but the float32
resize is BasicSR's to the bit. The resize's float32 sums can't be: their order depends on the BLAS
that torch calls, and NIQE's float32 local variance (a difference of near-equal numbers) carries
that rounding into the score: on a 10-block image other orders move it by up to 2.5e-3, and
BasicSR's own code on this project's machine (torch + MKL) is 2e-4 from its reference file. See
`imresize_float32` for the order used.

The image is reduced to BasicSR's Y (float32, rounded half to even), cropped to
whole 96×96 blocks, and at two scales (full, then MATLAB-`imresize`d by 0.5 with 48×48 blocks)
turned into MSCN coefficients: ``(Y - μ) / (σ + 1)`` with μ, σ local Gaussian statistics
(7×7 window, σ = 7/6, replicated borders). Each block gives 18 features from asymmetric generalized
Gaussian (AGGD) moment-matching fits: shape and mean scale of the coefficients, then shape, mean,
left and right scale of the products with the four neighbours (right, down, and both diagonals).
The 36-dim block features are modelled as one multivariate Gaussian and compared with the
pristine model: ``sqrt((μp - μd)ᵀ pinv((Σp + Σd) / 2) (μp - μd))``. Lower is better.

The pristine model is BasicSR's / MATLAB's `niqe_pris_params.npz` (arrays `mu_pris_param` (1, 36),
`cov_pris_param` (36, 36), optionally `gaussian_window` (7, 7)). It is never downloaded: pass its
path, set ``REALSYNTH_NIQE_PARAMS``, or put it at ``models/weights/niqe_pris_params.npz``.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.ndimage import convolve
from scipy.special import gamma

from pipeline.metrics.color import Y_OFFSET
from pipeline.metrics.resize import imresize_float32

NIQE_PARAMS_ENV = "REALSYNTH_NIQE_PARAMS"
DEFAULT_NIQE_PARAMS = Path("models/weights/niqe_pris_params.npz")  # relative to the working directory
BLOCK_SIZE = 96
NUM_FEATURES = 36

# AGGD shape grid searched by moment matching, as in MATLAB's estimateaggdparam.m (0.2:0.001:10).
# Built as BasicSR builds it (np.arange, reciprocals): the grid values differ from 0.2 + 0.001·i in
# the last bits, which can tip the argmin between neighbours.
_ALPHAS = np.arange(0.2, 10.001, 0.001)
_RECIP = np.reciprocal(_ALPHAS)
_RHO = gamma(2.0 * _RECIP) ** 2 / (gamma(_RECIP) * gamma(3.0 * _RECIP))
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


class NiqeParams(NamedTuple):
    """The pristine MVG model: mu (36,) and cov (36, 36) float64; window (7, 7) float64, sum 1."""

    mu: np.ndarray
    cov: np.ndarray
    window: np.ndarray


ParamsArg = str | os.PathLike | Mapping | NiqeParams | None


def niqe(img: np.ndarray, crop_border: int = 0, params: ParamsArg = None) -> float:
    """NIQE score of one image (lower is more natural).

    img: (H, W, 3) uint8 RGB, scored on its rounded Y (see `luma`); or (H, W) / (H, W, 1) uint8
    taken as the luma itself. At least 96×96 after cropping `crop_border` from each side.
    params: the pristine model, as a path to the `.npz`, a mapping of its arrays, or `None` for
    the default place (see `resolve_niqe_params`). Returns a float.

    An image of one block, where BasicSR's covariance is undefined, gets a zero covariance.

    Raises:
        ValueError: bad dtype/shape/crop, image smaller than one 96×96 block, or no block with
            finite features (e.g. a flat image).
        FileNotFoundError: the pristine model file does not exist.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise ValueError(f"img must be a uint8 numpy array, got {getattr(img, 'dtype', type(img).__name__)}")
    if img.ndim == 3 and img.shape[2] == 3:
        y = luma(img)
    elif img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        y = img.reshape(img.shape[:2]).astype(np.float32)
    else:
        raise ValueError(f"img must be (H, W, 3), (H, W, 1) or (H, W), got shape {img.shape}")
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative int, got {crop_border!r}")
    h, w = y.shape[0] - 2 * crop_border, y.shape[1] - 2 * crop_border
    if h < BLOCK_SIZE or w < BLOCK_SIZE:
        raise ValueError(f"niqe needs at least {BLOCK_SIZE}x{BLOCK_SIZE} pixels after crop_border="
                         f"{crop_border}, got {max(h, 0)}x{max(w, 0)} from {img.shape[0]}x{img.shape[1]}")
    rows, cols = h // BLOCK_SIZE, w // BLOCK_SIZE
    y = y[crop_border:crop_border + rows * BLOCK_SIZE, crop_border:crop_border + cols * BLOCK_SIZE]
    model = load_niqe_params(params)

    per_scale = []
    for scale in (1, 2):
        coeffs = mscn(y, model.window)
        size = BLOCK_SIZE // scale
        # Blocks column by column as BasicSR orders them (only the order of the mean's sums).
        per_scale.append(np.array([block_features(coeffs[r * size:(r + 1) * size, c * size:(c + 1) * size])
                                   for c in range(cols) for r in range(rows)]))
        if scale == 1:  # on [0, 1] and back, in float32, as BasicSR
            y = imresize_float32(y / np.float32(255.0), 0.5) * np.float32(255.0)
    feats = np.concatenate(per_scale, axis=1)  # (blocks, 36)

    finite = feats[~np.isnan(feats).any(axis=1)]
    if len(finite) == 0:
        raise ValueError(f"niqe is undefined for this image: none of its {len(feats)} blocks gives finite "
                         "features (flat or nearly flat content)")
    mu = np.nanmean(feats, axis=0)  # MATLAB's nanmean: every block's finite features count
    # MATLAB's nancov: drop rows with a NaN; one observation gives a zero covariance.
    cov = np.cov(finite, rowvar=False) if len(finite) > 1 else np.zeros((NUM_FEATURES, NUM_FEATURES))
    d = model.mu - mu
    return float(np.sqrt(d @ np.linalg.pinv((model.cov + cov) / 2.0) @ d))


def luma(img: np.ndarray) -> np.ndarray:
    """NIQE's luma of an (H, W, 3) uint8 RGB image: (H, W) float32 integers in [16, 235].

    BasicSR's `to_y_channel`: float32 RGB / 255, the BT.601 Y in float64, / 255 to float32, × 255
    in float32, then `round` (half to even). Against MATLAB's Y (float64, half away from zero)
    this moves a Y that lies within float32 rounding of n + 0.5 to the other side.
    """
    rgb = (img.astype(np.float32) / np.float32(255.0)).astype(np.float64)
    y = rgb[..., 2] * 24.966  # color.Y_WEIGHTS × 255, summed B, G, R as BasicSR
    y = y + rgb[..., 1] * 128.553
    y = y + rgb[..., 0] * 65.481 + Y_OFFSET
    return np.round((y / 255.0).astype(np.float32) * np.float32(255.0))


def mscn(y: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a luma plane, in y's float dtype.

    y: (H, W) float32 (as `niqe` and BasicSR use it) or float64, on [0, 255]. window: (k, k)
    float64 summing to 1. Returns (H, W) of y's dtype. scipy's filter sums in float64 and rounds
    to y's dtype; in float32 the variance E[y²] - μ² keeps only about 1e-2 absolute on [0, 255].
    """
    mu = convolve(y, window, mode="nearest")  # MATLAB imfilter(..., 'replicate')
    sigma = np.sqrt(np.abs(convolve(y * y, window, mode="nearest") - mu * mu))
    return (y - mu) / (sigma + 1.0)


def block_features(coeffs: np.ndarray) -> list[float]:
    """The 18 NIQE features of one block of MSCN coefficients (h, w) (NaN where undefined)."""
    alpha, beta_l, beta_r = fit_aggd(coeffs)
    feats = [alpha, (beta_l + beta_r) / 2.0]
    for shift in _SHIFTS:
        alpha, beta_l, beta_r = fit_aggd(coeffs * np.roll(coeffs, shift, axis=(0, 1)))
        mean = (beta_r - beta_l) * (gamma(2.0 / alpha) / gamma(1.0 / alpha))
        feats += [alpha, mean, beta_l, beta_r]
    return feats


def fit_aggd(values: np.ndarray) -> tuple[float, float, float]:
    """Moment-matching fit of an asymmetric generalized Gaussian: (shape α, left β, right β).

    The shape is the grid value (0.2 to 10, step 0.001) whose ratio Γ(2/α)² / (Γ(1/α) Γ(3/α))
    best matches the bias-corrected ratio E|x|² / E[x²] (MATLAB's estimateaggdparam.m).
    Moments are taken in the values' dtype (float32 in `niqe`, as BasicSR), their ratios in
    float64 (as BasicSR under NumPy 1's scalar promotion). Returns NaNs when the values lack a
    negative or a positive sample.
    """
    v = values.ravel()
    neg, pos = v[v < 0], v[v > 0]
    if neg.size == 0 or pos.size == 0:
        return float("nan"), float("nan"), float("nan")
    std_l, std_r = np.sqrt(np.mean(neg * neg)), np.sqrt(np.mean(pos * pos))
    g = np.float64(std_l / std_r)
    r = np.float64(np.mean(np.abs(v))) ** 2 / np.float64(np.mean(v * v))
    r_norm = r * (g**3 + 1.0) * (g + 1.0) / (g**2 + 1.0) ** 2
    alpha = float(_ALPHAS[np.argmin((_RHO - r_norm) ** 2)])
    c = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, float(np.float64(std_l) * c), float(np.float64(std_r) * c)


def resolve_niqe_params(params: str | os.PathLike | None = None) -> Path:
    """Where the pristine model is looked for: `params`, else $REALSYNTH_NIQE_PARAMS, else
    `models/weights/niqe_pris_params.npz` under the working directory. Does not check existence."""
    if params is not None:
        return Path(params)
    env = os.environ.get(NIQE_PARAMS_ENV)
    return Path(env) if env else DEFAULT_NIQE_PARAMS


def load_niqe_params(params: ParamsArg = None) -> NiqeParams:
    """Load and check the pristine model (files are cached by absolute path).

    Raises:
        FileNotFoundError: the file does not exist (one line naming it and where to put it).
        ValueError: the arrays are missing or have the wrong shapes.
    """
    if isinstance(params, NiqeParams):
        return params
    if isinstance(params, Mapping):
        return _check_params(params, "params")
    path = resolve_niqe_params(params)
    if not path.is_file():
        raise FileNotFoundError(
            f"NIQE pristine model not found: {path}; put niqe_pris_params.npz (from BasicSR's basicsr/metrics/) "
            f"there, at {DEFAULT_NIQE_PARAMS}, or point ${NIQE_PARAMS_ENV} at it")
    return _load_npz(str(path.resolve()))


def niqe_available(params: str | os.PathLike | Mapping | None = None) -> tuple[bool, str]:
    """(True, "") when `niqe(..., params=params)` can run, else (False, one-line reason)."""
    try:
        load_niqe_params(params)
    except (FileNotFoundError, ValueError) as err:
        return False, str(err)
    return True, ""


@functools.lru_cache(maxsize=8)
def _load_npz(path: str) -> NiqeParams:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None
    return _check_params(arrays, path)


def _check_params(arrays: Mapping, where: str) -> NiqeParams:
    for key in ("mu_pris_param", "cov_pris_param"):
        if key not in arrays:
            raise ValueError(f"{where}: missing array '{key}' (has {sorted(arrays)})")
    mu = np.asarray(arrays["mu_pris_param"], dtype=np.float64).reshape(-1)
    cov = np.asarray(arrays["cov_pris_param"], dtype=np.float64)
    if mu.shape != (NUM_FEATURES,) or cov.shape != (NUM_FEATURES, NUM_FEATURES):
        raise ValueError(f"{where}: expected mu_pris_param of {NUM_FEATURES} values and cov_pris_param "
                         f"({NUM_FEATURES}, {NUM_FEATURES}), got {np.shape(arrays['mu_pris_param'])} and {cov.shape}")
    if "gaussian_window" in arrays:
        window = np.asarray(arrays["gaussian_window"], dtype=np.float64)
        if window.ndim != 2 or window.shape[0] != window.shape[1] or window.shape[0] % 2 == 0:
            raise ValueError(f"{where}: gaussian_window must be a square odd-sized 2-D array, got {window.shape}")
    else:
        window = gaussian_window()
    for a in (mu, cov, window):
        a.setflags(write=False)  # shared through the cache
    return NiqeParams(mu=mu, cov=cov, window=window)


def gaussian_window(size: int = 7, sigma: float = 7.0 / 6.0) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)``: (size, size) float64 summing to 1."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2.0 * sigma**2))
    return g / g.sum()

