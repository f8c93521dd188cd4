"""The validation pairs: full LR tiles of the val split, each with the HR tile it was made from."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io.images import decode_png
from pipeline.io.shards import INDEX, ShardSet


@dataclass(frozen=True)
class Pair:
    """One val sample: `lr` (h, w, 3) uint8 and `hr` (scale·h, scale·w, 3) uint8, RGB."""
    key: str
    hr_key: str
    lr: np.ndarray
    hr: np.ndarray


def val_pairs(hr_dir: str | Path, lr_dir: str | Path, *, max_images: int = 0, seed: int = 0) -> pd.DataFrame:
    """Rows of the LR index in the val split, with their `hr_key`, sorted by key.

    The split is the LR index's `split` column, else the HR tile's. An LR set written from a folder
    (no `hr_key`, its own `hr.png` members) pairs each LR tile with its own HR member (`hr_key` empty).
    `max_images` > 0 keeps a subset of that size, drawn with `seed` (then sorted by key).

    Raises:
        FileNotFoundError: a missing index.
        ValueError: missing columns (`<dir>/index.parquet: missing column 'split'`) or no val rows.
    """
    lr_index = ShardSet(lr_dir).index
    where = Path(lr_dir) / INDEX
    if "hr_key" not in lr_index.columns:
        if "size_hr_png" not in lr_index.columns:
            raise ValueError(f"{where}: missing column 'hr_key' (and no hr.png members to pair with)")
        lr_index = lr_index.assign(hr_key="")
    if "split" not in lr_index.columns:
        hr_index = ShardSet(hr_dir).index
        if "split" not in hr_index.columns:
            raise ValueError(f"{where}: missing column 'split' (and {Path(hr_dir) / INDEX} has none either)")
        split = dict(zip(hr_index["key"], hr_index["split"]))
        lr_index = lr_index.assign(split=lr_index["hr_key"].map(split))
    val = lr_index.loc[lr_index["split"] == "val", ["key", "hr_key"]].sort_values("key").reset_index(drop=True)
    if val.empty:
        raise ValueError(f"{where}: no rows with split == 'val' to evaluate on")
    if 0 < max_images < len(val):
        keep = np.sort(np.random.default_rng(seed).choice(len(val), size=max_images, replace=False))
        val = val.iloc[keep].reset_index(drop=True)
    return val


def iter_pairs(hr_dir: str | Path, lr_dir: str | Path, rows: pd.DataFrame, scale: int) -> Iterator[Pair]:
    """Decode the pairs of `rows` (from `val_pairs`), HR cropped to exactly `scale` × the LR size.

    Raises:
        ValueError: an HR tile smaller than `scale` × its LR tile (naming both keys).
    """
    lr_set = ShardSet(lr_dir)
    hr_set = ShardSet(hr_dir) if rows["hr_key"].astype(bool).any() else None
    for key, hr_key in zip(rows["key"], rows["hr_key"]):
        if hr_key:
            lr = decode_png(lr_set.read(key, ["lr.png"])["lr.png"])
            hr = decode_png(hr_set.read(hr_key, ["hr.png"])["hr.png"])
        else:
            members = lr_set.read(key, ["lr.png", "hr.png"])
            lr, hr = decode_png(members["lr.png"]), decode_png(members["hr.png"])
        h, w = lr.shape[0] * scale, lr.shape[1] * scale
        if hr.shape[0] < h or hr.shape[1] < w:
            raise ValueError(f"LR tile {key!r} is {lr.shape[1]}x{lr.shape[0]} but its HR tile {hr_key or key!r} is "
                             f"{hr.shape[1]}x{hr.shape[0]}, smaller than x{scale} of it")
        yield Pair(key=key, hr_key=hr_key, lr=lr, hr=np.ascontiguousarray(hr[:h, :w]))


def grid_picks(hr_dir: str | Path, rows: pd.DataFrame, k: int) -> set[int]:
    """Positions in `rows` of up to `k` tiles for the image grid, spread over the source photos: the
    first tile of each photo in key order, then the second of each, and so on (photo = the HR index's
    `source`, else the HR key)."""
    groups = rows["hr_key"].where(rows["hr_key"].astype(bool), rows["key"])
    with contextlib.suppress(FileNotFoundError, ValueError):
        hr_index = ShardSet(hr_dir).index
        if "source" in hr_index.columns:
            groups = groups.map(dict(zip(hr_index["key"], hr_index["source"]))).fillna(groups)
    rank = groups.groupby(groups, sort=False).cumcount()
    order = sorted(range(len(rows)), key=lambda i: (int(rank.iloc[i]), i))
    return set(order[:k])
