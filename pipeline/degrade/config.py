"""The `degrade:` section of params.yaml: a preset plus per-step overrides, validated after merging.

    degrade:
      preset: realesrgan-x4plus      # fills every range and probability below
      variants: 1
      blur2: {sigma_range: [0.2, 1.0]}   # any key given here replaces the preset's value

Each step group (`usm`, `blur1`, `resize1`, `noise1`, `jpeg1`, `blur2`, ..., `final`, and for
bsrgan `down0`, `camera`) is a dataclass whose fields default to None, meaning "the preset's
value". `DegradeConfig.settings` is the merged, complete `Settings`; `validate` checks it and
raises one `ParamsError` line naming the dotted key (`degrade.noise1.sigma_range: ...`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Literal

from pipeline.params import (ParamsError, check_choice, check_interval, check_odd, check_probabilities,
                             check_range)

from .kernels import KERNEL_KINDS, MAX_SIZE

PRESETS = ("realesrgan-x4plus", "realesrgan-x2plus", "bsrgan")
INTERPS = ("area", "bilinear", "bicubic")
RESIZE_MODES = ("up", "down", "keep")
SCALES = (1, 2, 3, 4, 8)
PI = math.pi


@dataclass(frozen=True)
class UsmSettings:
    enabled: bool | None = None      # sharpen the HR before degrading (Real-ESRGAN: yes)
    size: int | None = None          # Gaussian window (px, odd); sigma from OpenCV's rule for the size
    weight: float | None = None      # sharp = img + weight * (img - blur)
    threshold: float | None = None   # residual (8-bit units) above which a pixel is sharpened


@dataclass(frozen=True)
class BlurSettings:
    prob: float | None = None                        # chance the blur is applied (else identity)
    kernel_probs: dict[str, float] | None = None     # family → probability (families not given: 0)
    size_range: tuple[int, int] | None = None        # odd kernel sizes drawn uniformly from [lo, hi]
    sigma_range: tuple[float, float] | None = None   # px, for sigma_x and sigma_y
    beta_gaussian_range: tuple[float, float] | None = None  # generalized Gaussian shape β
    beta_plateau_range: tuple[float, float] | None = None   # plateau shape β
    sinc_prob: float | None = None                   # chance of a sinc kernel instead of a family one
    sinc_omega_range: tuple[float, float] | None = None        # rad/px, kernel size < sinc_large_from
    sinc_omega_range_large: tuple[float, float] | None = None  # rad/px, kernel size >= sinc_large_from
    sinc_large_from: int | None = None


@dataclass(frozen=True)
class ResizeSettings:
    mode_probs: dict[str, float] | None = None       # up / down / keep
    scale_range: tuple[float, float] | None = None   # up: uniform(1, hi); down: uniform(lo, 1)
    interps: tuple[str, ...] | None = None           # drawn uniformly


@dataclass(frozen=True)
class NoiseSettings:
    prob: float | None = None                            # chance any noise is added
    gaussian_prob: float | None = None                   # else Poisson
    sigma_range: tuple[float, float] | None = None       # Gaussian σ in 8-bit units
    poisson_scale_range: tuple[float, float] | None = None
    gray_prob: float | None = None                       # same noise in all three channels


@dataclass(frozen=True)
class JpegSettings:
    prob: float | None = None
    quality_range: tuple[int, int] | None = None     # libjpeg quality, integers uniform in [lo, hi]


@dataclass(frozen=True)
class FinalSettings:
    interps: tuple[str, ...] | None = None           # resize to (H/scale, W/scale)
    sinc_prob: float | None = None
    size_range: tuple[int, int] | None = None
    omega_range: tuple[float, float] | None = None
    jpeg_quality_range: tuple[int, int] | None = None
    resize_first_prob: float | None = None           # order resize→sinc→JPEG, else JPEG→resize→sinc


@dataclass(frozen=True)
class Down0Settings:
    """bsrgan only: at scale 4, first halve the HR with this probability (KAIR's scale2_prob)."""
    prob: float | None = None
    interps: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CameraSettings:
    """bsrgan only: signal-dependent sensor noise in linear light (shot + read, Brooks et al. 2019)."""
    prob: float | None = None
    shot_range: tuple[float, float] | None = None    # shot-noise variance factor, log-uniform
    read_slope: float | None = None                  # log(read var) = slope·log(shot) + intercept + N(0, read_std)
    read_intercept: float | None = None
    read_std: float | None = None


@dataclass(frozen=True)
class Settings:
    """Complete per-preset settings: no None left after `DegradeConfig.settings`."""
    preset: str
    scale: int
    usm: UsmSettings
    blur1: BlurSettings
    resize1: ResizeSettings
    noise1: NoiseSettings
    jpeg1: JpegSettings
    blur2: BlurSettings
    resize2: ResizeSettings
    noise2: NoiseSettings
    jpeg2: JpegSettings
    final: FinalSettings
    down0: Down0Settings
    camera: CameraSettings


# ---- presets ------------------------------------------------------------------------------------

_REALESRGAN_KERNELS = {"iso": 0.45, "aniso": 0.25, "generalized_iso": 0.12, "generalized_aniso": 0.03,
                       "plateau_iso": 0.12, "plateau_aniso": 0.03}


def _realesrgan(scale: int, name: str) -> Settings:
    """Real-ESRGAN's train_realesrgan_x{4,2}plus.yml options (both share every range)."""
    blur = dict(kernel_probs=_REALESRGAN_KERNELS, size_range=(7, 21), beta_gaussian_range=(0.5, 4.0),
                beta_plateau_range=(1.0, 2.0), sinc_prob=0.1, sinc_omega_range=(PI / 3, PI),
                sinc_omega_range_large=(PI / 5, PI), sinc_large_from=13)
    return Settings(
        preset=name, scale=scale,
        usm=UsmSettings(enabled=True, size=51, weight=0.5, threshold=10.0),
        blur1=BlurSettings(prob=1.0, sigma_range=(0.2, 3.0), **blur),
        resize1=ResizeSettings(mode_probs={"up": 0.2, "down": 0.7, "keep": 0.1}, scale_range=(0.15, 1.5),
                               interps=INTERPS),
        noise1=NoiseSettings(prob=1.0, gaussian_prob=0.5, sigma_range=(1.0, 30.0), poisson_scale_range=(0.05, 3.0),
                             gray_prob=0.4),
        jpeg1=JpegSettings(prob=1.0, quality_range=(30, 95)),
        blur2=BlurSettings(prob=0.8, sigma_range=(0.2, 1.5), **blur),
        resize2=ResizeSettings(mode_probs={"up": 0.3, "down": 0.4, "keep": 0.3}, scale_range=(0.3, 1.2),
                               interps=INTERPS),
        noise2=NoiseSettings(prob=1.0, gaussian_prob=0.5, sigma_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5),
                             gray_prob=0.4),
        jpeg2=JpegSettings(prob=0.0, quality_range=(30, 95)),  # Real-ESRGAN: none (its stage-2 JPEG is the final one)
        final=FinalSettings(interps=INTERPS, sinc_prob=0.8, size_range=(7, 21), omega_range=(PI / 3, PI),
                            jpeg_quality_range=(30, 95), resize_first_prob=0.5),
        down0=Down0Settings(prob=0.0, interps=INTERPS),
        camera=CameraSettings(prob=0.0, shot_range=(1e-4, 1.2e-2), read_slope=2.18, read_intercept=1.2, read_std=0.26),
    )


def _bsrgan() -> Settings:
    """KAIR's degradation_bsrgan (scale 4) mapped onto our steps; see README for the deviations."""
    blur = BlurSettings(prob=1.0, kernel_probs={"iso": 0.5, "aniso": 0.5}, size_range=(7, 21),
                        sigma_range=(0.1, 2.8), beta_gaussian_range=(0.5, 4.0), beta_plateau_range=(1.0, 2.0),
                        sinc_prob=0.0, sinc_omega_range=(PI / 3, PI), sinc_omega_range_large=(PI / 5, PI),
                        sinc_large_from=13)
    return Settings(
        preset="bsrgan", scale=4,
        usm=UsmSettings(enabled=False, size=51, weight=0.5, threshold=10.0),
        blur1=blur,
        resize1=ResizeSettings(mode_probs={"up": 0.0, "down": 1.0, "keep": 0.0}, scale_range=(0.125, 1.0),
                               interps=INTERPS),
        noise1=NoiseSettings(prob=1.0, gaussian_prob=1.0, sigma_range=(2.0, 25.0), poisson_scale_range=(0.05, 3.0),
                             gray_prob=0.4),
        jpeg1=JpegSettings(prob=0.9, quality_range=(30, 95)),
        blur2=blur,
        resize2=ResizeSettings(mode_probs={"up": 0.0, "down": 0.0, "keep": 1.0}, scale_range=(1.0, 1.0),
                               interps=INTERPS),
        noise2=NoiseSettings(prob=0.0, gaussian_prob=1.0, sigma_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5),
                             gray_prob=0.4),
        jpeg2=JpegSettings(prob=0.0, quality_range=(30, 95)),
        final=FinalSettings(interps=INTERPS, sinc_prob=0.0, size_range=(7, 21), omega_range=(PI / 3, PI),
                            jpeg_quality_range=(30, 95), resize_first_prob=1.0),
        down0=Down0Settings(prob=0.25, interps=INTERPS),
        camera=CameraSettings(prob=0.25, shot_range=(1e-4, 1.2e-2), read_slope=2.18, read_intercept=1.2, read_std=0.26),
    )


def preset_settings(name: str) -> Settings:
    """The complete default settings of preset `name`. Raises ValueError on an unknown name."""
    if name == "realesrgan-x4plus":
        return _realesrgan(4, name)
    if name == "realesrgan-x2plus":
        return _realesrgan(2, name)
    if name == "bsrgan":
        return _bsrgan()
    raise ValueError(f"unknown degradation preset {name!r}; choose from {list(PRESETS)}")


GROUPS = ("usm", "blur1", "resize1", "noise1", "jpeg1", "blur2", "resize2", "noise2", "jpeg2", "final",
          "down0", "camera")
# Groups a preset family never reads: giving them is an error rather than a silent no-op.
_UNUSED = {"realesrgan": ("down0", "camera"), "bsrgan": ("usm", "resize2", "noise2", "jpeg2")}
_UNUSED_KEYS = {"bsrgan": {"final": ("sinc_prob", "size_range", "omega_range", "resize_first_prob"),
                           "resize1": ("mode_probs",)}}


# ---- the params section -------------------------------------------------------------------------

@dataclass(frozen=True)
class DegradeConfig:
    preset: Literal["realesrgan-x4plus", "realesrgan-x2plus", "bsrgan"] = "realesrgan-x4plus"
    variants: int = 1                     # LR variants per HR tile
    backend: Literal["auto", "dali", "reference"] = "auto"  # auto: DALI on a GPU, else reference workers
    batch_size: int = 32                  # samples per DALI batch / per worker task
    workers: int = 0                      # reference-backend processes (0 = all cores)
    shard_bytes: int = 256 << 20          # target tar shard size
    examples: int = 8                     # HR/LR pairs on the report's contact sheet
    usm: UsmSettings = field(default_factory=UsmSettings)
    blur1: BlurSettings = field(default_factory=BlurSettings)
    resize1: ResizeSettings = field(default_factory=ResizeSettings)
    noise1: NoiseSettings = field(default_factory=NoiseSettings)
    jpeg1: JpegSettings = field(default_factory=JpegSettings)
    blur2: BlurSettings = field(default_factory=BlurSettings)
    resize2: ResizeSettings = field(default_factory=ResizeSettings)
    noise2: NoiseSettings = field(default_factory=NoiseSettings)
    jpeg2: JpegSettings = field(default_factory=JpegSettings)
    final: FinalSettings = field(default_factory=FinalSettings)
    down0: Down0Settings = field(default_factory=Down0Settings)
    camera: CameraSettings = field(default_factory=CameraSettings)

    @functools.cached_property
    def settings(self) -> Settings:
        """The preset's settings with every non-None override applied (not yet validated)."""
        base = preset_settings(self.preset)
        merged = {}
        for group in GROUPS:
            over = getattr(self, group)
            given = {f.name: getattr(over, f.name) for f in dataclasses.fields(over) if getattr(over, f.name) is not None}
            merged[group] = dataclasses.replace(getattr(base, group), **given)
        return dataclasses.replace(base, **merged)

    def validate(self, where: str) -> None:
        check_range(f"{where}.variants", self.variants, lo=1)
        check_range(f"{where}.batch_size", self.batch_size, lo=1)
        check_range(f"{where}.workers", self.workers, lo=0)
        check_range(f"{where}.shard_bytes", self.shard_bytes, lo=1)
        check_range(f"{where}.examples", self.examples, lo=0)
        family = "bsrgan" if self.preset == "bsrgan" else "realesrgan"
        for group in _UNUSED[family]:
            over = getattr(self, group)
            if any(getattr(over, f.name) is not None for f in dataclasses.fields(over)):
                raise ParamsError(f"{where}.{group}: not used by the {self.preset} preset; remove it")
        for group, keys in _UNUSED_KEYS.get(family, {}).items():
            for key in keys:
                if getattr(getattr(self, group), key) is not None:
                    raise ParamsError(f"{where}.{group}.{key}: not used by the {self.preset} preset; remove it")
        if family == "bsrgan" and self.backend == "dali":
            raise ParamsError(f"{where}.backend: expected 'auto' or 'reference' with the bsrgan preset "
                              f"(its per-sample shuffled order runs on the reference backend only), got 'dali'")
        validate_settings(self.settings, where)


def validate_settings(s: Settings, where: str) -> None:
    """Check complete settings; raises ParamsError naming `<where>.<group>.<key>`."""
    u = s.usm
    check_odd(f"{where}.usm.size", u.size, lo=3)
    check_range(f"{where}.usm.weight", u.weight, lo=0.0)
    check_range(f"{where}.usm.threshold", u.threshold, lo=0.0, hi=255.0)
    for name in ("blur1", "blur2"):
        _check_blur(f"{where}.{name}", getattr(s, name))
    for name in ("resize1", "resize2"):
        _check_resize(f"{where}.{name}", getattr(s, name))
    for name in ("noise1", "noise2"):
        n = getattr(s, name)
        w = f"{where}.{name}"
        check_probabilities(f"{w}.prob", [n.prob], total=None)
        check_probabilities(f"{w}.gaussian_prob", [n.gaussian_prob], total=None)
        check_probabilities(f"{w}.gray_prob", [n.gray_prob], total=None)
        check_interval(f"{w}.sigma_range", n.sigma_range, lo=0.0)
        check_interval(f"{w}.poisson_scale_range", n.poisson_scale_range, lo=0.0)
    for name in ("jpeg1", "jpeg2"):
        j = getattr(s, name)
        check_probabilities(f"{where}.{name}.prob", [j.prob], total=None)
        _check_quality(f"{where}.{name}.quality_range", j.quality_range)
    f = s.final
    _check_interps(f"{where}.final.interps", f.interps)
    check_probabilities(f"{where}.final.sinc_prob", [f.sinc_prob], total=None)
    _check_sizes(f"{where}.final.size_range", f.size_range)
    check_interval(f"{where}.final.omega_range", f.omega_range, lo=1e-6, hi=PI)
    _check_quality(f"{where}.final.jpeg_quality_range", f.jpeg_quality_range)
    check_probabilities(f"{where}.final.resize_first_prob", [f.resize_first_prob], total=None)
    check_probabilities(f"{where}.down0.prob", [s.down0.prob], total=None)
    _check_interps(f"{where}.down0.interps", s.down0.interps)
    c = s.camera
    check_probabilities(f"{where}.camera.prob", [c.prob], total=None)
    check_interval(f"{where}.camera.shot_range", c.shot_range, lo=1e-12)
    check_range(f"{where}.camera.read_std", c.read_std, lo=0.0)


def _check_blur(w: str, b: BlurSettings) -> None:
    check_probabilities(f"{w}.prob", [b.prob], total=None)
    unknown = sorted(set(b.kernel_probs) - set(KERNEL_KINDS))
    if unknown:
        raise ParamsError(f"{w}.kernel_probs: expected kernel families from {list(KERNEL_KINDS)}, got {unknown[0]!r}")
    check_probabilities(f"{w}.kernel_probs", list(b.kernel_probs.values()))
    _check_sizes(f"{w}.size_range", b.size_range)
    check_interval(f"{w}.sigma_range", b.sigma_range, lo=1e-3)
    for key in ("beta_gaussian_range", "beta_plateau_range"):
        lo, hi = getattr(b, key)
        if not (0 < lo <= 1 <= hi):  # BasicSR draws β below 1 or above 1 with equal odds
            raise ParamsError(f"{w}.{key}: expected [lo, hi] with 0 < lo <= 1 <= hi, got {[lo, hi]}")
    check_probabilities(f"{w}.sinc_prob", [b.sinc_prob], total=None)
    check_interval(f"{w}.sinc_omega_range", b.sinc_omega_range, lo=1e-6, hi=PI)
    check_interval(f"{w}.sinc_omega_range_large", b.sinc_omega_range_large, lo=1e-6, hi=PI)
    check_range(f"{w}.sinc_large_from", b.sinc_large_from, lo=1)


def _check_resize(w: str, r: ResizeSettings) -> None:
    unknown = sorted(set(r.mode_probs) - set(RESIZE_MODES))
    if unknown:
        raise ParamsError(f"{w}.mode_probs: expected modes from {list(RESIZE_MODES)}, got {unknown[0]!r}")
    check_probabilities(f"{w}.mode_probs", list(r.mode_probs.values()))
    lo, hi = r.scale_range
    if not (0 < lo <= 1 <= hi):
        raise ParamsError(f"{w}.scale_range: expected [lo, hi] with 0 < lo <= 1 <= hi, got {[lo, hi]}")
    _check_interps(f"{w}.interps", r.interps)


def _check_interps(w: str, interps: tuple[str, ...]) -> None:
    if not interps:
        raise ParamsError(f"{w}: expected a non-empty list from {list(INTERPS)}, got []")
    for i, name in enumerate(interps):
        check_choice(f"{w}[{i}]", name, INTERPS)


def _check_sizes(w: str, pair: tuple[int, int]) -> None:
    lo, hi = pair
    check_odd(f"{w}[0]", lo, lo=1, hi=MAX_SIZE)
    check_odd(f"{w}[1]", hi, lo=1, hi=MAX_SIZE)
    check_interval(w, pair)


def _check_quality(w: str, pair: tuple[int, int]) -> None:
    check_interval(w, pair, lo=1, hi=100)


def check_scale(where: str, scale: int) -> None:
    if scale not in SCALES:
        raise ParamsError(f"{where}: expected one of {list(SCALES)}, got {scale!r}")
