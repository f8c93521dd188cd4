"""The `degrade:` section of params.yaml: a preset, the user's overrides merged in, then validated.

    degrade:
      preset: realesrgan-x4plus      # fills every range and probability below
      variants: 1
      blur2: {sigma_range: [0.2, 1.0]}   # any key given here replaces the preset's value

Each step group (`usm`, `blur1`, `resize1`, `noise1`, `jpeg1`, `blur2`, ..., `final`, and for
bsrgan `down0`, `camera`) is one model with its constraints. A preset is plain data; the user's
groups are merged into it key by key (`pipeline.params.merge`: a mapping value such as
`kernel_probs` is replaced whole) and the result is validated, so `DegradeConfig` holds complete
groups and `.settings` is the `Settings` the sampler reads. Any problem is one `ParamsError` line
naming the dotted key (`degrade.noise1.sigma_range: ...`).
"""
from __future__ import annotations

import copy
import functools
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from pipeline.config import UsmConfig, check_scale
from pipeline.params import (Bool, Float, Int, Model, Prob, Str, around_one, check_choice, distribution,
                             interval, invalid, merge, odd)

from .kernels import KERNEL_KINDS, MAX_SIZE

PRESETS = ("realesrgan-x4plus", "realesrgan-x2plus", "bsrgan")
PRESET_SCALES = {"realesrgan-x4plus": 4, "realesrgan-x2plus": 2, "bsrgan": 4}
INTERPS = ("area", "bilinear", "bicubic")
RESIZE_MODES = ("up", "down", "keep")
PI = math.pi
__all__ = ["DegradeConfig", "Settings", "preset_settings", "check_scale", "PRESETS", "GROUPS"]

Pair = tuple[Float, Float]
KernelSize = Annotated[Int, odd(1, MAX_SIZE)]
Sizes = Annotated[tuple[KernelSize, KernelSize], interval()]           # odd sizes drawn uniformly from [lo, hi]
Omegas = Annotated[Pair, interval(lo=1e-6, hi=PI)]                       # sinc cutoff, rad/px
Qualities = Annotated[tuple[Int, Int], interval(lo=1, hi=100)]           # libjpeg quality, integers uniform in [lo, hi]
Interps = Annotated[tuple[Literal["area", "bilinear", "bicubic"], ...], Field(min_length=1)]  # drawn uniformly


class UsmSettings(UsmConfig):
    enabled: Bool                    # sharpen the HR before degrading (Real-ESRGAN: yes)


class BlurSettings(Model):
    prob: Prob                       # chance the blur is applied (else identity)
    kernel_probs: Annotated[dict[Str, Float], distribution(KERNEL_KINDS, "kernel families")]
                                     # family → probability (families not given: 0)
    size_range: Sizes
    sigma_range: Annotated[Pair, interval(lo=1e-3)]   # px, for sigma_x and sigma_y
    beta_gaussian_range: Annotated[Pair, around_one()]  # generalized Gaussian shape β (BasicSR draws
    beta_plateau_range: Annotated[Pair, around_one()]   # plateau shape β               below/above 1 1:1)
    sinc_prob: Prob                  # chance of a sinc kernel instead of a family one
    sinc_omega_range: Omegas         # kernel size < sinc_large_from
    sinc_omega_range_large: Omegas   # kernel size >= sinc_large_from
    sinc_large_from: Int = Field(ge=1)


class ResizeSettings(Model):
    mode_probs: Annotated[dict[Str, Float], distribution(RESIZE_MODES, "modes")]  # up / down / keep
    scale_range: Annotated[Pair, around_one()]  # up: uniform(1, hi); down: uniform(lo, 1)
    interps: Interps


class NoiseSettings(Model):
    prob: Prob                       # chance any noise is added
    gaussian_prob: Prob              # else Poisson
    sigma_range: Annotated[Pair, interval(lo=0.0)]          # Gaussian σ in 8-bit units
    poisson_scale_range: Annotated[Pair, interval(lo=0.0)]
    gray_prob: Prob                  # same noise in all three channels


class JpegSettings(Model):
    prob: Prob
    quality_range: Qualities


class FinalSettings(Model):
    interps: Interps                 # resize to (H/scale, W/scale)
    sinc_prob: Prob
    size_range: Sizes
    omega_range: Omegas
    jpeg_quality_range: Qualities
    resize_first_prob: Prob          # order resize→sinc→JPEG, else JPEG→resize→sinc


class Down0Settings(Model):
    """bsrgan only: at scale 4, first halve the HR with this probability (KAIR's scale2_prob)."""
    prob: Prob
    interps: Interps


class CameraSettings(Model):
    """bsrgan only: signal-dependent sensor noise in linear light (shot + read, Brooks et al. 2019)."""
    prob: Prob
    shot_range: Annotated[Pair, interval(lo=1e-12)]  # shot-noise variance factor, log-uniform
    read_slope: Float                # log(read var) = slope·log(shot) + intercept + N(0, read_std)
    read_intercept: Float
    read_std: Float = Field(ge=0.0)


class Steps(Model):
    """The step groups, complete (a preset's values with any overrides merged in)."""
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


class Settings(Steps):
    """What the sampler reads: the complete step groups, the preset's name and its scale."""
    preset: Str
    scale: Int


GROUPS = tuple(Steps.model_fields)


# ---- presets: plain data, merged with the user's groups ----------------------------------------

_REALESRGAN_KERNELS = {"iso": 0.45, "aniso": 0.25, "generalized_iso": 0.12, "generalized_aniso": 0.03,
                       "plateau_iso": 0.12, "plateau_aniso": 0.03}


def _realesrgan() -> dict[str, Any]:
    """Real-ESRGAN's train_realesrgan_x{4,2}plus.yml options (both share every range)."""
    blur = dict(kernel_probs=_REALESRGAN_KERNELS, size_range=(7, 21), beta_gaussian_range=(0.5, 4.0),
                beta_plateau_range=(1.0, 2.0), sinc_prob=0.1, sinc_omega_range=(PI / 3, PI),
                sinc_omega_range_large=(PI / 5, PI), sinc_large_from=13)
    return {
        "usm": {"enabled": True, "size": 51, "weight": 0.5, "threshold": 10.0},
        "blur1": {"prob": 1.0, "sigma_range": (0.2, 3.0), **blur},
        "resize1": {"mode_probs": {"up": 0.2, "down": 0.7, "keep": 0.1}, "scale_range": (0.15, 1.5),
                    "interps": INTERPS},
        "noise1": {"prob": 1.0, "gaussian_prob": 0.5, "sigma_range": (1.0, 30.0),
                   "poisson_scale_range": (0.05, 3.0), "gray_prob": 0.4},
        "jpeg1": {"prob": 1.0, "quality_range": (30, 95)},
        "blur2": {"prob": 0.8, "sigma_range": (0.2, 1.5), **blur},
        "resize2": {"mode_probs": {"up": 0.3, "down": 0.4, "keep": 0.3}, "scale_range": (0.3, 1.2),
                    "interps": INTERPS},
        "noise2": {"prob": 1.0, "gaussian_prob": 0.5, "sigma_range": (1.0, 25.0),
                   "poisson_scale_range": (0.05, 2.5), "gray_prob": 0.4},
        "jpeg2": {"prob": 0.0, "quality_range": (30, 95)},  # Real-ESRGAN: none (its stage-2 JPEG is the final one)
        "final": {"interps": INTERPS, "sinc_prob": 0.8, "size_range": (7, 21), "omega_range": (PI / 3, PI),
                  "jpeg_quality_range": (30, 95), "resize_first_prob": 0.5},
        "down0": {"prob": 0.0, "interps": INTERPS},
        "camera": {"prob": 0.0, "shot_range": (1e-4, 1.2e-2), "read_slope": 2.18, "read_intercept": 1.2,
                   "read_std": 0.26},
    }


def _bsrgan() -> dict[str, Any]:
    """KAIR's degradation_bsrgan (scale 4) mapped onto our steps, as its differences from Real-ESRGAN's
    (merged by the rule that merges the user's overrides); see README for the deviations."""
    blur = {"prob": 1.0, "kernel_probs": {"iso": 0.5, "aniso": 0.5}, "sigma_range": (0.1, 2.8), "sinc_prob": 0.0}
    return merge(Steps, _realesrgan(), {
        "usm": {"enabled": False},
        "blur1": blur,
        "resize1": {"mode_probs": {"up": 0.0, "down": 1.0, "keep": 0.0}, "scale_range": (0.125, 1.0)},
        "noise1": {"gaussian_prob": 1.0, "sigma_range": (2.0, 25.0)},
        "jpeg1": {"prob": 0.9},
        "blur2": blur,
        "resize2": {"mode_probs": {"up": 0.0, "down": 0.0, "keep": 1.0}, "scale_range": (1.0, 1.0)},
        "noise2": {"prob": 0.0, "gaussian_prob": 1.0},
        "final": {"sinc_prob": 0.0, "resize_first_prob": 1.0},
        "down0": {"prob": 0.25},
        "camera": {"prob": 0.25},
    })


def preset_values(name: str) -> dict[str, Any]:
    """Every step group's values under preset `name`, as plain data. Raises ValueError on an unknown name."""
    if name not in PRESETS:
        raise ValueError(f"unknown degradation preset {name!r}; choose from {list(PRESETS)}")
    return copy.deepcopy(_bsrgan() if name == "bsrgan" else _realesrgan())


def preset_settings(name: str) -> Settings:
    """The complete default settings of preset `name`. Raises ValueError on an unknown name."""
    return Settings.model_validate({**preset_values(name), "preset": name, "scale": PRESET_SCALES[name]})


# Groups a preset family never reads: giving them is an error rather than a silent no-op.
_UNUSED = {"realesrgan": ("down0", "camera"), "bsrgan": ("usm", "resize2", "noise2", "jpeg2")}
_UNUSED_KEYS = {"bsrgan": {"final": ("sinc_prob", "size_range", "omega_range", "resize_first_prob"),
                           "resize1": ("mode_probs",)}}


# ---- the params section -------------------------------------------------------------------------

class DegradeConfig(Steps):
    preset: Literal["realesrgan-x4plus", "realesrgan-x2plus", "bsrgan"] = "realesrgan-x4plus"
    variants: Int = Field(1, ge=1)        # LR variants per HR tile
    backend: Literal["auto", "dali", "reference"] = "auto"  # auto: DALI on a GPU, else reference workers
    batch_size: Int = Field(32, ge=1)     # samples per DALI batch / per worker task
    workers: Int = Field(0, ge=0)         # reference-backend processes (0 = all cores)
    shard_bytes: Int = Field(256 << 20, ge=1)  # target tar shard size
    examples: Int = Field(8, ge=0)        # HR/LR pairs on the report's contact sheet

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        """The preset's groups with the user's merged in; a group or key the preset never reads is refused."""
        if not isinstance(data, Mapping):
            return data
        preset = data.get("preset", "realesrgan-x4plus")
        check_choice("preset", preset, PRESETS)
        family = "bsrgan" if preset == "bsrgan" else "realesrgan"
        for group in _UNUSED[family]:
            if data.get(group):
                raise invalid(group, f"not used by the {preset} preset; remove it")
        for group, keys in _UNUSED_KEYS.get(family, {}).items():
            given = data.get(group)
            for key in keys:
                if isinstance(given, Mapping) and given.get(key) is not None:
                    raise invalid(f"{group}.{key}", f"not used by the {preset} preset; remove it")
        return merge(cls, preset_values(preset), data)

    @model_validator(mode="after")
    def _backend(self) -> DegradeConfig:
        if self.preset == "bsrgan" and self.backend == "dali":
            raise invalid("backend", "expected 'auto' or 'reference' with the bsrgan preset (its per-sample "
                                     "shuffled order runs on the reference backend only), got 'dali'")
        return self

    @functools.cached_property
    def settings(self) -> Settings:
        """The complete settings the sampler reads (the groups are validated already)."""
        groups = {group: getattr(self, group) for group in GROUPS}
        return Settings.model_construct(preset=self.preset, scale=PRESET_SCALES[self.preset], **groups)
