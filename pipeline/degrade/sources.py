"""Where the HR tiles come from, and the plan of a set: which jobs (HR key × variant) it makes and
what every job shares (`Context`). Every read of an HR or LR set by the degrade engine is here.

    ctx, jobs = plan_set(Path("data/hr"), cfg, seed=0, scale=4)
    hr = read_hr(ctx.source, jobs[0])          # (H, W, 3) uint8 RGB

A plan is a pure function of the input listing and the params: any engine that plans the same input
gets the same jobs in the same order.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.io.digest import sha256_file
from pipeline.io.images import decode_image, decode_png
from pipeline.io.shards import INDEX, ShardSet, read_member

from .config import DegradeConfig, Settings, check_scale
from .preset import Preset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class Source:
    """An HR input: a shard set (`index` has key/split) or a folder (`files` maps key → path).
    `sha256` maps key → the sha256 of the HR's bytes (`<key>.hr.png`, or the image file)."""
    path: Path
    is_set: bool
    keys: tuple[str, ...]
    splits: dict[str, str]
    files: dict[str, Path]
    sha256: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)  # slots: one per sample is planned, so its size is the plan's
class Job:
    """One LR sample to make: HR tile `hr_key`, variant `variant`."""
    hr_key: str
    variant: int
    # (shard, offset, size) of `<hr_key>.hr.png` when the input is a shard set: workers read the HR
    # by offset and never load the index (nor pandas, a slow import in every worker)
    hr_at: tuple[str, int, int] | None = None
    hr_file: Path | None = None  # the image when the input is a folder (`plan_set` gives each job one of the two)
    split: str | None = None   # the HR tile's split (train/val) when the input set has one
    hr_sha256: str | None = None  # of the HR's bytes: with (seed, key, variant, params, code) it decides the sample


@dataclass(frozen=True)
class Context:
    """What every job of a set shares; `backend` is resolved: reference | dali-cpu | dali-gpu."""
    source: Source
    settings: Settings
    seed: int
    scale: int
    backend: str


def folder_key(rel: Path) -> str:
    """Sample key of an image at relative path `rel`: path parts joined by '_', suffix dropped,
    characters other than [A-Za-z0-9_-] replaced by '_' (keys carry no dots)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", "_".join(rel.with_suffix("").parts)) or "img"


def output_key(hr_key: str, variant: int) -> str:
    """The LR sample key of variant `variant` of HR tile `hr_key`."""
    return f"{hr_key}_v{variant}"


def open_source(inp: Path) -> Source:
    """Describe `inp`: a directory with index.parquet (HR shard set) or a folder of images.

    Raises:
        FileNotFoundError: `inp` is not a directory, or a folder without images.
        ValueError: two files map to the same key, or the set has no `hr.png` members.
    """
    inp = Path(inp)
    if not inp.is_dir():
        raise FileNotFoundError(f"{inp}: not a directory (expected an HR shard set or a folder of images)")
    if (inp / INDEX).is_file():
        shards = ShardSet(inp)
        index = shards.index
        if "size_hr_png" not in index.columns:
            raise ValueError(f"{inp / INDEX}: no 'hr.png' members (is {inp} an HR shard set?)")
        keys = index["key"].tolist()  # one str per key, shared by the tables below
        names: dict[str, str] = {}  # one str per split name
        splits = ({k: names.setdefault(v, v) if isinstance(v, str) else v for k, v in zip(keys, index["split"].tolist())}
                  if "split" in index.columns else {})
        digests = dict(zip(keys, index["sha256"].tolist())) if "sha256" in index.columns else {}
        return Source(inp, True, tuple(sorted(keys)), splits, {}, digests)
    files: dict[str, Path] = {}
    for path in sorted(p for p in inp.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        key = folder_key(path.relative_to(inp))
        if key in files:
            raise ValueError(f"{path}: same sample key {key!r} as {files[key]}; rename one of them")
        files[key] = path
    if not files:
        raise FileNotFoundError(f"{inp}: no images ({', '.join(IMAGE_EXTENSIONS)}) and no {INDEX}")
    digests = {key: sha256_file(path) for key, path in files.items()}
    return Source(inp, False, tuple(sorted(files)), {}, files, digests)




def resolve_backend(backend: str, preset: Preset, gpu: bool | None = None) -> str:
    """`reference`, `dali-cpu` or `dali-gpu` for a configured `auto|dali|reference`; `auto` is the
    reference backend for a preset the DALI graph cannot run (bsrgan, user ops).
    gpu: whether the GPUs that will run the graphs exist (a Ray cluster's); None: one is visible here.
    Raises ValueError on another backend."""
    from .dali_backend import cuda_visible, graph_problem
    if backend == "reference" or (backend == "auto" and graph_problem(preset)):
        return "reference"
    gpu = cuda_visible() if gpu is None else gpu
    if backend == "auto":
        return "dali-gpu" if gpu else "reference"
    if backend == "dali":
        return "dali-gpu" if gpu else "dali-cpu"
    raise ValueError(f"backend must be 'auto', 'dali' or 'reference', got {backend!r}")


def plan_set(inp: Path, cfg: DegradeConfig, *, seed: int, scale: int,
             gpu: bool | None = None) -> tuple[Context, list[Job]]:
    """Open `inp`, resolve the backend (`gpu`: see `resolve_backend`) and list every job (HR key ×
    variant), sorted by output key.

    Raises FileNotFoundError / ValueError on a bad input or seed, ParamsError on a bad scale.
    """
    check_scale("scale", scale)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    source = open_source(Path(inp))
    ctx = Context(source, cfg.settings, seed, scale, resolve_backend(cfg.backend, cfg.settings, gpu))
    hr_at = ShardSet(source.path).locate(source.keys, "hr.png") if source.is_set else dict.fromkeys(source.keys)
    jobs = sorted((Job(k, v, hr_at=hr_at[k], hr_file=source.files.get(k), split=source.splits.get(k),
                       hr_sha256=source.sha256.get(k))
                   for k in source.keys for v in range(cfg.variants)), key=lambda j: output_key(j.hr_key, j.variant))
    return ctx, jobs


def for_workers(ctx: Context) -> Context:
    """`ctx` without the per-key tables its jobs already carry (keys, splits, files, sha256): pickled
    once per worker, it stays small however large the set."""
    return replace(ctx, source=replace(ctx.source, keys=(), splits={}, files={}, sha256={}))


def read_hr(source: Source, job: Job) -> np.ndarray:
    """The HR tile of `job`, (H, W, 3) uint8 RGB: by offset from its shard, or its file.
    Raises ImageError when it does not decode."""
    if job.hr_at is not None:
        shard, offset, size = job.hr_at
        return decode_png(read_member(source.path / shard, job.hr_key, "hr.png", offset, size))
    return decode_image(job.hr_file.read_bytes())


def read_set_hrs(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """`<key>.hr.png` of each of `keys` in the HR shard set at `path`, as (H, W, 3) uint8 RGB (the
    index read once). Raises KeyError for an unknown key, FileNotFoundError for a missing set."""
    if not keys:
        return {}
    hr_set = ShardSet(path)
    return {key: decode_png(hr_set.read(key, ["hr.png"])["hr.png"]) for key in keys}


def read_sample(set_dir: Path, key: str) -> dict[str, bytes]:
    """Every member of sample `key` of the shard set `set_dir`, by member name.
    Raises KeyError for an unknown key."""
    return ShardSet(set_dir).read(key)
