"""The shard stage's plan and patch table, kept as columns so memory stays flat in the corpus size.

A plan lists one job per pair (`_Job`: what a worker needs to cut it), but holds them as arrays
of row numbers into the LR and HR indexes: a job, and the index columns of its pair (`metas`),
are made when asked for, a chunk of index rows at a time (`to_dict("records")` on those rows,
so every value is the one a whole-index `to_dict` gives). `PatchRows` keeps the cut patches as
int64 columns (plan, job, window, spill span). One dict per pair and one per patch grew the stage
process by ~8 KB a pair (bench/README.md, "Scale").
"""
from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import ShardConfig
from pipeline.io.shards import INDEX, Member, ShardSet

SPLITS = ("train", "val")
CHUNK = 4096  # index rows made into dicts at a time
# LR index columns that describe bookkeeping, not the recipe; everything else is carried as recipe.
_NOT_RECIPE = {"key", "shard", "sha256", "hr_key", "variant", "split", "height", "width", "source",
               "source_sha256", "scale", "tile_x", "tile_y", "lr_key", "hr_y", "hr_x", "lr_y", "lr_x",
               "lr_height", "lr_width", "hr_height", "hr_width"}
# the index columns the plan reads besides the recipe's (those an index lacks are left out)
_LR_COLUMNS = ("hr_key", "split", "variant", "height", "width", "source", "source_sha256", "size_hr_png")
_HR_COLUMNS = ("split", "height", "width", "source", "source_sha256")


@dataclass(frozen=True)
class Job:
    lr_key: str
    hr_key: str
    split: str
    lr_src: Member                          # `<lr_key>.lr.png`
    hr_src: Member                          # `<hr_key>.hr.png`, or the LR set's own `<lr_key>.hr.png`
    lr_hw: tuple[int, int] | None           # sizes the indexes claim (checked after decoding)
    hr_hw: tuple[int, int] | None
    n: int                                  # windows in random mode
    mode: str
    patch: int                              # HR patch side
    scale: int
    seed: int


class ListPlan(Sequence):
    """Jobs and their pairs' index columns as lists (a real-pair set: a few hundred photos)."""

    def __init__(self, jobs: list[Job], metas: list[dict[str, Any]]) -> None:
        self.jobs, self._metas = jobs, metas
        self.photos = sorted({m["photo"] for m in metas})
        code = {p: i for i, p in enumerate(self.photos)}
        self.photo = np.array([code[m["photo"]] for m in metas], dtype=np.int64)
        self.split = np.array([SPLITS.index(j.split) for j in jobs], dtype=np.int8)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i):
        return self.jobs[i]

    def lr_key(self, i: int) -> str:
        return self.jobs[i].lr_key

    def metas(self, jobs: Iterable[int]) -> dict[int, dict[str, Any]]:
        return {int(j): self._metas[j] for j in jobs}


class IndexPlan(Sequence):
    """One job per usable LR tile, in key order, as row numbers into the LR and HR indexes."""

    def __init__(self, lr_set: ShardSet, hr_set: ShardSet | None, cfg: ShardConfig, *, seed: int, scale: int) -> None:
        self.lr_set, self.hr_set, self.cfg, self.seed, self.scale = lr_set, hr_set, cfg, seed, scale
        self.recipe_cols = recipe_columns(lr_set.columns)
        # only the index columns a pair's job and metas read (keys and spans are the sets' arrays)
        self.lr = lr_set.frame([*_LR_COLUMNS, *self.recipe_cols])
        self.hr = hr_set.frame(_HR_COLUMNS) if hr_set is not None else None
        self.lr_row = np.zeros(0, np.int64)
        self.hr_row = np.zeros(0, np.int64)   # -1: the LR set's own hr.png
        self.split = np.zeros(0, np.int8)     # into SPLITS
        self.photo = np.zeros(0, np.int64)    # into self.photos
        self.photos: list[str] = []
        self.hw = np.zeros((0, 4), np.int64)  # lr h, w, hr h, w; -1: not in the index

    def __len__(self) -> int:
        return len(self.lr_row)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        lr_row, hr_row, split = int(self.lr_row[i]), int(self.hr_row[i]), SPLITS[self.split[i]]
        lr_h, lr_w, hr_h, hr_w = (int(v) for v in self.hw[i])
        own = hr_row < 0
        hr_src = self.lr_set.member_at(lr_row, "hr.png") if own else self.hr_set.member_at(hr_row, "hr.png")
        cfg = self.cfg
        return Job(self.lr_key(i), hr_src.key if not own else str(self._hr_key(lr_row)), split,
                   self.lr_set.member_at(lr_row, "lr.png"), hr_src, (lr_h, lr_w) if lr_h >= 0 else None,
                   (hr_h, hr_w) if hr_h >= 0 else None,
                   cfg.patches_per_pair if split == "train" else cfg.val_patches_per_pair, cfg.mode,
                   cfg.patch_size, self.scale, self.seed)

    def lr_key(self, i: int) -> str:
        return self.lr_set.keys[self.lr_row[i]]

    def _hr_key(self, lr_row: int) -> str:
        return str(self.lr["hr_key"].iloc[lr_row])

    def metas(self, jobs: Iterable[int]) -> dict[int, dict[str, Any]]:
        """The index columns of each job's pair (`pair_meta`), by job number."""
        jobs = np.unique(np.fromiter(jobs, dtype=np.int64))
        out = {}
        for start in range(0, len(jobs), CHUNK):
            part = jobs[start:start + CHUNK]
            lr_recs = self.lr_records(self.lr_row[part])
            hr_recs = self._hr_records(self.hr_row[part])
            for j, row, hr_row in zip(part.tolist(), lr_recs, hr_recs):
                out[j] = pair_meta(row, hr_row, SPLITS[self.split[j]], self.recipe_cols)
        return out

    def lr_records(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """The LR index rows `rows` as dicts of the columns read (`key` from the set's keys)."""
        recs = self.lr.iloc[rows].to_dict("records")
        for rec, key in zip(recs, self.lr_set.keys[rows]):
            rec["key"] = key
        return recs

    def _hr_records(self, rows: np.ndarray) -> list[dict[str, Any]]:
        if self.hr_set is None or not (rows >= 0).any():
            return [{} for _ in rows]
        recs = self.hr.iloc[np.maximum(rows, 0)].to_dict("records")
        return [rec if r >= 0 else {} for r, rec in zip(rows.tolist(), recs)]


def pair_meta(row: dict[str, Any], hr_row: dict[str, Any], split: str, recipe_cols: list[str]) -> dict[str, Any]:
    """A pair's index columns from its LR index row and HR index row ({} for the LR set's own HR)."""
    lr_key, hr_key = str(row["key"]), str(row["hr_key"])
    source = str(hr_row.get("source", row.get("source", hr_key)))
    return {"lr_key": lr_key, "hr_key": hr_key, "split": split, "source": source,
            "photo": str(hr_row.get("source_sha256", row.get("source_sha256", source))),
            "variant": int(row["variant"]) if pd.notna(row.get("variant", None)) else 0,
            "recipe": {c: plain(row[c]) for c in recipe_cols}}


def plan_pairs(lr_set: ShardSet, hr_set: ShardSet | None, cfg: ShardConfig, *,
               seed: int, scale: int) -> tuple[IndexPlan, list[tuple[str, str]]]:
    """One job per LR tile (sorted by key), and the pairs skipped before decoding."""
    where = lr_set.path / INDEX
    for col in ("key", "shard", "hr_key", "offset_lr_png", "size_lr_png"):
        if col not in lr_set.columns:
            raise ValueError(f"{where}: missing column {col!r}")
    own_hr = "size_hr_png" in lr_set.columns
    if hr_set is None and not own_hr:
        raise ValueError(f"{where}: the LR set carries no hr.png members, so the HR set (paths.hr) is needed")
    plan = IndexPlan(lr_set, hr_set, cfg, seed=seed, scale=scale)
    hr_keys = pd.Index(hr_set.keys) if hr_set is not None else None
    order = np.argsort(lr_set.keys, kind="stable")
    cols = {name: array("q") for name in ("lr_row", "hr_row", "split", "photo", "lr_h", "lr_w", "hr_h", "hr_w")}
    photos: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    for start in range(0, len(order), CHUNK):
        rows = order[start:start + CHUNK]
        recs = plan.lr_records(rows)
        found = (hr_keys.get_indexer([str(r["hr_key"]) for r in recs]) if hr_keys is not None
                 else np.full(len(recs), -1))
        hr_recs = plan._hr_records(found)
        for lr_row, row, hr_at, hr_row in zip(rows.tolist(), recs, found.tolist(), hr_recs):
            lr_key, hr_key = str(row["key"]), str(row["hr_key"])
            if own_hr and pd.notna(row.get("size_hr_png")):
                hr_at, hr_row = -1, {}
                split = row.get("split") if pd.notna(row.get("split", None)) else "train"
            elif hr_at >= 0:
                split = hr_row.get("split", row.get("split", "train"))
                if "split" in row and pd.notna(row["split"]) and row["split"] != split:
                    raise ValueError(f"{where}: sample {lr_key!r} is in split {row['split']!r} but its HR tile "
                                     f"{hr_key!r} is in {split!r}")
            else:
                skipped.append((lr_key, f"no HR tile {hr_key!r}" + (f" in {hr_set.path}" if hr_set is not None else "")))
                continue
            if split not in SPLITS:
                raise ValueError(f"{where}: sample {lr_key!r} has split {split!r}; expected one of {list(SPLITS)}")
            photo = pair_meta(row, hr_row, split, [])["photo"]
            for name, value in zip(cols, (lr_row, hr_at, SPLITS.index(split), photos.setdefault(photo, len(photos)),
                                          *_hw_or_none(row), *_hw_or_none(hr_row if hr_at >= 0 else {}))):
                cols[name].append(value)
    plan.lr_row, plan.hr_row = np.asarray(cols["lr_row"]), np.asarray(cols["hr_row"])
    plan.split, plan.photo = np.asarray(cols["split"], dtype=np.int8), np.asarray(cols["photo"])
    plan.hw = np.stack([np.asarray(cols[c]) for c in ("lr_h", "lr_w", "hr_h", "hr_w")], axis=1).reshape(-1, 4)
    plan.photos = list(photos)
    return plan, skipped


def _hw_or_none(row: dict[str, Any]) -> tuple[int, int]:
    """(height, width) the index row claims, (-1, -1) where it has none."""
    hw = hw_of(row)
    return hw if hw is not None else (-1, -1)


def hw_of(row: dict[str, Any]) -> tuple[int, int] | None:
    h, w = row.get("height"), row.get("width")
    return (int(h), int(w)) if h is not None and w is not None and pd.notna(h) and pd.notna(w) else None


def recipe_columns(columns: Iterable[str]) -> list[str]:
    """The recipe columns among an LR index's `columns` (names), in their order."""
    return [c for c in columns if c not in _NOT_RECIPE and not c.startswith(("offset_", "size_", "__index_level_"))]


def plain(v: Any) -> Any:
    """An index cell as a plain Python value (NaN → None)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        v = v.item()
        return None if isinstance(v, float) and math.isnan(v) else v
    return v


class PatchRows:
    """A split's cut patches as int64 columns: plan, job, window n, lr_y, lr_x, spill offset and sizes."""
    FIELDS = ("plan", "job", "n", "lr_y", "lr_x", "at", "hr_len", "lr_len")

    def __init__(self) -> None:
        self.cols = {f: array("q") for f in self.FIELDS}

    def __len__(self) -> int:
        return len(self.cols["job"])

    def add(self, *values: int) -> None:
        for f, v in zip(self.FIELDS, values):
            self.cols[f].append(v)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f: np.asarray(c, dtype=np.int64) for f, c in self.cols.items()}
