"""Drawing a recipe from a preset: each step's sampler consumes one generator in the order its model
documents (`steps.py`, `userops.py`), step after step, groups as `preset.py` says.

    recipe = sample_recipe(cfg, seed=0, key="0001_t0", variant=0)

The generator is seeded by `(seed, sha256(key), variant)` only, never by batch position or worker.
The built-in presets' recipes are pinned byte for byte (tests/test_degrade_presets.py): a change to
any sampler here must keep every draw in place.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pipeline.config import check_scale
from pipeline.seeding import sha256_int

from .kernels import family_kernel, pulse_kernel, sinc_kernel
from .preset import Group, Preset
from .recipe import NAN, Blur, Camera, Jpeg, Noise, Recipe, Resize, Step, UserOp, Usm
from .steps import (BlurStep, CameraStep, HalveStep, JpegStep, LearnedStep, NoiseStep, ResizeLrStep, ResizeStep,
                    ShrinkStep, SincStep, StepBase, UsmStep)
from .userops import UserStep, draw_value


def recipe_rng(seed: int, key: str, variant: int) -> np.random.Generator:
    if seed < 0 or variant < 0:
        raise ValueError(f"seed and variant must be non-negative, got seed={seed}, variant={variant}")
    return np.random.default_rng([int(seed), sha256_int(key), int(variant)])  # 64 bits (pipeline.seeding)


def sample_recipe(cfg, seed: int, key: str, variant: int = 0, *, scale: int | None = None) -> Recipe:
    """Draw the recipe of sample (`key`, `variant`) under `seed`; the same inputs give the same recipe.

    cfg: the `degrade:` config (`DegradeConfig`) or a `Preset`. scale: SR factor, default the preset's.
    Raises ValueError on a negative seed/variant or a scale not in {1, 2, 3, 4, 8}.
    """
    preset: Preset = cfg if isinstance(cfg, Preset) else cfg.settings
    scale = preset.scale if scale is None else scale
    check_scale("scale", scale)
    rng = recipe_rng(seed, key, variant)
    steps: list[Step] = []
    labels: list[str] = []
    for item in preset.items:
        if isinstance(item, Group):
            for k in range(1, item.repeat + 1):
                labels += _draw_group(rng, item, scale, str(k) if item.repeat > 1 else "", steps)
        else:
            _append(steps, draw_step(rng, item, scale))
    return Recipe(preset=preset.name, scale=scale, order=";".join(labels) or "fixed", steps=tuple(steps))


def _append(steps: list[Step], step: Step | None, name: str | None = None) -> None:
    if step is not None:
        steps.append(step if name is None or step.name == name else _renamed(step, name))


def _renamed(step: Step, name: str) -> Step:
    import dataclasses
    return dataclasses.replace(step, name=name)


def _draw_group(rng: np.random.Generator, group: Group, scale: int, suffix: str, steps: list[Step]) -> list[str]:
    """Append one pass of `group` to `steps`; returns its order label ([] for a fixed group)."""
    by_name = {s.name: s for s in group.steps}
    if group.order == "shuffle":
        order = [group.steps[i].name for i in rng.permutation(len(group.steps))]
        for a, b in group.before:  # KAIR: swap the two when drawn the wrong way round
            i, j = order.index(a), order.index(b)
            if i > j:
                order[i], order[j] = order[j], order[i]
        for name in order:
            _append(steps, draw_step(rng, by_name[name], scale), name + suffix)
        return [",".join(n + suffix for n in order)]
    drawn = {s.name: draw_step(rng, s, scale) for s in group.steps}
    if group.order == "fixed":
        for name in by_name:
            _append(steps, drawn[name], name + suffix)
        return []
    u, acc, label = rng.random(), 0.0, None
    for label, p in group.order_probs.items():
        acc += p
        if u < acc:
            break
    for name in group.orders[label]:
        _append(steps, drawn[name], name + suffix)
    return [label]


def draw_step(rng: np.random.Generator, s: StepBase, scale: int) -> Step | None:
    """One step's recipe entry (None: left out of the recipe), drawn by its op's sampler."""
    if s.scales is not None and scale not in s.scales:
        return None
    return _SAMPLERS[type(s)](rng, s)


def _choice(rng: np.random.Generator, probs: dict[str, float]) -> str:
    """A name drawn with the given probabilities (one uniform draw, inverse CDF)."""
    u = rng.random() * sum(probs.values())
    acc = 0.0
    last = None
    for name, p in probs.items():
        if p <= 0:
            continue
        acc += p
        last = name
        if u < acc:
            return name
    return last


def _odd_size(rng: np.random.Generator, size_range: tuple[int, int]) -> int:
    lo, hi = size_range
    return int(lo + 2 * rng.integers(0, (hi - lo) // 2 + 1))


def _noise_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2 ** 63 - 1))


def _interp(rng: np.random.Generator, interps: tuple[str, ...]) -> str:
    return interps[int(rng.integers(len(interps)))]


def _beta(rng: np.random.Generator, beta_range: tuple[float, float]) -> float:
    """BasicSR's rule: with odds 1:1 draw β from [lo, 1] or from [1, hi]."""
    lo, hi = beta_range
    return float(rng.uniform(lo, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, hi))


def _identity_blur(name: str) -> Blur:
    return Blur(name=name, kind="none", size=1, kernel=pulse_kernel(1))


def _usm(rng: np.random.Generator, s: UsmStep) -> Usm | None:
    return Usm(s.name, s.size, s.weight, s.threshold) if s.enabled else None


def sample_blur(rng: np.random.Generator, s: BlurStep) -> Blur:
    """One blur step (applied with `s.prob`, else the identity)."""
    if rng.random() >= s.prob:
        return _identity_blur(s.name)
    size = _odd_size(rng, s.size_range)
    if rng.random() < s.sinc_prob:
        omega_range = s.sinc_omega_range if size < s.sinc_large_from else s.sinc_omega_range_large
        omega = float(rng.uniform(*omega_range))
        return Blur(name=s.name, kind="sinc", size=size, kernel=sinc_kernel(size, omega), omega=omega)
    kind = _choice(rng, s.kernel_probs)
    sigma_x = float(rng.uniform(*s.sigma_range))
    if kind.endswith("aniso"):
        sigma_y = float(rng.uniform(*s.sigma_range))
        theta = float(rng.uniform(-math.pi, math.pi))
    else:
        sigma_y, theta = sigma_x, 0.0
    beta = NAN
    if kind.startswith("generalized"):
        beta = _beta(rng, s.beta_gaussian_range)
    elif kind.startswith("plateau"):
        beta = _beta(rng, s.beta_plateau_range)
    kernel = family_kernel(kind, size, sigma_x, sigma_y, theta, 1.0 if math.isnan(beta) else beta)
    return Blur(name=s.name, kind=kind, size=size, kernel=kernel, sigma_x=sigma_x, sigma_y=sigma_y,
                theta=theta, beta=beta)


def _resize(rng: np.random.Generator, s: ResizeStep) -> Resize:
    mode = _choice(rng, s.mode_probs)
    lo, hi = s.scale_range
    scale = float(rng.uniform(1.0, hi)) if mode == "up" else float(rng.uniform(lo, 1.0)) if mode == "down" else 1.0
    return Resize(name=s.name, mode=mode, scale=scale, interp=_interp(rng, s.interps), relative_to=s.relative_to)


def _noise(rng: np.random.Generator, s: NoiseStep) -> Noise | None:
    if rng.random() >= s.prob:
        return None
    gaussian = bool(rng.random() < s.gaussian_prob)
    level = float(rng.uniform(*(s.sigma_range if gaussian else s.poisson_scale_range)))
    gray = bool(rng.random() < s.gray_prob)
    return Noise(name=s.name, kind="gaussian" if gaussian else "poisson", gray=gray, level=level,
                 seed=_noise_seed(rng))


def _jpeg(rng: np.random.Generator, s: JpegStep) -> Jpeg | None:
    if s.prob is not None and not rng.random() < s.prob:
        return None
    lo, hi = s.quality_range
    return Jpeg(name=s.name, quality=int(rng.integers(lo, hi + 1)))


def _sinc(rng: np.random.Generator, s: SincStep) -> Blur:
    if not rng.random() < s.prob:
        return _identity_blur(s.name)
    size = _odd_size(rng, s.size_range)
    omega = float(rng.uniform(*s.omega_range))
    return Blur(name=s.name, kind="sinc", size=size, kernel=sinc_kernel(size, omega), omega=omega)


def _resize_lr(rng: np.random.Generator, s: ResizeLrStep) -> Resize:
    return Resize(name=s.name, mode="lr", scale=1.0, interp=_interp(rng, s.interps), relative_to="lr")


def _halve(rng: np.random.Generator, s: HalveStep) -> Resize | None:
    if not rng.random() < s.prob:
        return None
    return Resize(name=s.name, mode="down", scale=0.5, interp=_interp(rng, s.interps), relative_to="input")


def _shrink(rng: np.random.Generator, s: ShrinkStep) -> Resize:
    scale = float(1.0 / rng.uniform(1.0, 1.0 / s.min_scale))  # KAIR: 1 / uniform(1, 2 sf)
    return Resize(name=s.name, mode="down", scale=scale, interp=_interp(rng, s.interps), relative_to="input")


def _camera(rng: np.random.Generator, s: CameraStep) -> Camera | None:
    if not rng.random() < s.prob:
        return None
    lo, hi = s.shot_range
    shot = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    read = float(math.exp(s.read_slope * math.log(shot) + s.read_intercept + rng.normal(0.0, s.read_std)))
    return Camera(name=s.name, shot=shot, read=read, seed=_noise_seed(rng))


def _user(rng: np.random.Generator, s: UserStep) -> UserOp:
    """A user op: u < prob (when given; else recorded not applied, params NaN), each param, the seed."""
    if s.prob is not None and not rng.random() < s.prob:
        return UserOp(name=s.name, function=s.op, params={k: NAN for k in s.params}, seed=0, applied=False)
    params = {k: draw_value(rng, spec) for k, spec in s.params.items()}
    return UserOp(name=s.name, function=s.op, params=params, seed=_noise_seed(rng), applied=True)


def _learned(rng: np.random.Generator, s: LearnedStep) -> UserOp:
    """A learned degrader as a user op: u < prob (when given), α, the seed; params name the checkpoint
    and its sha256 (replay refuses a checkpoint that changed since)."""
    from pipeline.learned.op import FUNCTION, checkpoint_digest
    names = ("checkpoint", "sha256", "strength")
    if s.prob is not None and not rng.random() < s.prob:
        return UserOp(name=s.name, function=FUNCTION, params={k: NAN for k in names}, seed=0, applied=False)
    strength = float(rng.uniform(*s.strength_range))
    params = {"checkpoint": s.checkpoint, "sha256": checkpoint_digest(s.checkpoint), "strength": strength}
    return UserOp(name=s.name, function=FUNCTION, params=params, seed=_noise_seed(rng), applied=True)


_SAMPLERS: dict[type, Callable] = {UsmStep: _usm, BlurStep: sample_blur, ResizeStep: _resize, NoiseStep: _noise,
                                   JpegStep: _jpeg, SincStep: _sinc, ResizeLrStep: _resize_lr, HalveStep: _halve,
                                   ShrinkStep: _shrink, CameraStep: _camera, UserStep: _user,
                                   LearnedStep: _learned}
