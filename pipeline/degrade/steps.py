"""The built-in ops a preset step can name, each with its parameter model (probabilities, ranges).

A preset step is a mapping `{name: blur1, op: blur, prob: 1.0, sigma_range: [0.2, 3.0], ...}`: `name`
is the recipe step's name (and the `degrade.<name>` key that overrides it), `op` picks the model
below, the other keys are that model's fields. `scales` (optional, any op) limits a step to those SR
factors: at another scale it is left out before any draw (bsrgan's `down0`, at scale 4 only).

Each op's sampler (`draw.py`) consumes the recipe generator in a fixed order, documented on its
model; the built-in presets' bytes depend on that order.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from pipeline.config import UsmConfig
from pipeline.params import Bool, Float, Int, Model, Prob, Str, around_one, distribution, interval, invalid, odd

from .kernels import KERNEL_KINDS, MAX_SIZE

INTERPS = ("area", "bilinear", "bicubic")
RESIZE_MODES = ("up", "down", "keep")
PI = math.pi

Pair = tuple[Float, Float]
KernelSize = Annotated[Int, odd(1, MAX_SIZE)]
Sizes = Annotated[tuple[KernelSize, KernelSize], interval()]           # odd sizes drawn uniformly from [lo, hi]
Omegas = Annotated[Pair, interval(lo=1e-6, hi=PI)]                       # sinc cutoff, rad/px
Qualities = Annotated[tuple[Int, Int], interval(lo=1, hi=100)]           # libjpeg quality, integers uniform in [lo, hi]
Interps = Annotated[tuple[Literal["area", "bilinear", "bicubic"], ...], Field(min_length=1)]  # drawn uniformly


class StepBase(Model):
    """What every step has: its recipe name, its op, and the SR factors it runs at (None: all)."""
    name: Str
    op: Str
    scales: Optional[tuple[Int, ...]] = None


class UsmStep(StepBase, UsmConfig):
    """Unsharp mask of the HR (Real-ESRGAN's USMSharp). Draws nothing."""
    op: Literal["usm"]
    enabled: Bool = True             # sharpen the HR before degrading (Real-ESRGAN: yes)


class BlurStep(StepBase):
    """A blur kernel. Draws: u < prob (else the identity, recorded as kind `none`), size, u < sinc_prob,
    then sinc: ω; else family (one u), σx, [σy, θ for aniso], [β: one u, then β for generalized/plateau]."""
    op: Literal["blur"]
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


class ResizeStep(StepBase):
    """A resize by a drawn factor. Draws: mode (one u), factor (up: uniform(1, hi), down: uniform(lo, 1)),
    interpolation. relative_to: `input` (the image entering the step) or `lr` (H / scale, Real-ESRGAN's
    second resize)."""
    op: Literal["resize"]
    relative_to: Literal["input", "lr"] = "input"
    mode_probs: Annotated[dict[Str, Float], distribution(RESIZE_MODES, "modes")]  # up / down / keep
    scale_range: Annotated[Pair, around_one()]
    interps: Interps


class NoiseStep(StepBase):
    """Gaussian or Poisson noise. Draws: u < prob (else no step), u < gaussian_prob, level, u < gray_prob, seed."""
    op: Literal["noise"]
    prob: Prob
    gaussian_prob: Prob              # else Poisson
    sigma_range: Annotated[Pair, interval(lo=0.0)]          # Gaussian σ in 8-bit units
    poisson_scale_range: Annotated[Pair, interval(lo=0.0)]
    gray_prob: Prob                  # same noise in all three channels


class JpegStep(StepBase):
    """A libjpeg round trip. Draws: u < prob when prob is given (else no step; no prob: always, no draw), quality."""
    op: Literal["jpeg"]
    prob: Optional[Prob] = None
    quality_range: Qualities


class SincStep(StepBase):
    """A sinc (circular low-pass) filter, Real-ESRGAN's final one. Draws: u < prob (else the identity,
    kind `none`), odd size, ω."""
    op: Literal["sinc"]
    prob: Prob
    size_range: Sizes
    omega_range: Omegas


class ResizeLrStep(StepBase):
    """A resize to the LR size (H / scale, W / scale). Draws: the interpolation."""
    op: Literal["resize_lr"]
    interps: Interps


class HalveStep(StepBase):
    """A 2x downsample (bsrgan's `down0`, KAIR's scale2_prob). Draws: u < prob (else no step), interpolation."""
    op: Literal["halve"]
    prob: Prob
    interps: Interps


class ShrinkStep(StepBase):
    """A downsample by 1 / uniform(1, 1 / min_scale) (KAIR's first resize). Draws: the factor, interpolation."""
    op: Literal["shrink"]
    min_scale: Float = Field(gt=0.0, le=1.0)
    interps: Interps


class CameraStep(StepBase):
    """Signal-dependent sensor noise in linear light (shot + read, Brooks et al. 2019). Draws: u < prob
    (else no step), log shot (uniform), read's normal deviate, seed."""
    op: Literal["camera"]
    prob: Prob
    shot_range: Annotated[Pair, interval(lo=1e-12)]  # shot-noise variance factor, log-uniform
    read_slope: Float                # log(read var) = slope·log(shot) + intercept + N(0, read_std)
    read_intercept: Float
    read_std: Float = Field(ge=0.0)


class LearnedStep(StepBase):
    """A learned degrader at LR size (`realsynth learn-degradation`'s degrader.pth): x + α·residual(x),
    so it must come after the step that resizes to the LR. Draws: u < prob when prob is given (else
    recorded not applied), α uniform in strength_range, a seed. Recorded as the user op
    `pipeline.learned.op:apply_learned` (params checkpoint, sha256, strength), so replay, recipe
    columns (`<name>_strength`, ...) and workers work as for any user op (`draw._learned`)."""
    op: Literal["learned"]
    checkpoint: Str                  # path to degrader.pth (relative: to the working directory)
    prob: Optional[Prob] = None
    strength_range: Annotated[Pair, interval(lo=0.0)] = (1.0, 1.0)

    @model_validator(mode="after")
    def _exists(self) -> LearnedStep:
        from pathlib import Path
        if not Path(self.checkpoint).is_file():
            raise invalid("checkpoint", f"expected a degrader checkpoint file (realsynth learn-degradation), "
                                        f"got {self.checkpoint!r}: no such file")
        return self


OPS: dict[str, type[StepBase]] = {cls.model_fields["op"].annotation.__args__[0]: cls for cls in (
    UsmStep, BlurStep, ResizeStep, NoiseStep, JpegStep, SincStep, ResizeLrStep, HalveStep, ShrinkStep, CameraStep,
    LearnedStep)}
