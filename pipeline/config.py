"""params.yaml → typed, validated configuration, loaded in one place.

Each top-level section is a frozen pydantic model (`pipeline.params.Model`); stages load only the
sections they read:

    cfg = load_params("params.yaml", sections=("seed", "scale", "paths", "ingest"))
    cfg.ingest.crop, cfg.paths.hr

Any problem is one `ParamsError` line naming the dotted key, the value and what is allowed.
"""
from __future__ import annotations

import glob
import importlib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from pipeline.params import (Bool, Float, Int, Model, ParamsError, PathField, Str, build, constraint, invalid,
                             odd, read_yaml, to_dict)

SCALES = (1, 2, 3, 4, 8)  # SR factors the pipeline supports (degrade, shard, train, evaluate)

__all__ = ["ParamsError", "Params", "PathsConfig", "IngestConfig", "ShardConfig", "EvaluateConfig", "UsmConfig",
           "SCALES", "check_scale", "check_sources", "load_params", "parse_params", "to_dict"]

Byte = Annotated[Int, Field(ge=0, le=255)]


def check_scale(where: str, scale: int) -> None:
    if scale not in SCALES:
        raise invalid(where, f"expected one of {list(SCALES)}, got {scale!r}")


class PathsConfig(Model):
    hr: PathField = Path("data/hr")        # ingest output: HR tile shard set
    lr: PathField = Path("data/lr")        # degrade output: LR shard set
    pairs: PathField = Path("data/pairs")  # shard output: train/ and val/ patch shard sets
    models: PathField = Path("models")     # train outputs: net/ and gan/
    eval: PathField = Path("eval")         # evaluate outputs
    photos: PathField = Path("photos")     # the user's photos: every ingest source but 'sample' lies here
    real: PathField = Path("data/real")    # real-pair sets (`realsynth pairs`): a dependency of shard
    presets: PathField = Path("presets")   # preset files and user-op modules degrade.preset names: a dependency of degrade

    @model_validator(mode="after")
    def _photos_apart(self) -> PathsConfig:
        """`photos` is a dependency of ingest, `real` one of shard and `presets` one of degrade, so none
        may hold a stage's output (DVC would see a cycle), nor `photos` and `real` each other."""
        for mine, name in [("photos", n) for n in ("hr", "lr", "pairs", "models", "eval")] + \
                          [("real", n) for n in ("hr", "lr", "pairs", "models", "eval", "photos")] + \
                          [("presets", n) for n in ("hr", "lr", "pairs", "models", "eval")]:
            other, path = getattr(self, name), getattr(self, mine)
            if within(other, path) or within(path, other):
                raise invalid(mine, f"expected a folder apart from paths.{name} ({other}), got {str(path)!r}")
        return self


class IngestConfig(Model):
    sources: Annotated[tuple[Str, ...], Field(min_length=1)] = ("sample",)
                                            # 'sample', or folders (recursive), files, globs or @list.txt
                                            # files inside paths.photos (see check_sources)
    min_side: Int = Field(128, ge=1)        # reject photos whose shorter side is smaller (px)
    max_pixels: Int = Field(100_000_000, ge=1)  # reject larger photos before decoding (bomb guard)
    alpha: Literal["composite", "reject"] = "composite"
    background: tuple[Byte, Byte, Byte] = (255, 255, 255)  # alpha composited over this RGB colour
    scales: Annotated[tuple[Annotated[Float, Field(gt=0.0, le=1.0)], ...], Field(min_length=1)] = (1.0,)
                                            # multiscale HR variants (DF2K practice: 1, 0.75, 0.5, 1/3)
    crop: Int = Field(400, ge=16)           # tile size (px); photos smaller than it give one smaller tile
    step: Int = Field(200, ge=1)            # tile stride (px)
    thresh: Int = Field(0, ge=0)            # extra edge tile when the leftover exceeds this (px)
    min_std: Float = Field(0.0, ge=0.0)     # drop tiles whose gray std is below this (0 disables)
    max_tiles_per_photo: Int = Field(0, ge=0)  # keep at most this many tiles per photo, all scales together,
                                            # a seeded subset of those past min_std (0 = no cap)
    val_fraction: Float = Field(0.2, ge=0.0, lt=1.0)  # share of source photos held out for validation
    shard_bytes: Int = Field(256 << 20, ge=1)  # target tar shard size
    workers: Int = Field(0, ge=0)           # decode/tile processes (0 = all cores)
    engine: Literal["local", "ray"] = "local"  # ray: one task per photo on the Ray cluster at RAY_ADDRESS
    retries: Int = Field(3, ge=0)           # ray: runs of a task again after its worker dies or it raises OSError


class ShardConfig(Model):
    patch_size: Int = Field(256, ge=8)     # HR patch side (px); LR side = patch_size / scale
    patches_per_pair: Int = Field(4, ge=1)  # random windows per HR/LR pair ('random' mode)
    mode: Literal["random", "grid"] = "random"
    val_patches_per_pair: Int = Field(1, ge=1)  # windows per pair in the val split
    shard_bytes: Int = Field(256 << 20, ge=1)  # target tar shard size
    min_shards: Int = Field(4, ge=1)       # at least world_size x workers shards per split
    workers: Int = Field(0, ge=0)          # processes (0 = all cores)
    real_pairs: Str = ""                   # a real-pair set (`realsynth pairs`) inside paths.real to mix in; '' = none
    real_fraction: Float = Field(0.25, ge=0.0, lt=1.0)  # share of each split's patches cut from real_pairs

    @model_validator(mode="after")
    def _real(self) -> ShardConfig:
        if self.real_pairs and self.real_fraction == 0:
            raise invalid("real_fraction", "expected > 0 when shard.real_pairs is set (or real_pairs: ''), got 0")
        return self


class EvaluateConfig(Model):
    max_images: Int = Field(0, ge=0)       # val tiles to evaluate (0 = all)
    crop_border: Int = Field(-1, ge=-1)    # pixels cropped for PSNR/SSIM (-1 = the scale, as BasicSR)
    niqe_params: Str = "models/weights/niqe_pris_params.npz"  # NIQE pristine model file
    lpips_weights: Str = ""                # folder with LPIPS weights ('' = torch hub cache)
    realworld_dir: Str = ""                # optional folder of real LQ photos: NIQE of their SR outputs
    grid_crop: Int = Field(96, ge=8)       # HR crop side in the image grids (px)
    grid_images: Int = Field(4, ge=1)      # rows in the image grid
    tile: Int = Field(0, ge=0)             # upscale tile size (0 = whole image)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    weights: Literal["params_ema", "params"] = "params_ema"  # generator weights scored (params_ema: EMA, else params)
    reproducible: Bool = False             # CPU: the same metrics bytes on any AVX2 x86-64 machine (pipeline.numerics)
    threads: Int = Field(0, ge=0)          # CPU threads (0 = all cores); >= 1 with reproducible
    extra_checkpoints: tuple[Str, ...] = ()  # more generator files scored like net/gan, named by file stem

    @model_validator(mode="after")
    def _threads(self) -> EvaluateConfig:
        check_threads(self.reproducible, self.threads)
        return self


class UsmConfig(Model):
    """Unsharp mask of the HR (Real-ESRGAN's USM): degrade's first step and train's sharpened targets."""
    size: Annotated[Int, odd(lo=3)] = 51       # Gaussian window (px, odd); sigma from OpenCV's rule for the size
    weight: Float = Field(0.5, ge=0.0)         # sharp = img + weight * (img - blur)
    threshold: Float = Field(10.0, ge=0.0, le=255.0)  # residual (8-bit levels) above which a pixel is sharpened


def check_threads(reproducible: bool, threads: int) -> None:
    """Reproducible CPU numerics pin the thread count (it changes CPU float sums)."""
    if reproducible and threads < 1:
        raise invalid("threads", "expected >= 1 with reproducible: true (the thread count "
                                 f"changes CPU float sums), got {threads}")


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
    "seed": None,    # scalars and paths: fields of Params itself, always loaded
    "scale": None,
    "paths": None,
    "ingest": lambda: IngestConfig,
    "degrade": _lazy("pipeline.degrade.config", "DegradeConfig"),
    "shard": lambda: ShardConfig,
    "train_net": _lazy("pipeline.train.config", "TrainConfig"),
    "train_gan": _lazy("pipeline.train.config", "TrainConfig"),
    "evaluate": lambda: EvaluateConfig,
}
PHASES = {"train_net": "net", "train_gan": "gan"}  # a train section is built by TrainConfig.for_phase


class Params(Model):
    """The loaded sections; a section that was not requested is None."""
    seed: Int = Field(0, ge=0)
    scale: Annotated[Int, constraint(check_scale)] = 4
    paths: PathsConfig = PathsConfig()
    ingest: Any = None
    degrade: Any = None
    shard: Any = None
    train_net: Any = None
    train_gan: Any = None
    evaluate: Any = None
    source: Str = "params.yaml"


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
    top = {k: data[k] for k in ("seed", "scale", "paths") if k in data and not (k == "paths" and data[k] is None)}
    params = build(Params, {**top, "source": source}, "")
    built = {}
    for name in dict.fromkeys(wanted):
        if SECTIONS[name] is None:
            continue
        cls = SECTIONS[name]()
        built[name] = (cls.for_phase(PHASES[name], data.get(name), name) if name in PHASES
                       else build(cls, data.get(name), name))
    if "ingest" in built:
        check_sources(built["ingest"].sources, params.paths.photos)
    if "shard" in built and built["shard"].real_pairs and not within(built["shard"].real_pairs, params.paths.real):
        raise ParamsError(f"shard.real_pairs: expected '' or a set inside paths.real ({str(params.paths.real)!r}), "
                          f"the folder DVC tracks for shard, got {built['shard'].real_pairs!r}")
    if "degrade" in built:
        built["degrade"].check_deps(params.paths.presets)
    return params.model_copy(update=built)


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
