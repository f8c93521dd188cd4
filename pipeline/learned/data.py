"""The two unpaired domains and the crops each training step sees.

- X, clean LR: each HR image cropped to a multiple of the scale and resized to H/s × W/s exactly as
  the preset step `resize_lr` does (`pipeline.degrade.spec`), so the degrader is trained on what it
  will be applied to in a preset (`resize_lr` with the same interpolation, then `learned`);
- Y, real LR: the user's photos as read (8-bit RGB).
A step's batch is `batch_size` random crops of `crop` px (and a coin for a horizontal flip) from each
domain, drawn from `pipeline.seeding.rng_for(LEARNED, seed, step)` alone: a resumed run sees the same
batches.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pipeline.degrade.geometry import crop_to_scale
from pipeline.degrade.sources import open_source, read_source_hrs
from pipeline.degrade.spec import quantize, resize, to_float

INTERPS = ("area", "bilinear", "bicubic")


def read_folder(path: str | Path) -> tuple[list[str], list[np.ndarray], str]:
    """(keys, images, digest) of a folder of images (read recursively) or an HR shard set's `hr.png`s;
    digest is a sha256 over the sorted keys and the sha256 of each file.
    Raises FileNotFoundError for a missing or empty folder."""
    source = open_source(Path(path))
    keys = list(source.keys)
    images = read_source_hrs(source)
    h = hashlib.sha256()
    for k in keys:
        h.update(f"{k}:{source.sha256.get(k, '')}\n".encode())
    return keys, images, h.hexdigest()


def clean_lr(hr: np.ndarray, scale: int, interp: str = "area") -> np.ndarray:
    """(H, W, 3) uint8 → (H // scale, W // scale, 3) uint8, as `resize_lr` with `interp`.
    Raises ValueError on an unknown interp."""
    if interp not in INTERPS:
        raise ValueError(f"interp must be one of {list(INTERPS)}, got {interp!r}")
    hr = crop_to_scale(hr, scale)
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    return quantize(resize(to_float(hr), (h, w), interp))


def check_sizes(keys: list[str], images: list[np.ndarray], crop: int, where: str) -> None:
    """Raise ValueError naming the first image smaller than `crop` on a side."""
    for key, img in zip(keys, images):
        if min(img.shape[:2]) < crop:
            raise ValueError(f"{where}: {key} is {img.shape[1]}x{img.shape[0]} px, smaller than the crop {crop} px; "
                             "use a smaller --crop or larger images")


def random_crops(images: list[np.ndarray], n: int, crop: int, rng: np.random.Generator,
                 align: int = 1) -> np.ndarray:
    """(n, crop, crop, 3) uint8: per crop an image, a corner (a multiple of `align` on each axis) and a
    flip coin, in that order. The real LR is cropped with align 8: a JPEG's 8×8 grid then sits at the
    same phase in every crop, as in a whole image and in the fakes coded in the loop."""
    out = np.empty((n, crop, crop, 3), np.uint8)
    for i in range(n):
        img = images[int(rng.integers(len(images)))]
        y = align * int(rng.integers((img.shape[0] - crop) // align + 1))
        x = align * int(rng.integers((img.shape[1] - crop) // align + 1))
        patch = img[y:y + crop, x:x + crop]
        out[i] = patch[:, ::-1] if rng.random() < 0.5 else patch
    return out



def real_jpeg_quality(path: str | Path) -> int:
    """The libjpeg quality of the real LR's codec, for the codec in the loop (`--jpeg auto`): the
    rounded mean of `pipeline.calibrate`'s `jpeg_quality` (from the files' tables, or fitted to the
    decoded pixels' DCT steps) when at least half of the images show a JPEG grid; else 0 (none)."""
    from pipeline.calibrate.fingerprint import fingerprint

    fp = fingerprint(Path(path))
    share, quality = fp.get("jpeg_grid_share", float("nan")), fp.get("jpeg_quality", float("nan"))
    if not share >= 0.5 or not np.isfinite(quality):
        return 0
    return int(min(100, max(1, round(quality))))
