"""Web re-encoding: an image passed around the web 1-4 times, each time resized by a site's image
library and re-encoded as JPEG, WebP or AVIF at that site's quality and chroma subsampling.

Each generation is Pillow's (the library most upload pipelines run): `Image.resize` with an
antialiasing filter to `scale` × the original size (scales are relative to the original, not
compounded), then a save to memory and a standard decode (libjpeg with its smooth chroma
upsampling, libwebp, libavif). The op keeps its shape: after the last generation the image is
resized back to the input size (bicubic) when a generation changed it, so a preset's resize step
alone sets the LR size.
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..spec import quantize, to_float
from .params import check_choice, check_img, check_keys, check_range, draw_choice, draw_float, draw_int


def _has_avif() -> bool:
    from PIL import features
    return bool(features.check("avif"))


FORMATS = ("jpeg", "webp", "avif")
SUBSAMPLINGS = {"jpeg": ("4:2:0", "4:2:2", "4:4:4"), "webp": ("4:2:0",), "avif": ("4:2:0", "4:2:2", "4:4:4")}
RESAMPLE = ("box", "bilinear", "bicubic", "lanczos")
MAX_GENERATIONS = 4
GENERATION_KEYS = ("format", "quality", "subsampling", "scale", "resample")

# WebP's lossy format is 4:2:0 only. AVIF is in the defaults only where Pillow has libavif.
RANGES: dict[str, Any] = {
    "generations": [1, 4],
    "format": ["jpeg", "webp", "avif"] if _has_avif() else ["jpeg", "webp"],
    "quality": {"jpeg": [50, 95], "webp": [45, 95], "avif": [35, 85]},
    "subsampling": {"jpeg": ["4:2:0", "4:2:2", "4:4:4"], "webp": ["4:2:0"], "avif": ["4:2:0", "4:4:4"]},
    "scale": [0.6, 1.0],   # of the original size, per generation
    "resample": ["box", "bilinear", "bicubic", "lanczos"],
}


def encode_decode(img_u8: np.ndarray, fmt: str, quality: int, subsampling: str) -> np.ndarray:
    """Save (H, W, 3) uint8 RGB as `fmt` in memory with Pillow and decode it back: (H, W, 3) uint8.

    quality: 1-100 (all three formats' 0-100 scale). subsampling: `4:2:0`, `4:2:2` or `4:4:4`
    (WebP: 4:2:0 only). AVIF encodes with libaom, single-threaded so the bytes
    repeat, at libavif speed 9 (a fast, server-side setting; bench/README.md has its cost).
    Raises ValueError on a bad format, quality or subsampling, or AVIF without libavif in Pillow.
    """
    from PIL import Image
    check_choice("format", fmt, FORMATS)
    check_range("quality", quality, 1, 100)
    check_choice(f"subsampling (for {fmt})", subsampling, SUBSAMPLINGS[fmt])
    if fmt == "avif" and not _has_avif():
        raise ValueError("format 'avif': this Pillow build has no AVIF support (libavif)")
    options: dict[str, Any] = {"quality": int(quality)}
    if fmt == "jpeg":
        options["subsampling"] = subsampling
    elif fmt == "avif":
        options.update(subsampling=subsampling, speed=9, max_threads=1, codec="aom")
    buf = io.BytesIO()
    Image.fromarray(img_u8).save(buf, format=fmt.upper(), **options)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return np.asarray(im.convert("RGB"))


def resize_u8(img_u8: np.ndarray, shape: tuple[int, int], resample: str) -> np.ndarray:
    """Pillow resize of (H, W, 3) uint8 to `shape` = (h, w) with `resample` (antialiased when shrinking)."""
    from PIL import Image
    check_choice("resample", resample, RESAMPLE)
    if tuple(shape) == img_u8.shape[:2]:
        return img_u8
    filt = getattr(Image.Resampling, resample.upper())
    return np.asarray(Image.fromarray(img_u8).resize((shape[1], shape[0]), filt))


def sample_web(rng: np.random.Generator, ranges: Mapping[str, Any] = RANGES) -> dict[str, Any]:
    """Draw the number of generations and, for each generation i (1-based), flat keys `gen{i}_format`,
    `gen{i}_quality`, `gen{i}_subsampling`, `gen{i}_scale`, `gen{i}_resample`."""
    n = draw_int(rng, ranges, "generations")
    params: dict[str, Any] = {"generations": n}
    for i in range(1, n + 1):
        fmt = draw_choice(rng, ranges, "format")
        params.update({f"gen{i}_format": fmt, f"gen{i}_quality": draw_int(rng, ranges["quality"], fmt),
                       f"gen{i}_subsampling": draw_choice(rng, ranges["subsampling"], fmt),
                       f"gen{i}_scale": draw_float(rng, ranges, "scale"),
                       f"gen{i}_resample": draw_choice(rng, ranges, "resample")})
    return params


def apply_web(img: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Run the re-encoding chain of `params` on `img` (module docstring).

    img: (H, W, 3) float32 RGB in [0, 1]. params: as `sample_web` draws them (`generations` in
    1-4, then each generation's keys). Returns (H, W, 3) float32 in [0, 1] (8-bit levels).
    Deterministic; no randomness.

    Raises:
        ValueError: bad image, a missing key, or a value outside what the encoders take.
    """
    check_img(img)
    check_keys("web", params, ("generations",))
    n = params["generations"]
    check_range("generations", n, 1, MAX_GENERATIONS)
    h, w = img.shape[:2]
    out = quantize(img)
    for i in range(1, n + 1):
        check_keys("web", params, [f"gen{i}_{key}" for key in GENERATION_KEYS])
        scale = params[f"gen{i}_scale"]
        check_range(f"gen{i}_scale", scale, 0.05, 4.0)
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
        out = resize_u8(out, shape, params[f"gen{i}_resample"])
        out = encode_decode(out, params[f"gen{i}_format"], params[f"gen{i}_quality"], params[f"gen{i}_subsampling"])
    return to_float(resize_u8(out, (h, w), "bicubic"))
