"""params.yaml → typed, validated configuration, loaded in one place.

Each top-level section is a frozen dataclass; stages load only the sections they read:

    cfg = load_params("params.yaml", sections=("seed", "scale", "paths", "ingest"))
    cfg.ingest.crop, cfg.paths.hr

Any problem is one `ParamsError` line naming the dotted key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import glob
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.params import (ParamsError, build, check_choice, check_interval, check_range,
                             coerce, read_yaml, to_dict)

SCALES = (1, 2, 3, 4, 8)

__all__ = ["ParamsError", "Params", "PathsConfig", "IngestConfig", "ShardConfig", "EvaluateConfig",
           "check_sources", "load_params", "parse_params", "to_dict"]


@dataclass(frozen=True)
class PathsConfig:
    hr: Path = Path("data/hr")        # ingest output: HR tile shard set
    lr: Path = Path("data/lr")        # degrade output: LR shard set
    pairs: Path = Path("data/pairs")  # shard output: train/ and val/ patch shard sets
    models: Path = Path("models")     # train outputs: net/ and gan/
    eval: Path = Path("eval")         # evaluate outputs
    photos: Path = Path("photos")     # the user's photos: every ingest source but 'sample' lies here

    def validate(self, where: str) -> None:
        """`photos` is a dependency of ingest, so it must hold no stage's output (DVC would see a cycle)."""
        for name in ("hr", "lr", "pairs", "models", "eval"):
            other = getattr(self, name)
            if within(other, self.photos) or within(self.photos, other):
                raise ParamsError(f"{where}.photos: expected a folder apart from {where}.{name} ({other}), "
                                  f"got {str(self.photos)!r}")


@dataclass(frozen=True)
class IngestConfig:
    sources: tuple[str, ...] = ("sample",)  # 'sample', or folders (recursive), files, globs or @list.txt
                                            # files inside paths.photos (see check_sources)
    min_side: int = 128                     # reject photos whose shorter side is smaller (px)
    max_pixels: int = 100_000_000           # reject larger photos before decoding (bomb guard)
    alpha: Literal["composite", "reject"] = "composite"
    background: tuple[int, int, int] = (255, 255, 255)  # alpha composited over this RGB colour
    scales: tuple[float, ...] = (1.0,)      # multiscale HR variants (DF2K practice: 1, 0.75, 0.5, 1/3)
    crop: int = 400                         # tile size (px); photos smaller than it give one smaller tile
    step: int = 200                         # tile stride (px)
    thresh: int = 0                         # extra edge tile when the leftover exceeds this (px)
    min_std: float = 0.0                    # drop tiles whose gray std is below this (0 disables)
    max_tiles_per_photo: int = 0            # keep at most this many tiles per photo, all scales together,
                                            # a seeded subset of those past min_std (0 = no cap)
    val_fraction: float = 0.2               # share of source photos held out for validation
    shard_bytes: int = 256 << 20            # target tar shard size
    workers: int = 0                        # decode/tile processes (0 = all cores)

    def validate(self, where: str) -> None:
        if not self.sources:
            raise ParamsError(f"{where}.sources: expected at least one source, got []")
        check_range(f"{where}.min_side", self.min_side, lo=1)
        check_range(f"{where}.max_pixels", self.max_pixels, lo=1)
        for i, c in enumerate(self.background):
            check_range(f"{where}.background[{i}]", c, lo=0, hi=255)
        if not self.scales:
            raise ParamsError(f"{where}.scales: expected at least one scale, got []")
        for i, s in enumerate(self.scales):
            check_range(f"{where}.scales[{i}]", s, lo=0.0, hi=1.0, lo_open=True)
        check_range(f"{where}.crop", self.crop, lo=16)
        check_range(f"{where}.step", self.step, lo=1)
        check_range(f"{where}.thresh", self.thresh, lo=0)
        check_range(f"{where}.min_std", self.min_std, lo=0.0)
        check_range(f"{where}.max_tiles_per_photo", self.max_tiles_per_photo, lo=0)
        check_range(f"{where}.val_fraction", self.val_fraction, lo=0.0, hi=1.0, hi_open=True)
        check_range(f"{where}.shard_bytes", self.shard_bytes, lo=1)
        check_range(f"{where}.workers", self.workers, lo=0)


@dataclass(frozen=True)
class ShardConfig:
    patch_size: int = 256                  # HR patch side (px); LR side = patch_size / scale
    patches_per_pair: int = 4              # random windows per HR/LR pair ('random' mode)
    mode: Literal["random", "grid"] = "random"
    val_patches_per_pair: int = 1          # windows per pair in the val split
    shard_bytes: int = 256 << 20           # target tar shard size
    min_shards: int = 4                    # at least world_size x workers shards per split
    workers: int = 0                       # processes (0 = all cores)

    def validate(self, where: str) -> None:
        check_range(f"{where}.patch_size", self.patch_size, lo=8)
        check_range(f"{where}.patches_per_pair", self.patches_per_pair, lo=1)
        check_range(f"{where}.val_patches_per_pair", self.val_patches_per_pair, lo=1)
        check_range(f"{where}.shard_bytes", self.shard_bytes, lo=1)
        check_range(f"{where}.min_shards", self.min_shards, lo=1)
        check_range(f"{where}.workers", self.workers, lo=0)


@dataclass(frozen=True)
class EvaluateConfig:
    max_images: int = 0                    # val tiles to evaluate (0 = all)
    crop_border: int = -1                  # pixels cropped for PSNR/SSIM (-1 = the scale, as BasicSR)
    niqe_params: str = "models/weights/niqe_pris_params.npz"  # NIQE pristine model file
    lpips_weights: str = ""                # folder with LPIPS weights ('' = torch hub cache)
    realworld_dir: str = ""                # optional folder of real LQ photos: NIQE of their SR outputs
    grid_crop: int = 96                    # HR crop side in the image grids (px)
    grid_images: int = 4                   # rows in the image grid
    tile: int = 0                          # upscale tile size (0 = whole image)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    weights: Literal["params_ema", "params"] = "params_ema"  # generator weights scored (params_ema: EMA, else params)
    reproducible: bool = False             # CPU: the same metrics bytes on any AVX2 x86-64 machine (pipeline.numerics)
    threads: int = 0                       # CPU threads (0 = all cores); >= 1 with reproducible
    extra_checkpoints: tuple[str, ...] = ()  # more generator files scored like net/gan, named by file stem

    def validate(self, where: str) -> None:
        check_range(f"{where}.max_images", self.max_images, lo=0)
        check_range(f"{where}.threads", self.threads, lo=0)
        if self.reproducible and self.threads < 1:
            raise ParamsError(f"{where}.threads: expected >= 1 with reproducible: true (the thread count "
                              f"changes CPU float sums), got {self.threads}")
        check_range(f"{where}.crop_border", self.crop_border, lo=-1)
        check_range(f"{where}.grid_crop", self.grid_crop, lo=8)
        check_range(f"{where}.grid_images", self.grid_images, lo=1)
        check_range(f"{where}.tile", self.tile, lo=0)


def check_sources(sources: tuple[str, ...], photos: Path, where: str = "ingest.sources") -> None:
    """Every source but `sample` must name a path inside `photos` (`paths.photos`), written as it is
    (relative to the repo, or both absolute).

    DVC cannot take a dependency list from params (`${ingest.sources}` is refused: "Cannot interpolate
    data of type 'list'"), so dvc.yaml makes ingest depend on the one folder `${paths.photos}`: adding,
    removing or changing a photo there makes ingest stale. A source outside it would be invisible to
    DVC, hence refused here. A glob is checked by its fixed part (`photos/shoot/**/*.jpg` → `photos/shoot`),
    a list file by its own path (its lines are checked by `resolve_sources(..., root=)` when read).
    """
    for i, src in enumerate(sources):
        if src != "sample" and not within(fixed_part(src), photos):
            raise ParamsError(f"{where}[{i}]: expected 'sample' or a path inside paths.photos "
                              f"({str(photos)!r}), got {src!r}")


def fixed_part(src: str) -> str:
    """The path a source names before any glob magic, `..` collapsed and a list file's `@` dropped:
    `@a/l.txt` → `a/l.txt`, `a/*/../../b/*.jpg` → `b`."""
    parts = Path(os.path.normpath(src.removeprefix("@"))).parts
    cut = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    return os.path.join(*parts[:cut]) if cut else "."


def within(path: str | Path, root: str | Path) -> bool:
    """Whether `path` is `root` or lies under it, lexically (`..` resolved, symlinks not followed);
    a relative and an absolute path never nest."""
    p, r = os.path.normpath(path), os.path.normpath(root)
    if os.path.isabs(p) != os.path.isabs(r):
        return False
    return r == "." and not p.startswith("..") or p == r or p.startswith(r.rstrip(os.sep) + os.sep)


def _lazy(module: str, name: str):
    """Section classes owned by a subpackage, imported only when that section is loaded."""
    return lambda: getattr(importlib.import_module(module), name)


SECTIONS: dict[str, Any] = {
    "seed": lambda: int,
    "scale": lambda: int,
    "paths": lambda: PathsConfig,
    "ingest": lambda: IngestConfig,
    "degrade": _lazy("pipeline.degrade.config", "DegradeConfig"),
    "shard": lambda: ShardConfig,
    "train_net": _lazy("pipeline.train.config", "TrainConfig"),
    "train_gan": _lazy("pipeline.train.config", "TrainConfig"),
    "evaluate": lambda: EvaluateConfig,
}


@dataclass(frozen=True)
class Params:
    """The loaded sections; a section that was not requested is None."""
    seed: int = 0
    scale: int = 4
    paths: PathsConfig = field(default_factory=PathsConfig)
    ingest: Any = None
    degrade: Any = None
    shard: Any = None
    train_net: Any = None
    train_gan: Any = None
    evaluate: Any = None
    source: str = "params.yaml"


def parse_params(data: dict | None, sections: tuple[str, ...] | None = None, source: str = "params.yaml") -> Params:
    """Validate the mapping of a params file; build `sections` (all by default)."""
    data = data or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ParamsError(f"{source}: {unknown[0]}: unknown section; allowed: {list(SECTIONS)}")
    wanted = tuple(SECTIONS) if sections is None else sections
    for name in wanted:
        if name not in SECTIONS:
            raise ValueError(f"unknown params section {name!r}; choose from {list(SECTIONS)}")
    values: dict[str, Any] = {"source": source}
    for name in set(wanted) | {"seed", "scale", "paths"}:
        cls = SECTIONS[name]()
        if cls is int:
            if name in data:
                values[name] = coerce(int, data[name], name)
        else:
            phase = {"train_net": "net", "train_gan": "gan"}.get(name)
            section = data.get(name)
            if phase is not None and hasattr(cls, "for_phase"):
                values[name] = cls.for_phase(phase, section, name)
            else:
                values[name] = build(cls, section, name)
    params = Params(**values)
    if params.ingest is not None:
        check_sources(params.ingest.sources, params.paths.photos)
    if params.scale not in SCALES:
        raise ParamsError(f"scale: expected one of {list(SCALES)}, got {params.scale!r}")
    if params.seed < 0:
        raise ParamsError(f"seed: expected a non-negative integer, got {params.seed!r}")
    return params


def load_params(path: str | Path = "params.yaml", sections: tuple[str, ...] | None = None) -> Params:
    """Read and validate a params file. Raises ParamsError (one line) or FileNotFoundError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: params file not found")
    data = read_yaml(path)
    try:
        return parse_params(data, sections, source=str(path))
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
