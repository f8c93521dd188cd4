"""Captured HR/LR photo pairs → a real-pair shard set that the shard stage mixes into training.

Two passes, like ingest: the first decodes and registers every pair (`pipeline.pairs.align`), so
the scale of the set and its train/val split are drawn over the pairs that are actually usable; the
second crops each accepted pair to its aligned region and streams the crops into the shard writer
in key order. Pixels are only ever cropped from the decoded files (ingest's decoding: EXIF
orientation, 16-bit → 8-bit, alpha composited), never resampled.

Output (`out`): `real-*.tar` shards (`<key>.hr.png`, `<key>.lr.png`, `<key>.json`), `index.parquet`
(`COLUMNS`), `rejects.csv` (`path,reason`) and `report.md`.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.ingest import val_sources
from pipeline.io.images import ImageError, decode_image, encode_png
from pipeline.io.shards import Sample, json_bytes, write_shard_set
from pipeline.pairs.align import Alignment, Limits, align_pair, crop
from pipeline.pairs.match import match_files, scale_of
from pipeline.parallel import ordered_map
from pipeline.report import markdown_table

SET_NAME = "real"
# index columns besides key/shard/sha256/offsets, in order (README, "Real pairs")
COLUMNS = ("hr_key", "lr_key", "source", "source_sha256", "lr_source", "lr_source_sha256", "scale", "scale_from",
           "hr_y", "hr_x", "lr_y", "lr_x", "height", "width", "lr_height", "lr_width", "shift_y", "shift_x",
           "shift_hr_y", "shift_hr_x", "residual_y", "residual_x", "response", "split")


@dataclass(frozen=True)
class ImportStats:
    candidates: int   # HR and LR files found
    pairs: int        # accepted pairs
    rejected: int     # rows of rejects.csv
    train: int
    val: int
    scale: int
    shards: int


@dataclass(frozen=True)
class _Checked:
    """Pass 1's verdict on one pair: an alignment, or the file to blame and why."""
    stem: str
    hr_path: Path
    lr_path: Path
    hr_sha: str = ""
    lr_sha: str = ""
    scale: int = 0
    alignment: Alignment | None = None
    reject: tuple[Path, str] | None = None


def import_pairs(hr_dir: str | os.PathLike, lr_dir: str | os.PathLike, out: str | os.PathLike, *,
                 scale: int | None = None, limits: Limits = Limits(), val_fraction: float = 0.2, seed: int = 0,
                 workers: int = 0) -> ImportStats:
    """Pair, check, register and crop the photos of `hr_dir` and `lr_dir` into the fresh folder `out`.

    scale: the expected integer scale; None → the one most accepted pairs show (the smaller on a tie).
    val_fraction, seed: the share of pairs (by HR file content) held out for validation, as ingest.

    Raises:
        FileNotFoundError: a folder that does not exist.
        ValueError: the two folders are one, a bad `val_fraction`, or no usable pair at all (the
            message names the first reasons).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    hr_dir, lr_dir, out = Path(hr_dir), Path(lr_dir), Path(out)
    matched, rejects = match_files(hr_dir, lr_dir)
    candidates = len(matched) * 2 + len(rejects)
    jobs = [(stem, hr, lr, scale, limits) for stem, hr, lr in matched]
    checked = list(ordered_map(_check_pair, jobs, workers=workers, desc="pairs: register"))
    accepted = [c for c in checked if c.reject is None]
    rejects += [c.reject for c in checked if c.reject is not None]
    counts = Counter(c.scale for c in accepted)
    set_scale = scale if scale is not None else max(counts, key=lambda s: (counts[s], -s), default=0)
    keys: dict[str, _Checked] = {}
    for c in accepted:
        key = f"{re.sub(r'[^A-Za-z0-9_-]+', '_', c.stem)[:60]}-{c.hr_sha[:10]}"
        if c.scale != set_scale:
            rejects.append((c.lr_path, f"scale x{c.scale}, but most pairs are x{set_scale} (pass --scale to choose)"))
        elif key in keys:
            rejects.append((c.lr_path, f"duplicate of {keys[key].lr_path} (same key {key!r})"))
        else:
            keys[key] = c
    out.mkdir(parents=True, exist_ok=True)
    rejects = sorted((str(p), r) for p, r in rejects)
    _write_rejects(out / "rejects.csv", rejects)
    if not keys:
        shown = "; ".join(f"{p}: {r}" for p, r in rejects[:3])
        raise ValueError(f"pairs: no usable pair among {candidates} files ({shown or 'no image files found'})")
    val = val_sources([c.hr_sha for c in keys.values()], val_fraction, seed)
    rows = {key: _columns(key, c, "val" if c.hr_sha in val else "train", given=scale is not None)
            for key, c in sorted(keys.items())}
    samples = ordered_map(_crop_pair, [(key, keys[key], rows[key]) for key in rows], workers=workers,
                          desc="pairs: crop")
    written = write_shard_set(out, samples, set_name=SET_NAME)
    _write_report(out, list(rows.values()), rejects, candidates, set_scale, limits)
    split = Counter(r["split"] for r in rows.values())
    return ImportStats(candidates=candidates, pairs=len(rows), rejected=len(rejects), train=split["train"],
                       val=split["val"], scale=set_scale, shards=written.shards)


def _check_pair(job: tuple[str, Path, Path, int | None, Limits]) -> _Checked:
    """Decode both files, check the scale, register. Blames the file that is unreadable, or the LR."""
    stem, hr_path, lr_path, scale, limits = job
    imgs, shas = [], []
    for path, partner in ((hr_path, lr_path), (lr_path, hr_path)):
        try:
            data = path.read_bytes()
            imgs.append(decode_image(data))
        except (OSError, ImageError) as err:
            reason = f"unreadable: {err.strerror or err}" if isinstance(err, OSError) else str(err)
            return _Checked(stem, hr_path, lr_path, reject=(path, f"{reason} (pair of {partner})"))
        shas.append(hashlib.sha256(data).hexdigest())
    found = scale_of(imgs[0].shape[:2], imgs[1].shape[:2], scale, limits.max_shift)
    if isinstance(found, str):
        return _Checked(stem, hr_path, lr_path, reject=(lr_path, f"{found} (pair of {hr_path})"))
    alignment = align_pair(imgs[0], imgs[1], found, limits)
    if isinstance(alignment, str):
        return _Checked(stem, hr_path, lr_path, reject=(lr_path, f"{alignment} (pair of {hr_path})"))
    return _Checked(stem, hr_path, lr_path, shas[0], shas[1], found, alignment)


def _columns(key: str, c: _Checked, split: str, *, given: bool) -> dict[str, Any]:
    a = c.alignment
    assert a is not None
    (hy, hx, hh, hw), (ly, lx, lh, lw) = a.hr_box, a.lr_box
    return {"hr_key": key, "lr_key": key, "source": str(c.hr_path), "source_sha256": c.hr_sha,
            "lr_source": str(c.lr_path), "lr_source_sha256": c.lr_sha, "scale": c.scale,
            "scale_from": "given" if given else "detected", "hr_y": hy, "hr_x": hx, "lr_y": ly, "lr_x": lx,
            "height": hh, "width": hw, "lr_height": lh, "lr_width": lw,
            "shift_y": round(a.shift[0], 4), "shift_x": round(a.shift[1], 4), "shift_hr_y": a.shift_hr[0],
            "shift_hr_x": a.shift_hr[1], "residual_y": round(a.residual[0], 4), "residual_x": round(a.residual[1], 4),
            "response": round(a.response, 4), "split": split}


def _crop_pair(job: tuple[str, _Checked, dict[str, Any]]) -> Sample:
    """Pass 2: decode again (the files must be the ones pass 1 checked), crop, encode."""
    key, c, cols = job
    members = {"json": json_bytes({"key": key, **cols})}
    for path, sha, role in ((c.hr_path, c.hr_sha, "hr"), (c.lr_path, c.lr_sha, "lr")):
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"{path}: changed while it was being imported; run again")
        box = (cols[f"{role}_y"], cols[f"{role}_x"], *((cols["height"], cols["width"]) if role == "hr"
                                                      else (cols["lr_height"], cols["lr_width"])))
        members[f"{role}.png"] = encode_png(crop(decode_image(data), box))
    return Sample(key, members, cols)


def _write_rejects(path: Path, rejects: list[tuple[str, str]]) -> None:
    import pandas as pd
    pd.DataFrame(rejects, columns=["path", "reason"]).to_csv(path, index=False)


def _write_report(out: Path, rows: list[dict[str, Any]], rejects: list[tuple[str, str]], candidates: int,
                  scale: int, limits: Limits) -> None:
    import pandas as pd

    table = pd.DataFrame(rows)[["lr_key", "split", "source", "lr_source", "width", "height", "shift_y", "shift_x",
                                "shift_hr_y", "shift_hr_x", "residual_y", "residual_x", "response"]]
    lines = [
        "# real pairs report", "",
        f"- files found: {candidates}; pairs accepted: {len(rows)} (scale x{scale}, "
        f"{'given' if rows[0]['scale_from'] == 'given' else 'detected'}); rejected: {len(rejects)} (see rejects.csv)",
        f"- train {sum(r['split'] == 'train' for r in rows)}, val {sum(r['split'] == 'val' for r in rows)} "
        "(split by HR file content, as ingest splits photos)",
        f"- alignment: phase correlation on the LR grid, refined to whole HR px by cross-correlation; "
        f"limits {asdict(limits)} (LR px)",
        "- resampled: nothing. Each pair is cropped from its decoded files to the region where they align "
        "(shift_hr_*: whole HR px taken out; residual_*: the sub-HR-px rest, LR px, accepted and left in)", "",
        "## Pairs", "", markdown_table(table), "",
        "## Rejected", "", markdown_table(pd.DataFrame(rejects, columns=["path", "reason"])) if rejects else "none", "",
    ]
    (out / "report.md").write_text("\n".join(lines))
