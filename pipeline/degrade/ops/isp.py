"""Camera ISP: unprocess an sRGB image to a noisy Bayer raw and develop it again, as BSRGAN's camera
model after Brooks et al., "Unprocessing Images for Learned Raw Denoising" (CVPR 2019).

Inverse (sRGB → camera raw, Brooks' `unprocess`):
  inverse tone curve (the smoothstep 3x² − 2x³) → inverse gamma (x^2.2) → inverse colour matrix
  (sRGB → camera RGB, a random mix of four cameras' XYZ → camera matrices, rows summing to 1) →
  inverse white balance and brightness (highlight-preserving, Brooks' `safe_invert_gains`) → Bayer
  mosaic (RGGB, BGGR, GRBG or GBRG).
Sensor: shot + read noise in linear light on the mosaic, variance = shot·x + read.
Forward (the camera): white balance on the mosaic → clip → demosaic (OpenCV: `bilinear`, `ea`
edge-aware, `vng`) → colour matrix (camera → sRGB) → clip → gamma (x^(1/2.2)) → smoothstep tone
curve → JPEG (libjpeg through Pillow, 4:2:0, standard decode).

Differences from Brooks: the brightness gain is applied again in the forward pass (Brooks leaves the
developed image darker), so that without noise and JPEG the op is close to the identity apart from
demosaicing; `rgb_gain` is uniform rather than 1/N(0.8, 0.1); the four matrix weights are uniform
then normalised (Brooks: uniform in [1e-8, 1e8], the same mix up to the floor). The mosaic is
quantised before OpenCV demosaics it, as a raw file is: to 16 bits for `bilinear` and `ea`, to 8
bits for `vng` (OpenCV's VNG takes 8-bit input only; coarse in the shadows of linear light).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from ..spec import quantize, to_float
from .params import (bounds, check_choice, check_img, check_keys, check_range, draw_choice, draw_float, draw_int,
                     draw_seed)
from .web import encode_decode

GAMMA = 2.2
# Brooks et al.'s XYZ → camera matrices of four cameras, and sRGB (D65) → XYZ.
XYZ2CAMS = np.array([
    [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
    [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
    [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
    [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]]])
RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                    [0.2126729, 0.7151522, 0.0721750],
                    [0.0193339, 0.1191920, 0.9503041]])
# Bayer layout name → the channel (0 R, 1 G, 2 B) at (0, 0), (0, 1), (1, 0), (1, 1).
BAYER = {"RGGB": (0, 1, 1, 2), "BGGR": (2, 1, 1, 0), "GRBG": (1, 0, 2, 1), "GBRG": (1, 2, 0, 1)}
DEMOSAIC = {"bilinear": "", "ea": "_EA", "vng": "_VNG"}
CCM_KEYS = ("ccm_w1", "ccm_w2", "ccm_w3", "ccm_w4")
# Brooks: log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26), a fit over phone and DSLR sensors.
READ_SLOPE, READ_OFFSET, READ_SCATTER = 2.18, 1.20, 0.26

RANGES: dict[str, Any] = {
    "rgb_gain": [1.0, 1.6],      # brightness inverted by unprocessing (Brooks: 1 / N(0.8, 0.1))
    "red_gain": [1.9, 2.4],      # white balance (Brooks' ranges)
    "blue_gain": [1.5, 1.9],
    "shot": [1e-4, 6e-3],        # log-uniform; Brooks goes to 0.012 (a very high ISO)
    "bayer": ["RGGB", "BGGR", "GRBG", "GBRG"],
    "demosaic": ["bilinear", "ea", "vng"],
    "jpeg_quality": [70, 95],
}


def sample_isp(rng: np.random.Generator, ranges: Mapping[str, Any] = RANGES) -> dict[str, Any]:
    """Draw gains, the colour-matrix mix (`ccm_w1..4`, summing to 1), shot and read noise (read from
    shot by Brooks' fit), Bayer layout, demosaic method, JPEG quality and the noise seed."""
    weights = rng.uniform(0.0, 1.0, 4) + 1e-8
    weights /= weights.sum()
    lo, hi = bounds(ranges, "shot")
    log_shot = float(rng.uniform(math.log(lo), math.log(hi)))
    log_read = READ_SLOPE * log_shot + READ_OFFSET + float(rng.normal(0.0, READ_SCATTER))
    params = {key: draw_float(rng, ranges, key) for key in ("rgb_gain", "red_gain", "blue_gain")}
    params.update({key: float(w) for key, w in zip(CCM_KEYS, weights)})
    params.update({"shot": math.exp(log_shot), "read": math.exp(log_read), "bayer": draw_choice(rng, ranges, "bayer"),
                   "demosaic": draw_choice(rng, ranges, "demosaic"),
                   "jpeg_quality": draw_int(rng, ranges, "jpeg_quality"), "seed": draw_seed(rng)})
    return params


def rgb2cam(params: Mapping[str, Any]) -> np.ndarray:
    """(3, 3) float64 sRGB → camera RGB: the `ccm_w*` mix of XYZ2CAMS times RGB2XYZ, rows normalised to 1."""
    weights = np.array([params[key] for key in CCM_KEYS], dtype=np.float64)
    m = np.tensordot(weights / weights.sum(), XYZ2CAMS, axes=1) @ RGB2XYZ
    return m / m.sum(axis=1, keepdims=True)


def wb_gains(params: Mapping[str, Any]) -> np.ndarray:
    """(3,) float32 forward gains: (red_gain, 1, blue_gain) · rgb_gain."""
    return (np.array([params["red_gain"], 1.0, params["blue_gain"]]) * params["rgb_gain"]).astype(np.float32)


def unprocess(img: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """sRGB → linear camera RGB before white balance: inverse smoothstep, x^2.2, sRGB → camera,
    gains inverted where the image is not near white (Brooks' highlight-preserving inverse: near
    white, gains fade to 1 so highlights stay saturated rather than turning grey).
    img: (H, W, 3) float32 in [0, 1]. Returns (H, W, 3) float32."""
    x = np.clip(img, 0.0, 1.0).astype(np.float64)
    x = 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)
    x = np.maximum(x, 1e-8) ** GAMMA
    x = x @ rgb2cam(params).T
    inverse = 1.0 / wb_gains(params).astype(np.float64)
    mask = (np.maximum(x.mean(axis=2, keepdims=True) - 0.9, 0.0) / 0.1) ** 2
    return (x * np.maximum(mask + (1.0 - mask) * inverse, inverse)).astype(np.float32)


def develop(cam: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """White-balanced linear camera RGB → sRGB: camera → sRGB matrix, clip, x^(1/2.2), smoothstep.
    cam: (H, W, 3) float32. Returns (H, W, 3) float32 in [0, 1]."""
    x = cam.astype(np.float64) @ np.linalg.inv(rgb2cam(params)).T
    x = np.maximum(np.clip(x, 0.0, 1.0), 1e-8) ** (1.0 / GAMMA)
    return (3.0 * x**2 - 2.0 * x**3).astype(np.float32)


def mosaic(cam: np.ndarray, bayer: str) -> np.ndarray:
    """(H, W, 3) → (H, W): each pixel keeps the channel its `bayer` site records."""
    check_choice("bayer", bayer, list(BAYER))
    out = np.empty(cam.shape[:2], cam.dtype)
    for (dy, dx), channel in zip(((0, 0), (0, 1), (1, 0), (1, 1)), BAYER[bayer]):
        out[dy::2, dx::2] = cam[dy::2, dx::2, channel]
    return out


def add_sensor_noise(raw: np.ndarray, shot: float, read: float, seed: int) -> np.ndarray:
    """raw + z·√(shot·raw + read), z ~ N(0, 1) float32 from PCG64(seed); (H, W) float32, unclipped."""
    z = np.random.default_rng(seed).standard_normal(raw.shape, dtype=np.float32)
    return raw + z * np.sqrt(np.maximum(raw, 0.0) * np.float32(shot) + np.float32(read))


def demosaic(raw: np.ndarray, bayer: str, method: str) -> np.ndarray:
    """OpenCV demosaicing of a (H, W) float32 mosaic in [0, 1], quantised first to 16 bits (8 for
    `vng`, which OpenCV takes in 8 bits only). Returns (H, W, 3) float32 RGB in [0, 1].
    Raises ValueError on an unknown layout or method."""
    check_choice("bayer", bayer, list(BAYER))
    check_choice("demosaic", method, list(DEMOSAIC))
    code = getattr(cv2, f"COLOR_Bayer{bayer}2RGB{DEMOSAIC[method]}")
    peak = 255.0 if method == "vng" else 65535.0
    levels = np.floor(np.clip(raw, 0.0, 1.0) * peak + 0.5).astype(np.uint8 if method == "vng" else np.uint16)
    return cv2.demosaicing(levels, code).astype(np.float32) * np.float32(1.0 / peak)


def _check_isp_params(params: Mapping[str, Any]) -> None:
    """Raise ValueError on a missing key or a value outside its sensible bounds."""
    check_keys("isp", params, ("rgb_gain", "red_gain", "blue_gain", *CCM_KEYS, "shot", "read", "bayer",
                               "demosaic", "jpeg_quality", "seed"))
    for key in ("rgb_gain", "red_gain", "blue_gain"):
        check_range(key, params[key], 0.1, 10.0)
    for key in CCM_KEYS:
        check_range(key, params[key], 0.0, 1.0)
    check_range("shot", params["shot"], 0.0, 1.0)
    check_range("read", params["read"], 0.0, 1.0)
    check_choice("bayer", params["bayer"], list(BAYER))
    check_choice("demosaic", params["demosaic"], list(DEMOSAIC))
    check_range("jpeg_quality", params["jpeg_quality"], 1, 100)


def apply_isp(img: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Unprocess `img` to a raw mosaic, add sensor noise, develop it and save it as a camera JPEG.

    img: (H, W, 3) float32 RGB in [0, 1], H, W >= 2. params: as `sample_isp` draws them.
    Returns (H, W, 3) float32 in [0, 1] (8-bit levels). Deterministic: the noise comes from
    params["seed"].

    Raises:
        ValueError: bad image, a missing key or a value out of bounds.
    """
    check_img(img, min_side=2)
    _check_isp_params(params)
    raw = mosaic(unprocess(img, params), params["bayer"])
    raw = add_sensor_noise(raw, params["shot"], params["read"], params["seed"])
    raw = np.clip(raw * mosaic(np.broadcast_to(wb_gains(params), img.shape), params["bayer"]), 0.0, 1.0)
    srgb = develop(demosaic(raw, params["bayer"], params["demosaic"]), params)
    return to_float(encode_decode(quantize(srgb), "jpeg", params["jpeg_quality"], "4:2:0"))
