"""Chroma subsampling on its own, independent of any codec: RGB → Y'CbCr, Cb and Cr halved in width
(4:2:2) or in both directions (4:2:0) by an encoder's filter, brought back to full size by a player's
filter, → RGB. Luma is carried through untouched, so what changes is colour detail alone: bleeding
at colour edges, desaturated thin lines, the stair-steps of nearest upsampling.

Filters (per axis that is halved):
- down `box`: the mean of each pixel pair (centre-sited, as JPEG/JFIF and most still encoders);
- down `bilinear`: the [1, 3, 3, 1] / 8 tent, the bilinear (triangle) kernel stretched to the
  factor 2 as antialiasing scalers apply it (swscale's SWS_BILINEAR), smoothing across pairs;
- down `nearest`: the first sample of each pair, dropping the other (cheap hardware encoders);
- up `nearest` (repeat, as DiffJPEG and simple decoders), `bilinear` (libjpeg's "fancy" upsampling
  and most players), `bicubic` (players with a better scaler).
Y'CbCr is full range with the BT.601 or BT.709 luma weights, its inverse exact (NumPy's inverse of
the matrix), so luma survives to float32 rounding except where the new colour leaves the RGB cube
and the output is clipped to [0, 1].
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from .params import check_choice, check_img, check_keys, draw_choice

LUMA_WEIGHTS = {"bt601": (0.299, 0.587, 0.114), "bt709": (0.2126, 0.7152, 0.0722)}
SUBSAMPLINGS = {"420": (2, 2), "422": (1, 2)}  # (vertical, horizontal) factor
DOWN = ("box", "bilinear", "nearest")
UP = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}

RANGES: dict[str, Any] = {
    "subsampling": ["420", "422"],
    "down": ["box", "bilinear", "nearest"],
    "up": ["nearest", "bilinear", "bicubic"],
    "matrix": ["bt601", "bt709"],
}


def ycbcr_matrix(matrix: str) -> np.ndarray:
    """(3, 3) float64 M with [Y', Cb, Cr] = M · [R', G', B'] (chroma centred on 0, in [-0.5, 0.5])."""
    check_choice("matrix", matrix, list(LUMA_WEIGHTS))
    kr, kg, kb = LUMA_WEIGHTS[matrix]
    return np.array([[kr, kg, kb],
                     [-kr / (2 - 2 * kb), -kg / (2 - 2 * kb), 0.5],
                     [0.5, -kg / (2 - 2 * kr), -kb / (2 - 2 * kr)]])


def to_ycbcr(img: np.ndarray, matrix: str) -> np.ndarray:
    """(H, W, 3) float32 R'G'B' → (H, W, 3) float32 Y'CbCr, chroma centred on 0."""
    return (img @ ycbcr_matrix(matrix).T.astype(np.float32)).astype(np.float32)


def from_ycbcr(ycc: np.ndarray, matrix: str) -> np.ndarray:
    """Inverse of `to_ycbcr` (NumPy's inverse of the matrix), unclipped float32."""
    inv = np.linalg.inv(ycbcr_matrix(matrix))
    return (ycc @ inv.T.astype(np.float32)).astype(np.float32)


def _tent_halve(plane: np.ndarray, axis: int) -> np.ndarray:
    """Halve an even-length axis with the [1, 3, 3, 1] / 8 tent centred between each pair, the
    border sample repeated: out[i] = (x[2i-1] + 3 x[2i] + 3 x[2i+1] + x[2i+2]) / 8."""
    pad = [(0, 0)] * plane.ndim
    pad[axis] = (1, 1)
    p = np.pad(plane, pad, mode="edge")
    n = plane.shape[axis] // 2

    def taps(start: int) -> np.ndarray:
        return np.take(p, np.arange(start, start + 2 * n, 2), axis=axis)
    return (taps(0) + 3 * taps(1) + 3 * taps(2) + taps(3)) * np.float32(0.125)


def downsample(chroma: np.ndarray, factors: tuple[int, int], down: str) -> np.ndarray:
    """(H, W, 2) float32, H and W multiples of the factors → (H / fy, W / fx, 2) by the `down` filter."""
    check_choice("down", down, DOWN)
    fy, fx = factors
    h, w = chroma.shape[:2]
    if down == "box":
        return cv2.resize(chroma, (w // fx, h // fy), interpolation=cv2.INTER_AREA)
    if down == "nearest":
        return np.ascontiguousarray(chroma[::fy, ::fx])
    out = _tent_halve(chroma, 1) if fx == 2 else chroma
    return _tent_halve(out, 0) if fy == 2 else out


def upsample(chroma: np.ndarray, shape: tuple[int, int], up: str) -> np.ndarray:
    """(h, w, 2) float32 → (H, W, 2) = `shape` by cv2.resize with the `up` interpolation."""
    check_choice("up", up, list(UP))
    return cv2.resize(chroma, (shape[1], shape[0]), interpolation=UP[up])


def sample_chroma(rng: np.random.Generator, ranges: Mapping[str, Any] = RANGES) -> dict[str, Any]:
    """Draw a subsampling scheme, the encoder's down filter, the player's up filter and the matrix."""
    return {key: draw_choice(rng, ranges, key) for key in ("subsampling", "down", "up", "matrix")}


def apply_chroma(img: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Subsample and restore the chroma of `img` (module docstring).

    img: (H, W, 3) float32 RGB in [0, 1], any H, W >= 1 (odd sides: the last row/column is repeated
    for the subsampling and dropped after). params: `subsampling` (420, 422), `down` (box, bilinear,
    nearest), `up` (nearest, bilinear, bicubic), `matrix` (bt601, bt709).
    Returns (H, W, 3) float32 in [0, 1]. Deterministic; no randomness.

    Raises:
        ValueError: bad image, missing key or a value outside those listed.
    """
    check_img(img)
    check_keys("chroma", params, ("subsampling", "down", "up", "matrix"))
    check_choice("subsampling", params["subsampling"], list(SUBSAMPLINGS))
    check_choice("down", params["down"], DOWN)
    check_choice("up", params["up"], list(UP))
    fy, fx = SUBSAMPLINGS[params["subsampling"]]
    h, w = img.shape[:2]
    padded = np.pad(img, ((0, h % fy), (0, w % fx), (0, 0)), mode="edge")
    ycc = to_ycbcr(padded, params["matrix"])
    small = downsample(np.ascontiguousarray(ycc[:, :, 1:]), (fy, fx), params["down"])
    ycc[:, :, 1:] = upsample(small, ycc.shape[:2], params["up"])
    return np.clip(from_ycbcr(ycc, params["matrix"])[:h, :w], 0.0, 1.0)
