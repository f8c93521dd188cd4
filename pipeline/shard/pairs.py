"""The shard stage: HR/LR tile pairs → aligned, globally shuffled HR/LR patch shard sets.

Every LR tile of the LR set is joined with its HR tile (by `hr_key`), and windows are cut on the
*LR grid*: an LR window (y, x, p) is the HR window (y·s, x·s, p·s), so the two crops cannot be
misaligned by rounding. Windows are drawn from `rng(seed, lr_key)` alone, so they never depend on
worker count or order. The patches of each split are then written in the order of a seeded
permutation: the stored key starts with the patch's rank in it (`00000042_<lr_key>_p03`), so the
sorted key order that the shard writer requires *is* the shuffled order.

With `shard.real_pairs` set, a real-pair set (`realsynth pairs`: captured HR/LR photos, aligned)
adds `shard.real_fraction` of each split's patches, cut the same way from its pairs (random windows,
`real_counts` of them per pair), split by its own `split` column (by HR photo), with `source`
`<set>:<photo>` and empty recipe columns. Without it the output is what it always was, byte for byte.

Patches go through a spill file on disk between the parallel cut and the ordered write, so memory
stays flat whatever the corpus size; the spill is deleted before the output is complete.

Output (`out_dir`): `train/` and `val/` shard sets (members `<key>.hr.png`, `<key>.lr.png`,
`<key>.json`), `report.md`, `skipped.csv` (`lr_key,reason`), `pairs.png`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from pipeline.config import ShardConfig
from pipeline.seeding import SPLIT_ORDER, WINDOWS, rng_for
from pipeline.io.images import encode_png
from pipeline.io.shards import INDEX, Sample, ShardError, ShardSet, decode_member, json_bytes, write_shard_set
from pipeline.io.tar import iter_tar
from pipeline.parallel import ordered_map
from pipeline.report import grid, markdown_table

from .plan import CHUNK, SPLITS, IndexPlan, Job, ListPlan, PatchRows, plan_pairs, recipe_columns

_EXAMPLES = 8  # pairs in pairs.png


@dataclass(frozen=True)
class PairStats:
    lr_tiles: int       # LR tiles in the LR set
    used: int           # pairs that gave patches
    skipped: int        # pairs skipped (see skipped.csv)
    train_patches: int
    val_patches: int
    train_shards: int
    val_shards: int
    real_pairs: int = 0          # pairs of `shard.real_pairs` that gave patches
    real_train_patches: int = 0  # of train_patches
    real_val_patches: int = 0    # of val_patches


@dataclass(frozen=True)
class _Cut:
    n: int
    lr_y: int
    lr_x: int
    hr_png: bytes
    lr_png: bytes


def make_pairs(hr_dir: str | os.PathLike | None, lr_dir: str | os.PathLike, out_dir: str | os.PathLike,
               cfg: ShardConfig, *, seed: int, scale: int) -> PairStats:
    """Cut aligned HR/LR patches from every LR tile and its HR tile; write `out_dir/{train,val}/`.

    `hr_dir` is the HR shard set the LR set was degraded from; it may be None when the LR set
    carries its own `<key>.hr.png` members (an LR set made from a plain folder).
    An HR tile up to `scale - 1` px larger than LR × `scale` is cropped top-left to it first, as
    degrade does before degrading (`crop_to_scale`). A pair is skipped (and listed in `skipped.csv`
    and `report.md`) when its HR tile is missing, its LR size × `scale` is not its (cropped) HR
    size, or its LR is smaller than the LR patch. `cfg.real_pairs` (a path, '' = none) mixes a
    real-pair set in (module docstring).

    Raises:
        ValueError: `cfg.patch_size` not a multiple of `scale`; an LR index without `hr_key`; an
            LR tile whose split disagrees with its HR tile; a source photo in both splits; no pair
            usable at all; a real-pair set at another scale, or with no train pair that fits a patch.
        ShardError: an index that disagrees with its tar, or a PNG that fails to decode.
        FileNotFoundError: a missing set.
    """
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if cfg.patch_size % scale:
        raise ValueError(f"shard.patch_size must be a multiple of scale ({scale}), got {cfg.patch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spill_path, meta_path = out_dir / ".spill.bin", out_dir / ".metas.bin"
    rows = {s: PatchRows() for s in SPLITS}
    real: dict[str, int] | None = None
    try:
        with open(spill_path, "w+b") as spill, open(meta_path, "w+b") as meta_file:
            lr_set = ShardSet(lr_dir)
            plan, skipped = plan_pairs(lr_set, ShardSet(hr_dir) if hr_dir is not None else None, cfg, seed=seed,
                                       scale=scale, meta_file=meta_file)
            plans: list[_Plan] = [plan]
            lr_tiles = len(lr_set)
            _cut_into(spill, rows, skipped, plans, 0, cfg.workers)
            if not any(len(r) for r in rows.values()):
                shown = "; ".join(f"{k}: {r}" for k, r in skipped[:3])
                raise ValueError(f"shard: no usable pair among {lr_tiles} LR tiles ({shown or 'empty LR set'})")
            used = len(np.unique(np.concatenate([np.asarray(rows[s].cols["job"]) for s in SPLITS])))
            if cfg.real_pairs:
                synthetic = {split: len(rows[split]) for split in SPLITS}
                plans.append(_plan_real(ShardSet(cfg.real_pairs), synthetic, cfg, recipe_columns(lr_set.columns),
                                        skipped, seed=seed, scale=scale))
                _cut_into(spill, rows, skipped, plans, 1, cfg.workers)
                real = {"pairs": len(plans[1]), **{s: len(rows[s]) - synthetic[s] for s in SPLITS}}
            spill.flush()
            _check_hygiene(rows, plans)
            counts = {}
            for split in SPLITS:
                counts[split] = _write_split(out_dir / split, split, rows[split].arrays(), plans, spill.fileno(), cfg,
                                             seed=seed, scale=scale)
    finally:
        spill_path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
    skipped.sort()
    pd.DataFrame(skipped, columns=["lr_key", "reason"]).to_csv(out_dir / "skipped.csv", index=False)
    del plans, plan, lr_set  # the report reads the sets written, not the plan
    _write_report(out_dir, cfg, seed=seed, scale=scale, lr_tiles=lr_tiles, used=used, skipped=skipped, real=real,
                  counts={split: (counts[split][0], counts[split][2]) for split in SPLITS})
    return PairStats(lr_tiles=lr_tiles, used=used, skipped=len(skipped),
                     train_patches=counts["train"][0], val_patches=counts["val"][0],
                     train_shards=counts["train"][1], val_shards=counts["val"][1],
                     real_pairs=real["pairs"] if real else 0, real_train_patches=real["train"] if real else 0,
                     real_val_patches=real["val"] if real else 0)


def real_counts(synthetic: int, fraction: float, pairs: int) -> list[int]:
    """Patches for each of `pairs` real pairs so that they make `fraction` of a split with `synthetic`
    synthetic patches: round(synthetic · fraction / (1 − fraction)) in all, spread evenly (the first
    pairs in key order take one more). A real pair may repeat windows; a split without real pairs gets none."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    total = round(synthetic * fraction / (1 - fraction)) if pairs else 0
    return [total // pairs + (i < total % pairs) for i in range(pairs)]


_Plan = Union[ListPlan, IndexPlan]


def _cut_into(spill, rows: dict[str, PatchRows], skipped: list[tuple[str, str]], plans: list[_Plan], which: int,
              workers: int) -> None:
    """Cut the jobs of `plans[which]` in parallel (each made as a worker takes it), spill their PNGs,
    append their rows (job order) or skip reasons."""
    plan = plans[which]
    for i, cut in enumerate(ordered_map(_cut_pair, plan, workers=workers, desc="shard: cut")):
        if isinstance(cut, str):
            skipped.append((plan.lr_key(i), cut))
            continue
        split = rows[SPLITS[plan.split[i]]]
        for c in cut:
            hr_at = spill.tell()
            spill.write(c.hr_png)
            spill.write(c.lr_png)
            split.add(which, i, c.n, c.lr_y, c.lr_x, hr_at, len(c.hr_png), len(c.lr_png))


def _plan_real(real_set: ShardSet, synthetic: dict[str, int], cfg: ShardConfig, recipe_cols: list[str],
               skipped: list[tuple[str, str]], *, seed: int, scale: int) -> ListPlan:
    """Jobs cutting `real_counts` random windows from each pair of a real-pair set (`realsynth pairs`),
    split by the set's own `split` (by HR photo); recipe columns empty, `source` naming the set."""
    index, where = real_set.index, real_set.path / INDEX
    for col in ("key", "split", "scale", "height", "width", "lr_height", "lr_width", "source", "source_sha256",
                "size_hr_png", "size_lr_png"):
        if col not in index.columns:
            raise ValueError(f"{where}: missing column {col!r} (is {real_set.path} a set from `realsynth pairs`?)")
    if len(index) and set(index["scale"]) != {scale}:
        raise ValueError(f"{where}: real pairs at scale {sorted(set(index['scale']))}, but scale is {scale}")
    p = cfg.patch_size // scale
    jobs, metas = [], []
    for split in SPLITS:
        usable = []
        for row in index[index["split"] == split].sort_values("key").to_dict("records"):
            if row["lr_height"] < p or row["lr_width"] < p:
                skipped.append((row["key"], f"LR {row['lr_width']}x{row['lr_height']} smaller than the LR patch {p}x{p}"))
            else:
                usable.append(row)
        if split == "train" and not usable:
            raise ValueError(f"{where}: no real pair of the train split fits a {p}x{p} LR patch")
        for row, n in zip(usable, real_counts(synthetic[split], cfg.real_fraction, len(usable))):
            key = str(row["key"])
            if n:
                jobs.append(Job(key, key, split, real_set.member(key, "lr.png"), real_set.member(key, "hr.png"),
                                 (int(row["lr_height"]), int(row["lr_width"])), (int(row["height"]), int(row["width"])),
                                 n, "random", cfg.patch_size, scale, seed))
                metas.append({"lr_key": key, "hr_key": key, "split": split, "source": f"{real_set.path}:{row['source']}",
                             "photo": str(row["source_sha256"]), "variant": 0, "recipe": dict.fromkeys(recipe_cols)})
    return ListPlan(jobs, metas)


def lr_windows(lr_hw: tuple[int, int], lr_patch: int, *, n: int, mode: str,
               rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of LR windows of side `lr_patch` inside an LR tile of size `lr_hw`.

    `random`: `n` independent uniform windows (may repeat on small tiles). `grid`: every window of
    a non-overlapping grid, the last row/column flush with the edge so the tile is covered (`n` unused).

    Raises:
        ValueError: the tile is smaller than the window, or an unknown mode.
    """
    h, w = lr_hw
    if h < lr_patch or w < lr_patch:
        raise ValueError(f"LR tile {w}x{h} is smaller than the LR patch {lr_patch}x{lr_patch}")
    if mode == "random":
        ys = rng.integers(0, h - lr_patch + 1, size=n)
        xs = rng.integers(0, w - lr_patch + 1, size=n)
        return [(int(y), int(x)) for y, x in zip(ys, xs)]
    if mode == "grid":
        return [(y, x) for y in _grid_starts(h, lr_patch) for x in _grid_starts(w, lr_patch)]
    raise ValueError(f"mode must be 'random' or 'grid', got {mode!r}")


def _grid_starts(length: int, side: int) -> list[int]:
    """0, side, 2·side, ... while a window fits, plus one flush with the end if any pixels are left."""
    starts = list(range(0, length - side + 1, side))
    return starts + [length - side] if starts[-1] + side < length else starts


def _cut_pair(job: Job) -> list[_Cut] | str:
    """Decode one pair, check its sizes, cut its windows. Returns the patches or a skip reason."""
    lr, hr = job.lr_src.image(), job.hr_src.image()
    for img, claimed, src in ((lr, job.lr_hw, job.lr_src), (hr, job.hr_hw, job.hr_src)):
        if claimed is not None and img.shape[:2] != claimed:
            raise ShardError(f"{src.path.name}: sample {src.key!r}: {src.ext} is {img.shape[1]}x{img.shape[0]} but the "
                             f"index says {claimed[1]}x{claimed[0]}; the index disagrees with the tar")
    (lh, lw), (hh, hw) = lr.shape[:2], hr.shape[:2]
    if (hh // job.scale, hw // job.scale) != (lh, lw):
        return f"size mismatch: LR {lw}x{lh} x {job.scale} = {lw * job.scale}x{lh * job.scale} != HR {hw}x{hh}"
    hr = hr[:lh * job.scale, :lw * job.scale]  # degrade's crop_to_scale: the LR was made from this top-left crop
    p = job.patch // job.scale
    if lh < p or lw < p:
        return f"LR {lw}x{lh} smaller than the LR patch {p}x{p}"
    rng = rng_for(WINDOWS, job.seed, job.lr_key)
    s = job.scale
    return [_Cut(n, y, x, encode_png(np.ascontiguousarray(hr[y * s:(y + p) * s, x * s:(x + p) * s])),
                 encode_png(np.ascontiguousarray(lr[y:y + p, x:x + p])))
            for n, (y, x) in enumerate(lr_windows((lh, lw), p, n=job.n, mode=job.mode, rng=rng))]


def _check_hygiene(rows: dict[str, PatchRows], plans: list[_Plan]) -> None:
    """No source photo may feed both splits (val must measure photos the net never saw)."""
    def photos(split: str) -> set[str]:  # the distinct photos of a split's rows, from the plans' photo codes
        r = rows[split].arrays()
        return {plans[p].photos[c] for p in range(len(plans))
                for c in np.unique(plans[p].photo[r["job"][r["plan"] == p]]).tolist()}

    both = photos("train") & photos("val")
    if both:
        r = rows["train"].arrays()
        p, j = next((p, j) for p, j in zip(r["plan"].tolist(), r["job"].tolist())
                    if plans[p].photos[plans[p].photo[j]] in both)  # the first train row of such a photo
        source = plans[p].metas([j])[j]["source"]
        raise ValueError(f"shard: source photo {source!r} has tiles in both train and val; the split must be by photo")


def _write_split(out: Path, split: str, rows: dict[str, np.ndarray], plans: list[_Plan], spill_fd: int,
                 cfg: ShardConfig, *, seed: int, scale: int) -> tuple[int, int, int]:
    """Write one split's patches (`PatchRows.arrays`) in seeded-permutation order, their pairs' index
    columns read a chunk at a time. Returns (patches, shards, pairs)."""
    n = len(rows["job"])
    rank = rng_for(SPLIT_ORDER, seed, split).permutation(n)  # rows arrive sorted by (lr_key, n)
    width = max(8, len(str(max(n - 1, 0))))

    def chunks():  # (row number, its values as Python ints, its pair's index columns), in written order
        order = np.argsort(rank, kind="stable")
        for start in range(0, n, CHUNK):
            part = order[start:start + CHUNK]
            metas = [plans[p].metas(rows["job"][part][rows["plan"][part] == p]) for p in range(len(plans))]
            for i, r in zip(part.tolist(), zip(*(rows[f][part].tolist() for f in PatchRows.FIELDS))):
                r = dict(zip(PatchRows.FIELDS, r))
                yield i, r, metas[r["plan"]][r["job"]]

    def samples():
        p = cfg.patch_size // scale
        for i, r, m in chunks():
            key = f"{int(rank[i]):0{width}d}_{m['lr_key']}_p{r['n']:02d}"
            at, hr_len, lr_len = r["at"], r["hr_len"], r["lr_len"]
            buf = os.pread(spill_fd, hr_len + lr_len, at)
            window = {"lr": [r["lr_y"], r["lr_x"], p, p], "hr": [r["lr_y"] * scale, r["lr_x"] * scale, p * scale, p * scale]}
            recipe = {k: v for k, v in m["recipe"].items() if v is not None}
            info = {"key": key, "lr_key": m["lr_key"], "hr_key": m["hr_key"], "variant": m["variant"], "split": split,
                    "source": m["source"], "scale": scale, "window": window, "recipe": recipe}
            cols = {"lr_key": m["lr_key"], "hr_key": m["hr_key"], "variant": m["variant"], "split": split,
                    "source": m["source"], "source_sha256": m["photo"], "scale": scale, "lr_y": r["lr_y"],
                    "lr_x": r["lr_x"], "hr_y": r["lr_y"] * scale, "hr_x": r["lr_x"] * scale, "height": p * scale,
                    "width": p * scale, "lr_height": p, "lr_width": p, **m["recipe"]}
            yield Sample(key, {"hr.png": buf[:hr_len], "lr.png": buf[hr_len:], "json": json_bytes(info)}, cols)

    max_per_shard = max(1, math.ceil(n / cfg.min_shards))
    written = write_shard_set(out, samples(), set_name=split, shard_bytes=cfg.shard_bytes, max_per_shard=max_per_shard)
    pairs = len(np.unique(np.stack([rows["plan"], rows["job"]], axis=1), axis=0)) if n else 0
    return n, written.shards, pairs


def _write_report(out: Path, cfg: ShardConfig, *, seed: int, scale: int, lr_tiles: int, used: int,
                  skipped: list[tuple[str, str]], real: dict[str, int] | None,
                  counts: dict[str, tuple[int, int]]) -> None:
    """report.md and pairs.png; `counts`: each split's (patches, pairs that gave them)."""
    split_rows, examples = [], []
    for split in SPLITS:
        files = sorted((out / split).glob(f"{split}-*.tar"))
        patches, pairs = counts[split]
        shard_sizes = [f.stat().st_size for f in files] if patches else [0]
        split_rows.append({"split": split, "pairs": pairs, "patches": patches,
                           "shards": len(shard_sizes) if patches else 0,
                           "MB": round(sum(shard_sizes) / 2**20, 2), "min shard MB": round(min(shard_sizes) / 2**20, 2),
                           "max shard MB": round(max(shard_sizes) / 2**20, 2)})
        if split == "train" or not examples:
            examples = _examples(files) or examples
    if examples:
        (out / "pairs.png").write_bytes(encode_png(grid(examples, cell=min(cfg.patch_size, 256))))
    p = cfg.patch_size // scale
    per_pair = "every grid window" if cfg.mode == "grid" else f"{cfg.patches_per_pair} train / {cfg.val_patches_per_pair} val"
    skip_table = markdown_table(pd.DataFrame(skipped[:50], columns=["lr_key", "reason"])) if skipped else "none"
    lines = [
        "# shard report", "",
        f"- scale x{scale}: HR patches {cfg.patch_size}x{cfg.patch_size} px, LR patches {p}x{p} px, cut on the LR grid",
        f"- windows: {cfg.mode}, {per_pair} per pair; seed {seed}; patches shuffled by a seeded permutation",
        f"- LR tiles: {lr_tiles}; pairs used: {used}; skipped: {len(skipped)} (all in skipped.csv)",
        *([f"- real pairs from {cfg.real_pairs}: {real['pairs']} pairs gave {real['train']} train and {real['val']} "
           f"val patches (shard.real_fraction {cfg.real_fraction} of each split; no recipe columns)"] if real else []),
        "",
        "## Splits", "", markdown_table(pd.DataFrame(split_rows)), "",
        "## Skipped pairs" + (f" (first 50 of {len(skipped)})" if len(skipped) > 50 else ""), "", skip_table, "",
        "## Example pairs", "", "Two pairs per row: HR patch, then its LR patch upscaled with nearest neighbour (artefacts visible).",
        "", "![pairs](pairs.png)" if examples else "no patches", "",
    ]
    (out / "report.md").write_text("\n".join(lines))


def _examples(files: list[Path]) -> list[list[np.ndarray]]:
    """The first `_EXAMPLES` pairs of a split's shards (stored order is already a random order)."""
    rows = []
    samples = (s for f in files for s in iter_tar(f))
    for _, (key, members) in zip(range(_EXAMPLES), samples):
        hr, lr = (decode_member(members[e], files[0].name, key, e) for e in ("hr.png", "lr.png"))
        pair = [hr, np.repeat(np.repeat(lr, hr.shape[0] // lr.shape[0], 0), hr.shape[1] // lr.shape[1], 1)]
        if rows and len(rows[-1]) < 4:
            rows[-1] += pair
        else:
            rows.append(pair)
    return rows
