"""`realsynth inspect SET`: what is in a shard set (HR, LR or pairs), and a grid of random samples.

The grid is written only where asked (`out`), never inside the inspected folder nor inside any shard
set: those are usually DVC outputs, and a new file there would change their hash.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io.atomic import atomic_write_bytes
from pipeline.io.images import encode_png
from pipeline.io.shards import INDEX, ShardSet, is_shard_set
from pipeline.report import grid as grid_image

# Index columns that are bookkeeping or geometry, not parameters worth a range.
_SKIP = {"key", "shard", "sha256", "source", "source_sha256", "hr_key", "lr_key", "split", "height", "width",
         "tile_x", "tile_y", "lr_y", "lr_x", "hr_y", "hr_x", "lr_height", "lr_width"}
_CELL = 192


def inspect_set(set_dir: Path, grid: int = 16, seed: int = 0, out: Path | None = None) -> str:
    """Summarise the shard set `set_dir`; with `out`, also write there a grid PNG of `grid` random
    samples (0: none). `out` may be a folder: the grid is then `<out>/inspect-<set>.png`.

    A directory holding shard sets (like `data/pairs`, with `train/` and `val/`) is summarised set by
    set, each grid named after its set. Returns the summary text (the CLI prints it).

    Raises:
        FileNotFoundError: `set_dir` is neither a shard set nor a directory of shard sets.
        ValueError: grid < 0, or `out` inside `set_dir` or inside a shard set (`check_grid_path`).
    """
    set_dir = Path(set_dir)
    if grid < 0:
        raise ValueError(f"grid must be >= 0, got {grid}")
    if out is not None:
        check_grid_path(Path(out), set_dir)
        if Path(out).is_dir():
            out = Path(out) / f"inspect-{_name(set_dir)}.png"
    if not is_shard_set(set_dir):
        subsets = sorted(p.parent for p in set_dir.glob(f"*/{INDEX}"))
        if not subsets:
            raise FileNotFoundError(f"{set_dir}: not a shard set (no {INDEX}) nor a directory of shard sets")
        return "\n\n".join(inspect_set(s, grid, seed, None if out is None else out.with_name(f"{out.stem}-{s.name}{out.suffix}"))
                           for s in subsets)
    shards = ShardSet(set_dir)
    index = shards.index
    members = sorted(c[len("size_"):].replace("_", ".") for c in index.columns if c.startswith("size_"))
    images = [m for m in ("hr.png", "lr.png") if m in members]
    kind = {("hr.png", "lr.png"): "pairs" if "lr_key" in index.columns else "LR (with HR)",
            ("hr.png",): "HR", ("lr.png",): "LR"}.get(tuple(images), "unknown")
    lines = [f"{set_dir}: {kind} shard set (members: {', '.join(members) or 'none'})"]
    shard_sizes = [(set_dir / s).stat().st_size for s in shards.shards]
    lines.append(f"  samples: {len(index)} in {len(shard_sizes)} shards, {_bytes(sum(shard_sizes))}"
                 + (f" (shards {_bytes(min(shard_sizes))} to {_bytes(max(shard_sizes))})" if shard_sizes else ""))
    for label, h, w in (("size", "height", "width"), ("lr size", "lr_height", "lr_width")):
        if h in index.columns and w in index.columns and len(index):
            counts = (index[w].astype(str) + "x" + index[h].astype(str)).value_counts()
            lines.append(f"  {label}: " + _counts(counts))
    if "split" in index.columns:
        lines.append("  splits: " + _counts(index["split"].value_counts()))
    for col in ("source", "hr_key", "lr_key"):
        if col in index.columns:
            lines.append(f"  distinct {col}: {index[col].nunique()}")
    params = [c for c in index.columns if c not in _SKIP and not c.startswith(("offset_", "size_"))]
    numeric = [c for c in params if pd.api.types.is_numeric_dtype(index[c]) and not pd.api.types.is_bool_dtype(index[c])]
    if params:
        lines.append("  parameters:")
    for c in numeric:
        col = index[c].dropna()
        rng = f"{col.min():.4g} .. {col.max():.4g}" if len(col) else "all NaN"
        lines.append(f"    {c}: {rng}" + (f" ({len(index) - len(col)} NaN)" if len(col) < len(index) else ""))
    for c in params:
        if c not in numeric:
            col = index[c].dropna()
            missing = f" ({len(index) - len(col)} NaN)" if len(col) < len(index) else ""
            lines.append(f"    {c}: " + (_counts(col.astype(str).value_counts()) + missing if len(col) else "all NaN"))
    if out is None:
        lines.append("  grid: none written (--out GRID.png writes one)")
    elif grid and len(index) and images:
        path = Path(out)
        picks = np.sort(np.random.default_rng(seed).choice(len(index), size=min(grid, len(index)), replace=False))
        atomic_write_bytes(path, encode_png(_grid(shards, images, picks)))
        lines.append(f"  grid: {path} ({len(picks)} random samples, seed {seed}"
                     + ("; each HR followed by its LR, nearest-upscaled)" if len(images) == 2 else ")"))
    return "\n".join(lines)


def check_grid_path(out: Path, set_dir: Path) -> None:
    """Refuse a grid path inside the inspected folder or inside any folder that holds an
    index.parquet (a shard set, usually a DVC output whose hash a new file would change).

    Raises:
        ValueError: one line naming `out` and the folder it lies in.
    """
    target, root = Path(out).resolve(), Path(set_dir).resolve()
    if target == root or root in target.parents:
        raise ValueError(f"{out}: inside the inspected folder {set_dir} (a DVC output, whose hash a new file "
                         "would change); write the grid elsewhere")
    holder = next((d for d in (target, *target.parents) if is_shard_set(d)), None)
    if holder is not None:
        raise ValueError(f"{out}: inside the shard set {holder} (it holds {INDEX}); write the grid elsewhere")


def _bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} kB"


def _counts(counts: pd.Series, top: int = 8) -> str:
    shown = ", ".join(f"{k} ({v})" for k, v in counts.head(top).items())
    return shown + (f", ... {len(counts) - top} more" if len(counts) > top else "")


def _name(set_dir: Path) -> str:
    resolved = set_dir.resolve()
    if resolved.name in ("train", "val") and resolved.parent.name:
        return f"{resolved.parent.name}-{resolved.name}"
    return resolved.name or "set"


def _grid(shards: ShardSet, images: list[str], picks: np.ndarray) -> np.ndarray:
    cells = []
    try:
        for i in picks:
            imgs = [shards.image_at(int(i), ext) for ext in images]
            if len(imgs) == 2:
                hr, lr = imgs
                fy, fx = max(1, hr.shape[0] // lr.shape[0]), max(1, hr.shape[1] // lr.shape[1])
                imgs = [hr, np.repeat(np.repeat(lr, fy, 0), fx, 1)]
            cells += imgs
    finally:
        shards.close()
    cells = [_enlarge(c) for c in cells]
    cols = 4
    return grid_image([cells[i:i + cols] for i in range(0, len(cells), cols)], cell=_CELL)


def _enlarge(img: np.ndarray) -> np.ndarray:
    """Small images grow by an integer factor with nearest neighbour (pixels stay visible); big ones
    are left for the grid to shrink (with area averaging)."""
    k = _CELL // max(img.shape[:2])
    return np.repeat(np.repeat(img, k, 0), k, 1) if k > 1 else img
