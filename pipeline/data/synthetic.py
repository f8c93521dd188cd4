"""Synthetic HR and LR shard sets with the layout of `data/hr` and `data/lr`, for tests and benchmarks.

The LR tile of each HR tile is its exact `cv2.INTER_AREA` downscale (a box average for integer
scales), so any pair cut on the LR grid must satisfy `area(hr_patch) == lr_patch` bit for bit.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from pipeline.seeding import rng_for
from pipeline.io.images import encode_png
from pipeline.io.shards import Sample, json_bytes, write_shard_set


def synthetic_photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8: smooth colour gradients plus fine texture (compresses like a photo)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    for c in range(3):
        fy, fx, ph = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.28)]
        img[..., c] = 127 + 80 * np.sin(yy * fy + xx * fx + ph)
    img += rng.normal(0, 12, (height, width, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic_sets(root: str | Path, *, photos: int = 3, val_photos: int = 1, tiles_per_photo: int = 2,
                         tile: int = 64, scale: int = 4, variants: int = 2, seed: int = 0,
                         shard_bytes: int = 1 << 20) -> tuple[Path, Path]:
    """Write `root/hr` (HR tiles, ingest layout) and `root/lr` (LR tiles, degrade layout).

    HR keys `photoNN-<hash>_s1000_y00000_xNNNNN`; the last `val_photos` photos are the val split.
    LR keys `<hr_key>_v<variant>` with columns hr_key, variant, split, height, width, backend and
    two recipe scalars (`jpeg1_quality`, `blur1_kind`) so recipe handling is exercised.
    Returns (hr_dir, lr_dir).

    Raises:
        ValueError: `tile` not a multiple of `scale`, or `val_photos` >= `photos`.
    """
    if tile % scale:
        raise ValueError(f"tile must be a multiple of scale ({scale}), got {tile}")
    if not 0 <= val_photos < photos:
        raise ValueError(f"val_photos must be in [0, photos), got {val_photos} with photos={photos}")
    root = Path(root)
    rng = rng_for(0, seed, "synthetic")
    hr_samples, lr_samples = [], []
    for p in range(photos):
        img = synthetic_photo(rng, tile, tile * tiles_per_photo)
        sha = hashlib.sha256(img.tobytes()).hexdigest()
        split = "val" if p >= photos - val_photos else "train"
        for t in range(tiles_per_photo):
            hr = np.ascontiguousarray(img[:, t * tile:(t + 1) * tile])
            key = f"photo{p:02d}-{sha[:10]}_s1000_y00000_x{t * tile:05d}"
            cols = {"source": f"synthetic/photo{p:02d}.png", "source_sha256": sha, "scale": 1.0, "tile_x": t * tile,
                    "tile_y": 0, "height": tile, "width": tile, "split": split}
            hr_samples.append(Sample(key, {"hr.png": encode_png(hr), "json": json_bytes(cols)}, cols))
            lr = cv2.resize(hr, (tile // scale, tile // scale), interpolation=cv2.INTER_AREA)
            for v in range(variants):
                recipe = {"blur1_kind": ["iso", "aniso"][v % 2], "jpeg1_quality": float(30 + 10 * v)}
                lr_cols = {"hr_key": key, "variant": v, "split": split, "height": tile // scale,
                           "width": tile // scale, "backend": "synthetic", **recipe}
                lr_samples.append(Sample(f"{key}_v{v}", {"lr.png": encode_png(lr), "json": json_bytes(lr_cols)}, lr_cols))
    hr_dir, lr_dir = root / "hr", root / "lr"
    write_shard_set(hr_dir, sorted(hr_samples, key=lambda s: s.key), set_name="hr", shard_bytes=shard_bytes)
    write_shard_set(lr_dir, sorted(lr_samples, key=lambda s: s.key), set_name="lr", shard_bytes=shard_bytes)
    return hr_dir, lr_dir
