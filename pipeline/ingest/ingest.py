"""HR photos → validated HR tile shard set, with every rejected file listed and why.

Two passes over the photos, both parallel: the first decodes each one fully to validate it (so the
train/val split can be drawn over the photos that are actually usable), the second tiles the
accepted ones and encodes the tiles, streaming them into the shard writer in sorted key order.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import IngestConfig
from pipeline.ingest.sources import resolve_sources, sample_dir
from pipeline.ingest.tiling import is_flat, rescale, tiles
from pipeline.io.images import ImageError, decode_image, encode_png
from pipeline.io.shards import Sample, json_bytes, write_shard_set
from pipeline.parallel import resolve_workers, worker_pool
from pipeline.report import contact_sheet, markdown_table

SET_NAME = "hr"


@dataclass(frozen=True)
class IngestStats:
    candidates: int
    accepted: int
    rejected: int
    tiles: int
    train_tiles: int
    val_tiles: int
    shards: int


@dataclass(frozen=True)
class _Photo:
    path: Path
    label: str      # path as recorded in the index / rejects (machine independent where possible)
    sha256: str
    prefix: str     # key prefix: sanitised stem + hash


def ingest(sources: list[str] | tuple[str, ...], out: str | os.PathLike, cfg: IngestConfig, *, seed: int,
           scale: int) -> IngestStats:
    """Run ingest into the (fresh) directory `out`: shards + index.parquet + rejects.csv + report.md.

    Raises:
        FileNotFoundError: a source that does not exist.
        ValueError: no usable photo among the candidates (the message lists the first reasons).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = resolve_sources(list(sources))
    rejects: list[tuple[str, str]] = []
    photos: list[_Photo] = []
    by_hash: dict[str, str] = {}
    for path in paths:
        label = _label(path)
        try:
            sha = _sha256(path)
        except OSError as err:
            rejects.append((label, f"unreadable: {err.strerror or err}"))
            continue
        if sha in by_hash:
            rejects.append((label, f"duplicate of {by_hash[sha]}"))
            continue
        by_hash[sha] = label
        photos.append(_Photo(path, label, sha, f"{_stem(path)}-{sha[:10]}"))

    workers = min(resolve_workers(cfg.workers), max(1, len(photos)))
    with worker_pool(workers) as pmap:
        checks = list(pmap(_check_photo, [(p.path, cfg) for p in photos], desc="ingest: validate"))
        accepted = []
        for photo, reason in zip(photos, checks):
            if reason is None:
                accepted.append(photo)
            else:
                rejects.append((photo.label, reason))
        rejects.sort()
        _write_rejects(out / "rejects.csv", rejects)
        if not accepted:
            shown = "; ".join(f"{p}: {r}" for p, r in rejects[:3])
            raise ValueError(f"ingest: no usable photo among {len(paths)} candidates ({shown or 'no files found'})")

        val = val_sources([p.sha256 for p in accepted], cfg.val_fraction, seed)
        accepted.sort(key=lambda p: p.prefix)  # tiles of one photo are contiguous in key order
        jobs = [(p, cfg, scale, "val" if p.sha256 in val else "train") for p in accepted]
        batches = pmap(_tile_photo, jobs, desc="ingest: tile")
        samples = (s for batch in batches for s in batch)
        index = write_shard_set(out, samples, set_name=SET_NAME, shard_bytes=cfg.shard_bytes)
    if index.empty:
        raise ValueError("ingest: every tile was dropped (is ingest.min_std too high?)")

    _write_report(out, index, rejects, len(paths))
    return IngestStats(candidates=len(paths), accepted=len(accepted), rejected=len(rejects), tiles=len(index),
                       train_tiles=int((index["split"] == "train").sum()), val_tiles=int((index["split"] == "val").sum()),
                       shards=int(index["shard"].nunique()))


def val_sources(hashes: list[str], fraction: float, seed: int) -> set[str]:
    """The photos (by content hash) held out for validation: a seeded ranking of the hashes, so the
    split depends only on (seed, which photos) — never on paths, order or worker count. At least one
    photo goes to each side when there are two or more and `fraction` > 0."""
    if fraction <= 0 or not hashes:
        return set()
    ranked = sorted(set(hashes), key=lambda h: hashlib.sha256(f"{seed}:{h}".encode()).hexdigest())
    n = len(ranked)
    n_val = min(max(1, round(n * fraction)), n - 1) if n >= 2 else 0
    return set(ranked[:n_val])


def _check_photo(job: tuple[Path, IngestConfig]) -> str | None:
    path, cfg = job
    try:
        img = _decode(path, cfg)
    except ImageError as err:
        return str(err)
    except OSError as err:
        return f"unreadable: {err.strerror or err}"
    h, w = img.shape[:2]
    if min(h, w) < cfg.min_side:
        return f"too small ({w}x{h}; ingest.min_side is {cfg.min_side})"
    return None


def _tile_photo(job: tuple[_Photo, IngestConfig, int, str]) -> list[Sample]:
    photo, cfg, scale, split = job
    img = _decode(photo.path, cfg)
    samples = []
    for s in cfg.scales:
        scaled = rescale(img, s)
        if min(scaled.shape[:2]) < scale:
            continue
        for y, x, tile in tiles(scaled, cfg.crop, cfg.step, cfg.thresh):
            if is_flat(tile, cfg.min_std):
                continue
            key = f"{photo.prefix}_s{round(s * 1000):04d}_y{y:05d}_x{x:05d}"
            meta = {"source": photo.label, "source_sha256": photo.sha256, "scale": s, "tile_x": x, "tile_y": y}
            cols = {**meta, "height": tile.shape[0], "width": tile.shape[1], "split": split}
            samples.append(Sample(key, {"hr.png": encode_png(np.ascontiguousarray(tile)), "json": json_bytes(cols)}, cols))
    samples.sort(key=lambda smp: smp.key)
    return samples


def _decode(path: Path, cfg: IngestConfig) -> np.ndarray:
    return decode_image(path.read_bytes(), alpha=cfg.alpha, background=cfg.background, max_pixels=cfg.max_pixels)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _label(path: Path) -> str:
    """`sample:<name>` for bundled photos, a cwd-relative path where possible, else absolute."""
    try:
        return f"sample:{path.relative_to(sample_dir())}"
    except ValueError:
        pass
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem)[:40] or "img"


def _write_rejects(path: Path, rejects: list[tuple[str, str]]) -> None:
    pd.DataFrame(rejects, columns=["path", "reason"]).to_csv(path, index=False)


def _write_report(out: Path, index: pd.DataFrame, rejects: list[tuple[str, str]], candidates: int) -> None:
    from pipeline.io.shards import ShardSet

    shards = ShardSet(out)
    keys = list(index["key"][:: max(1, len(index) // 16)][:16])
    contact_sheet([shards.read(k, ["hr.png"])["hr.png"] for k in keys], out / "tiles.png", labels=keys)
    sizes = index.groupby("shard").agg(samples=("key", "size"), bytes=("size_hr_png", "sum")).reset_index()
    per_source = index.groupby(["source", "split"]).size().reset_index(name="tiles")
    lines = [
        "# ingest report", "",
        f"- candidate files: {candidates}",
        f"- accepted photos: {index['source'].nunique()} ({(index.groupby('source')['split'].first() == 'val').sum()} held out for val)",
        f"- rejected files: {len(rejects)} (see rejects.csv)",
        f"- tiles: {len(index)} (train {int((index['split'] == 'train').sum())}, val {int((index['split'] == 'val').sum())}),"
        f" {index['height'].min()}–{index['height'].max()} px high, {index['width'].min()}–{index['width'].max()} px wide",
        "", "## Rejected", "", markdown_table(pd.DataFrame(rejects, columns=["path", "reason"])) if rejects else "none",
        "", "## Tiles per photo", "", markdown_table(per_source),
        "", "## Shards", "", markdown_table(sizes),
        "", "## Some tiles", "", "![tiles](tiles.png)", "",
    ]
    (out / "report.md").write_text("\n".join(lines))
