"""Fixed benchmark sets: HR images degraded once, by a named preset under a fixed seed, so teams
score their models on the same LR bytes.

    stats = make_benchmark(Path("photos/test"), tmp, preset="realesrgan-x4plus", seed=0)

A benchmark set is an LR set of `degrade_set` (plan → run → write, the same engine and bytes) with
one variant per HR image, the HR stored in every sample (`<key>.hr.png`, `<key>.lr.png`,
`<key>.json`: pair-set members, whatever the input), index columns `source` and `source_sha256`,
and `benchmark.json`: what the set is (format, realsynth version, preset and its resolved settings,
seed, scale, split, the sources' digest) and the sha256 of every shard.

Always on the reference backend: its bytes are the same on any machine with the same OpenCV, while
DALI's GPU resize and JPEG differ within a tolerance (DESIGN §4); and never with the path of the
input in a sample's json, so the same images and seed give the same bytes wherever they lie.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.io.digest import sha256_file
from pipeline.params import build
from pipeline.parallel import resolve_workers

from .config import DegradeConfig
from .samples import Result
from .schedule import degrade_jobs
from .sources import Context, Job, plan_set
from .write import write_set

MANIFEST = "benchmark.json"
FORMAT = "realsynth-benchmark"
FORMAT_VERSION = 1
SPLITS = ("all", "train", "val")


def make_benchmark(inp: Path, out: Path, *, preset: str = "realesrgan-x4plus", seed: int = 0,
                   scale: int | None = None, split: str = "all", workers: int = 0, version: str | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Degrade every HR image of `inp` once (`preset`, `seed`) into the benchmark set `out`.

    inp: a folder of images (recursive) or an HR shard set. out: the directory to write (wrap it
    in `atomic_dir`): the LR set of `degrade_set` with `hr.png` in every sample, plus benchmark.json.
    scale: None for the preset's own. split: 'all', or only the HR tiles of that split (an HR
    shard set from ingest). workers: reference-backend processes (0: all cores; the bytes do not
    depend on it). version: the realsynth version recorded (None: the installed package's).
    Returns the manifest (benchmark.json's content) plus `seconds`.

    Raises:
        FileNotFoundError / ValueError: a bad input, seed or split, or no image in the split.
        ParamsError: an unknown preset or a bad scale.
    """
    start = time.perf_counter()
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    cfg = build(DegradeConfig, {"preset": preset, "variants": 1, "backend": "reference", "workers": workers},
                "benchmark")
    scale = cfg.settings.scale if scale is None else scale
    ctx, jobs = plan_set(Path(inp), cfg, seed=seed, scale=scale)
    if split != "all":
        jobs = [job for job in jobs if job.split == split]
        if not jobs:
            raise ValueError(f"{inp}: no HR tile in split {split!r} (an HR shard set from ingest has train/val)")
    sources = _source_columns(ctx, jobs)
    # the HR goes into every sample and its json names no input path, as for a folder of images
    # (`samples.finish`, `samples.sample_json`); the jobs still read it from wherever it lies
    ctx = dataclasses.replace(ctx, source=dataclasses.replace(ctx.source, is_set=False))
    results = degrade_jobs(ctx, jobs, batch_size=cfg.batch_size, workers=resolve_workers(cfg.workers))
    stats = write_set(Path(out), ctx, cfg, _with_columns(results, sources), len(jobs), start=start,
                      progress=progress)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "realsynth": version or installed_version(),
        "preset": cfg.preset, "settings": cfg.settings.to_data(), "seed": seed, "scale": scale, "split": split,
        "backend": stats["backend"], "variants": 1, "samples": stats["samples"], "skipped": stats["skipped"],
        "sources_sha256": _digest(f"{hr_key} {cols['source_sha256']}" for hr_key, cols in sorted(sources.items())),
        "shards": {p.name: sha256_file(p) for p in sorted(Path(out).glob("*.tar"))},
    }
    (Path(out) / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return {**manifest, "seconds": round(time.perf_counter() - start, 3)}


def read_manifest(set_dir: Path) -> dict[str, Any]:
    """benchmark.json of a benchmark set. Raises FileNotFoundError / ValueError naming the file."""
    path = Path(set_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {set_dir} a benchmark set (`realsynth benchmark`)?")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: 'format' is not {FORMAT!r}")
    return manifest


def installed_version() -> str:
    """The installed realsynth's version, 'unknown' in a tree that was never installed."""
    from importlib import metadata
    try:
        return metadata.version("realsynth")
    except metadata.PackageNotFoundError:
        return "unknown"


def _source_columns(ctx: Context, jobs: list[Job]) -> dict[str, dict[str, str]]:
    """{hr_key: {source, source_sha256}}: a folder image's path relative to the folder and the
    sha256 of its file; an HR set's own `source`/`source_sha256` columns (the photo the tile is
    cut from) where it has them, else the HR key and the sha256 of its `hr.png`."""
    keys = sorted({job.hr_key for job in jobs})
    if not ctx.source.is_set:
        return {k: {"source": ctx.source.files[k].relative_to(ctx.source.path).as_posix(),
                    "source_sha256": sha256_file(ctx.source.files[k])} for k in keys}
    from pipeline.io.shards import ShardSet
    index = ShardSet(ctx.source.path).index.set_index("key")
    src = index["source"] if "source" in index.columns else index.index.to_series()
    sha = index["source_sha256"] if "source_sha256" in index.columns else index["sha256"]
    return {k: {"source": str(src[k]), "source_sha256": str(sha[k])} for k in keys}


def _with_columns(results: Iterable[Result], columns: dict[str, dict[str, str]]) -> Iterator[Result]:
    """`results` with the `source` columns of their HR image added to each produced sample's index row."""
    for res in results:
        if res.sample is not None:
            res.sample.columns = {**res.sample.columns, **columns[res.hr_key]}
        yield res




def _digest(lines: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
