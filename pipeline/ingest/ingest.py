"""HR photos → validated HR tile shard set, with every rejected file listed and why.

Two passes over the photos, both parallel: the first decodes each one fully to validate it (so the
train/val split can be drawn over the photos that are actually usable), the second tiles the
accepted ones and encodes the tiles, streaming them into the shard writer in sorted key order.

`max_tiles_per_photo` caps what one photo contributes: counted over all its scale variants, after
the flat-tile filter, and applied as a subset drawn from `(seed, photo content hash)` alone, so the
choice does not depend on paths, listing order or worker count. Kept tiles stay in key order.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.io.digest import sha256_file
from pipeline.config import IngestConfig
from pipeline.ingest.sources import resolve_sources, sample_dir
from pipeline.ingest.tiling import is_flat, rescale, tiles
from pipeline.io.images import ImageError, decode_image, encode_png
from pipeline.io.shards import Sample, ShardSet, json_bytes, write_shard_set
from pipeline.parallel import resolve_workers, worker_pool
from pipeline.report import contact_sheet, markdown_table
from pipeline.seeding import sha256_int

if TYPE_CHECKING:  # pandas is imported where the report and rejects are written, not in the workers
    import pandas as pd

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
    capped: tuple[tuple[str, int], ...] = ()  # (photo, tiles dropped by max_tiles_per_photo), photos that lost any

    @property
    def capped_tiles(self) -> int:
        """Tiles dropped by `max_tiles_per_photo`, over all photos."""
        return sum(n for _, n in self.capped)


@dataclass(frozen=True)
class _Photo:
    path: Path
    label: str      # path as recorded in the index / rejects (machine independent where possible)
    sha256: str
    prefix: str     # key prefix: sanitised stem + hash


def ingest(sources: list[str] | tuple[str, ...], out: str | os.PathLike, cfg: IngestConfig, *, seed: int,
           scale: int, root: Path | None = None) -> IngestStats:
    """Run ingest into the (fresh) directory `out`: shards + index.parquet + rejects.csv + report.md.

    `root`: where every photo but the sample's must lie (the DVC stage passes `paths.photos`).

    Raises:
        FileNotFoundError: a source that does not exist.
        ValueError: no usable photo among the candidates (the message lists the first reasons), or a
            photo outside `root`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = resolve_sources(list(sources), root=root)
    rejects: list[tuple[str, str]] = []
    photos: list[_Photo] = []
    by_hash: dict[str, str] = {}
    for path in paths:
        label = _label(path)
        try:
            sha = sha256_file(path)
        except OSError as err:
            rejects.append((label, f"unreadable: {err.strerror or err}"))
            continue
        if sha in by_hash:
            rejects.append((label, f"duplicate of {by_hash[sha]}"))
            continue
        by_hash[sha] = label
        photos.append(_Photo(path, label, sha, f"{_stem(path)}-{sha[:10]}"))

    with _pool(cfg, len(photos)) as pmap:
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
        jobs = [(p, cfg, scale, "val" if p.sha256 in val else "train", seed) for p in accepted]
        dropped: dict[str, int] = {}  # photo label -> tiles the cap dropped, filled as the batches stream

        def samples():
            for photo, (batch, n_dropped) in zip(accepted, pmap(_tile_photo, jobs, desc="ingest: tile")):
                dropped[photo.label] = n_dropped
                yield from batch

        written = write_shard_set(out, samples(), set_name=SET_NAME, shard_bytes=cfg.shard_bytes)
    if not written.samples:
        raise ValueError("ingest: every tile was dropped (is ingest.min_std too high?)")

    shards = ShardSet(out)  # read once: the columns the report and the counts need
    index = shards.frame(["key", "shard", "size_hr_png", "source", "split", "height", "width"])
    _write_report(shards, index, rejects, len(paths), dropped if cfg.max_tiles_per_photo else None,
                  cfg.max_tiles_per_photo)
    return IngestStats(candidates=len(paths), accepted=len(accepted), rejected=len(rejects), tiles=len(index),
                       train_tiles=int((index["split"] == "train").sum()), val_tiles=int((index["split"] == "val").sum()),
                       shards=written.shards,
                       capped=tuple(sorted((label, n) for label, n in dropped.items() if n)))


def _pool(cfg: IngestConfig, photos: int) -> contextlib.AbstractContextManager:
    """The ordered map `cfg.engine` names: this machine's processes, or Ray tasks (`ray_pool`: the
    same results in the same order, so the same bytes)."""
    if cfg.engine == "ray":
        from pipeline.ray_pool import ray_pool
        return ray_pool(cfg.workers, retries=cfg.retries)
    return worker_pool(min(resolve_workers(cfg.workers), max(1, photos)))


def cap_summary(stats: IngestStats, shown: int = 3) -> str:
    """`; the tile cap dropped 57 tiles from 2 photos (retina.jpg 33, hubble.jpg 24)`, or '' when it dropped none."""
    if not stats.capped:
        return ""
    worst = sorted(stats.capped, key=lambda c: (-c[1], c[0]))
    names = ", ".join(f"{Path(label.removeprefix('sample:')).name} {n}" for label, n in worst[:shown])
    more = f", +{len(worst) - shown} more" if len(worst) > shown else ""
    return (f"; the tile cap dropped {stats.capped_tiles} tiles from {len(worst)} "
            f"photo{'' if len(worst) == 1 else 's'} ({names}{more})")


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


def _tile_photo(job: tuple[_Photo, IngestConfig, int, str, int]) -> tuple[list[Sample], int]:
    """The photo's encoded tiles in key order, and how many tiles `max_tiles_per_photo` dropped."""
    photo, cfg, scale, split, seed = job
    img = _decode(photo.path, cfg)
    found = []  # (key, scale, y, x, tile): every tile that passes the flat filter, before the cap
    for s in cfg.scales:
        scaled = rescale(img, s)
        if min(scaled.shape[:2]) < scale:
            continue
        for y, x, tile in tiles(scaled, cfg.crop, cfg.step, cfg.thresh):
            if not is_flat(tile, cfg.min_std):
                found.append((f"{photo.prefix}_s{round(s * 1000):04d}_y{y:05d}_x{x:05d}", s, y, x, tile))
    found.sort(key=lambda t: t[0])
    kept = [found[i] for i in cap_tiles(len(found), cfg.max_tiles_per_photo, seed, photo.sha256)]
    samples = []
    for key, s, y, x, tile in kept:
        meta = {"source": photo.label, "source_sha256": photo.sha256, "scale": s, "tile_x": x, "tile_y": y}
        cols = {**meta, "height": tile.shape[0], "width": tile.shape[1], "split": split}
        samples.append(Sample(key, {"hr.png": encode_png(np.ascontiguousarray(tile)), "json": json_bytes(cols)}, cols))
    return samples, len(found) - len(kept)


def cap_tiles(n: int, cap: int, seed: int, sha256: str) -> list[int]:
    """Indices (ascending) of the tiles a photo keeps out of its `n`: all when `cap` is 0 or not
    reached, else `cap` of them drawn from `(seed, sha256)` only, so the subset depends on the photo's
    content and the seed, never on its path, the listing order or the worker count."""
    if cap <= 0 or n <= cap:
        return list(range(n))
    rng = np.random.default_rng(sha256_int(f"{seed}:{sha256}", "big"))
    return sorted(int(i) for i in rng.choice(n, size=cap, replace=False))


def _decode(path: Path, cfg: IngestConfig) -> np.ndarray:
    return decode_image(path.read_bytes(), alpha=cfg.alpha, background=cfg.background, max_pixels=cfg.max_pixels)




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
    import pandas as pd
    pd.DataFrame(rejects, columns=["path", "reason"]).to_csv(path, index=False)


def _write_report(shards: ShardSet, index: pd.DataFrame, rejects: list[tuple[str, str]], candidates: int,
                  dropped: dict[str, int] | None = None, cap: int = 0) -> None:
    """report.md + tiles.png in the set `shards` (`index`: its key, shard, size_hr_png, source, split,
    height and width columns). `dropped` (photo label → tiles the cap dropped) is None when there is no cap."""
    import pandas as pd

    out = shards.path
    keys = list(index["key"][:: max(1, len(index) // 16)][:16])
    contact_sheet([shards.read(k, ["hr.png"])["hr.png"] for k in keys], out / "tiles.png", labels=keys)
    sizes = index.groupby("shard").agg(samples=("key", "size"), bytes=("size_hr_png", "sum")).reset_index()
    per_source = index.groupby(["source", "split"]).size().reset_index(name="tiles")
    capped = []
    if dropped is not None:
        per_source["dropped by cap"] = per_source["source"].map(dropped).fillna(0).astype(int)
        n_photos = sum(1 for n in dropped.values() if n)
        capped = [f"- tiles dropped by ingest.max_tiles_per_photo ({cap}): {sum(dropped.values())}"
                  f" from {n_photos} photo{'' if n_photos == 1 else 's'}"]
    lines = [
        "# ingest report", "",
        f"- candidate files: {candidates}",
        f"- accepted photos: {index['source'].nunique()} ({(index.groupby('source')['split'].first() == 'val').sum()} held out for val)",
        f"- rejected files: {len(rejects)} (see rejects.csv)",
        f"- tiles: {len(index)} (train {int((index['split'] == 'train').sum())}, val {int((index['split'] == 'val').sum())}),"
        f" {index['height'].min()}–{index['height'].max()} px high, {index['width'].min()}–{index['width'].max()} px wide",
        *capped,
        "", "## Rejected", "", markdown_table(pd.DataFrame(rejects, columns=["path", "reason"])) if rejects else "none",
        "", "## Tiles per photo", "", markdown_table(per_source),
        "", "## Shards", "", markdown_table(sizes),
        "", "## Some tiles", "", "![tiles](tiles.png)", "",
    ]
    (out / "report.md").write_text("\n".join(lines))
