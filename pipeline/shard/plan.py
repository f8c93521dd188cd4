"""The shard stage's plan and patch table, kept as columns so memory stays flat in the corpus size.

A plan lists one job per pair (`Job`: what a worker needs to cut it), but holds them as arrays
of row numbers into the LR and HR indexes; a job is made when asked for. The LR index is read once,
a chunk of rows at a time (`to_dict("records")` on those rows, so every value is the one a
whole-index `to_dict` gives), and the index columns of each pair (`pair_meta`) are written to a
file as JSON as they are planned, to be read back by offset when the pair's patches are written
(`metas`): the plan holds no column of the LR index. `PatchRows` keeps the cut patches as int32
columns (plan, job, window, spill span). One dict per pair and one per patch grew the stage process
by ~8 KB a pair, the LR index columns held by the plan by ~1 KB (bench/README.md, "Scale").
"""
from __future__ import annotations

import json
import math
import os
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

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
    """One job per usable LR tile, in key order, as row numbers into the LR and HR indexes.

    The LR index is read once, a row group at a time, while planning (`plan_pairs`): each pair's
    index columns (`pair_meta`) go to `meta_file` as JSON, and the plan keeps only their spans, so
    it holds no column of the LR index; the HR columns a pair reads are kept coded (`_Coded`)."""

    def __init__(self, lr_set: ShardSet, hr_set: ShardSet | None, cfg: ShardConfig, *, seed: int, scale: int,
                 meta_file: BinaryIO) -> None:
        self.lr_set, self.hr_set, self.cfg, self.seed, self.scale = lr_set, hr_set, cfg, seed, scale
        self.recipe_cols = recipe_columns(lr_set.columns)
        self.hr = _Coded(hr_set, _HR_COLUMNS) if hr_set is not None else None
        self.meta_file = meta_file
        self.lr_row = np.zeros(0, np.int32)
        self.hr_row = np.zeros(0, np.int32)   # -1: the LR set's own hr.png
        self.split = np.zeros(0, np.int8)     # into SPLITS
        self.photo = np.zeros(0, np.int32)    # into self.photos
        self.photos: list[str] = []
        self.hw = np.zeros((0, 4), np.int32)  # lr h, w, hr h, w; -1: not in the index
        self.meta_at = np.zeros(0, np.int64)  # offset of each job's pair_meta JSON in meta_file
        self.meta_size = np.zeros(0, np.int32)  # and its length

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
        return Job(self.lr_key(i), hr_src.key if not own else self._meta(i)["hr_key"], split,
                   self.lr_set.member_at(lr_row, "lr.png"), hr_src, (lr_h, lr_w) if lr_h >= 0 else None,
                   (hr_h, hr_w) if hr_h >= 0 else None,
                   cfg.patches_per_pair if split == "train" else cfg.val_patches_per_pair, cfg.mode,
                   cfg.patch_size, self.scale, self.seed)

    def lr_key(self, i: int) -> str:
        return self.lr_set.keys[self.lr_row[i]]

    def metas(self, jobs: Iterable[int]) -> dict[int, dict[str, Any]]:
        """The index columns of each job's pair (`pair_meta`), by job number."""
        return {j: self._meta(j) for j in np.unique(np.fromiter(jobs, dtype=np.int64)).tolist()}

    def _meta(self, i: int) -> dict[str, Any]:
        at, size = int(self.meta_at[i]), int(self.meta_size[i])
        return json.loads(os.pread(self.meta_file.fileno(), size, at))


class _Coded:
    """Columns of an index kept coded, for rows read in any order: strings as int32 codes into their
    distinct values (a photo's source and digest repeat over its tiles), numbers as float64. Read a
    row group at a time; `records(rows)` gives what `frame(columns).iloc[rows].to_dict("records")`
    gives (NaN where a value is missing)."""

    def __init__(self, shards: ShardSet, columns: Sequence[str]) -> None:
        self.names = [c for c in columns if c in shards.columns]
        self.values: dict[str, list[Any]] = {c: [] for c in self.names}
        parts: dict[str, list[np.ndarray]] = {c: [] for c in self.names}
        known: dict[str, dict[Any, int]] = {c: {} for c in self.names}
        for piece in shards.iter_frames(self.names):
            for c in self.names:
                col = piece[c]
                if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
                    parts[c].append(col.to_numpy(dtype=np.float64))
                    continue
                table, values = known[c], self.values[c]
                codes = [table.setdefault(v, len(table)) if isinstance(v, str) else -1 for v in col.tolist()]
                values.extend(list(table)[len(values):])
                parts[c].append(np.asarray(codes, dtype=np.int32))
        self.columns = {c: np.concatenate(p) if p else np.zeros(0) for c, p in parts.items()}

    def records(self, rows: np.ndarray) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in range(len(rows))]
        for c in self.names:
            col, values = self.columns[c][rows], self.values[c]
            if col.dtype == np.int32:
                cells = [values[k] if k >= 0 else math.nan for k in col.tolist()]
            else:
                cells = [int(v) if v.is_integer() else v for v in col.tolist()]
            for rec, cell in zip(out, cells):
                rec[c] = cell
        return out


def pair_meta(row: dict[str, Any], hr_row: dict[str, Any], split: str, recipe_cols: list[str]) -> dict[str, Any]:
    """A pair's index columns from its LR index row and HR index row ({} for the LR set's own HR)."""
    lr_key, hr_key = str(row["key"]), str(row["hr_key"])
    source = str(hr_row.get("source", row.get("source", hr_key)))
    return {"lr_key": lr_key, "hr_key": hr_key, "split": split, "source": source,
            "photo": str(hr_row.get("source_sha256", row.get("source_sha256", source))),
            "variant": int(row["variant"]) if pd.notna(row.get("variant", None)) else 0,
            "recipe": {c: plain(row[c]) for c in recipe_cols}}


def plan_pairs(lr_set: ShardSet, hr_set: ShardSet | None, cfg: ShardConfig, *, seed: int, scale: int,
               meta_file: BinaryIO) -> tuple[IndexPlan, list[tuple[str, str]]]:
    """One job per LR tile (sorted by key), and the pairs skipped before decoding. The pairs'
    index columns are written to `meta_file` (`IndexPlan`)."""
    where = lr_set.path / INDEX
    for col in ("key", "shard", "hr_key", "offset_lr_png", "size_lr_png"):
        if col not in lr_set.columns:
            raise ValueError(f"{where}: missing column {col!r}")
    own_hr = "size_hr_png" in lr_set.columns
    if hr_set is None and not own_hr:
        raise ValueError(f"{where}: the LR set carries no hr.png members, so the HR set (paths.hr) is needed")
    for shards in (lr_set, hr_set):
        if shards is not None and not shards.keys.is_sorted():
            raise ValueError(f"{shards.path / INDEX}: samples are not in sorted key order (a shard set's index "
                             "is: pipeline/io/shards.py)")
    plan = IndexPlan(lr_set, hr_set, cfg, seed=seed, scale=scale, meta_file=meta_file)
    # int32 wherever a value fits (row numbers, sizes, codes): the plan holds ~40 bytes a pair
    cols = {name: array("q" if name == "meta_at" else "b" if name == "split" else "i")
            for name in ("lr_row", "hr_row", "split", "photo", "lr_h", "lr_w", "hr_h", "hr_w", "meta_at", "meta_size")}
    photos: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    start = 0
    for piece in lr_set.iter_frames([*_LR_COLUMNS, *plan.recipe_cols], rows=CHUNK):  # rows in key order
        recs = piece.to_dict("records")
        for rec, key in zip(recs, lr_set.keys[start:start + len(recs)]):
            rec["key"] = key
        found = (hr_set.keys.find_all([str(r["hr_key"]) for r in recs]) if hr_set is not None
                 else np.full(len(recs), -1))
        hr_recs = plan.hr.records(np.maximum(found, 0)) if plan.hr is not None else [{} for _ in recs]
        for lr_row, row, hr_at, hr_row in zip(range(start, start + len(recs)), recs, found.tolist(), hr_recs):
            planned = _plan_pair(row, hr_row if hr_at >= 0 else None, hr_at, own_hr, where, hr_set)
            if isinstance(planned, str):
                skipped.append((str(row["key"]), planned))
                continue
            hr_at, hr_row, split = planned
            meta = pair_meta(row, hr_row, split, plan.recipe_cols)
            blob = json.dumps(meta, separators=(",", ":")).encode()  # floats as repr: read back equal
            photo = photos.setdefault(meta["photo"], len(photos))
            for name, value in zip(cols, (lr_row, hr_at, SPLITS.index(split), photo, *_hw_or_none(row),
                                          *_hw_or_none(hr_row), meta_file.tell(), len(blob))):
                cols[name].append(value)
            meta_file.write(blob)
        start += len(recs)
    meta_file.flush()
    plan.lr_row, plan.hr_row = np.asarray(cols["lr_row"]), np.asarray(cols["hr_row"])
    plan.split, plan.photo = np.asarray(cols["split"]), np.asarray(cols["photo"])
    plan.hw = np.stack([np.asarray(cols[c]) for c in ("lr_h", "lr_w", "hr_h", "hr_w")], axis=1).reshape(-1, 4)
    plan.meta_at = np.asarray(cols["meta_at"])
    plan.meta_size = np.asarray(cols["meta_size"])
    plan.photos = list(photos)
    return plan, skipped


def _plan_pair(row: dict[str, Any], hr_row: dict[str, Any] | None, hr_at: int, own_hr: bool, where: Path,
               hr_set: ShardSet | None) -> tuple[int, dict[str, Any], str] | str:
    """(HR row number or -1 for the LR set's own hr.png, the HR index row, split) of one LR index
    row, or why it is skipped. Raises ValueError for a split that disagrees with the HR tile's."""
    lr_key, hr_key = str(row["key"]), str(row["hr_key"])
    if own_hr and pd.notna(row.get("size_hr_png")):
        hr_at, hr_row = -1, {}
        split = row.get("split") if pd.notna(row.get("split", None)) else "train"
    elif hr_row is not None:
        split = hr_row.get("split", row.get("split", "train"))
        if "split" in row and pd.notna(row["split"]) and row["split"] != split:
            raise ValueError(f"{where}: sample {lr_key!r} is in split {row['split']!r} but its HR tile "
                             f"{hr_key!r} is in {split!r}")
    else:
        return f"no HR tile {hr_key!r}" + (f" in {hr_set.path}" if hr_set is not None else "")
    if split not in SPLITS:
        raise ValueError(f"{where}: sample {lr_key!r} has split {split!r}; expected one of {list(SPLITS)}")
    return hr_at, hr_row, split


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
    """A split's cut patches as int32 columns (the spill offset int64): plan, job, window n, lr_y,
    lr_x, spill offset and sizes."""
    FIELDS = ("plan", "job", "n", "lr_y", "lr_x", "at", "hr_len", "lr_len")

    def __init__(self) -> None:
        self.cols = {f: array("q" if f == "at" else "i") for f in self.FIELDS}

    def __len__(self) -> int:
        return len(self.cols["job"])

    def add(self, *values: int) -> None:
        for f, v in zip(self.FIELDS, values):
            self.cols[f].append(v)

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns as arrays that share the columns' memory: take them once every patch is in
        (a column cannot grow while an array of it is alive)."""
        return {f: np.asarray(c) for f, c in self.cols.items()}
