"""Recipes: everything random about one degraded sample, drawn up front and stored with it.

A `Recipe` is an ordered tuple of steps (`Usm`, `Blur`, `Resize`, `Noise`, `Camera`, `Jpeg`) with
every parameter fixed, kernels included, so applying it is a pure function of (HR, recipe) and any
backend can replay it. It is drawn by `sample_recipe(cfg, seed, key, variant)` from a generator
seeded by `(seed, sha256(key), variant)` only, never by batch position or worker.

Step names (unique within a recipe): `usm`, `down0` (bsrgan), `blur1`, `resize1`, `noise1`, `jpeg1`,
`camera` (bsrgan), `blur2`, `resize2`, `noise2`, `jpeg2`, `resize_final`, `sinc_final`, `jpeg_final`.
Noise steps carry their own 63-bit `seed`: the noise field is a function of that seed and the
image shape, identical in every backend (see `geometry.standard_normal`).

JSON layout (`to_json`): {"version": 1, "preset": str, "scale": int, "order": str,
"steps": [{"op": "blur", "name": "blur1", "kind": "aniso", "size": 13, ..., "kernel": [[...]]}, ...]}
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from pipeline.seeding import sha256_int

from .config import (BlurSettings, DegradeConfig, NoiseSettings, ResizeSettings, Settings,
                     check_scale)
from .kernels import family_kernel, pulse_kernel, sinc_kernel

NAN = float("nan")
RECIPE_VERSION = 1


@dataclass(frozen=True)
class Usm:
    """Unsharp mask of the HR (Real-ESRGAN's USMSharp): `size` px Gaussian, σ from OpenCV's rule."""
    name: str
    size: int
    weight: float
    threshold: float


@dataclass(frozen=True, eq=False)
class Blur:
    """Correlate with `kernel` ((size, size) float32, sum 1); kind `none` is the identity."""
    name: str
    kind: str
    size: int
    kernel: np.ndarray
    sigma_x: float = NAN
    sigma_y: float = NAN
    theta: float = NAN
    beta: float = NAN
    omega: float = NAN

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Blur) and all(_same(a, b) for a, b in zip(_params(self), _params(other)))
                and np.array_equal(self.kernel, other.kernel))


@dataclass(frozen=True)
class Resize:
    """Resize to `int(base * scale)` per side: base is the current size (`relative_to="input"`) or the
    LR size H // s (`"lr"`); `mode` records the drawn direction (`up`, `down`, `keep`, `lr`)."""
    name: str
    mode: str
    scale: float
    interp: str
    relative_to: str


@dataclass(frozen=True)
class Noise:
    """Additive `gaussian` (level = σ in 8-bit units) or `poisson` (level = scale) noise, then clip."""
    name: str
    kind: str
    gray: bool
    level: float
    seed: int


@dataclass(frozen=True)
class Camera:
    """Sensor noise in linear light: variance = shot · x + read (bsrgan's camera step)."""
    name: str
    shot: float
    read: float
    seed: int


@dataclass(frozen=True)
class Jpeg:
    """libjpeg round trip at integer `quality` (input rounded to 8 bits, as any JPEG)."""
    name: str
    quality: int


Step = Union[Usm, Blur, Resize, Noise, Camera, Jpeg]
_OPS: dict[str, type] = {"usm": Usm, "blur": Blur, "resize": Resize, "noise": Noise, "camera": Camera, "jpeg": Jpeg}
_OP_OF = {cls: op for op, cls in _OPS.items()}


@dataclass(frozen=True)
class Recipe:
    preset: str
    scale: int
    order: str            # realesrgan: final order; bsrgan: the shuffled step order
    steps: tuple[Step, ...]

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"version": RECIPE_VERSION, "preset": self.preset, "scale": self.scale, "order": self.order,
                "steps": [_step_to_dict(s) for s in self.steps]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """Inverse of `to_dict`. Raises ValueError on an unknown version or op."""
        if data.get("version") != RECIPE_VERSION:
            raise ValueError(f"recipe version must be {RECIPE_VERSION}, got {data.get('version')!r}")
        return cls(preset=data["preset"], scale=int(data["scale"]), order=data["order"],
                   steps=tuple(_step_from_dict(d) for d in data["steps"]))

    @classmethod
    def from_json(cls, text: str | bytes) -> Recipe:
        return cls.from_dict(json.loads(text))


def _params(step: Step) -> tuple:
    return tuple(getattr(step, f.name) for f in dataclasses.fields(step) if f.name != "kernel")


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _json_float(v: float) -> float | None:
    return None if isinstance(v, float) and math.isnan(v) else v


def kernel_decimals(kernel: np.ndarray) -> list[list[float]]:
    """A kernel's float32 values as the floats of their shortest round-tripping decimals (JSON-ready).

    numpy's shortest repr is slow per value and a recipe holds hundreds; the kernels are symmetric
    (few values are distinct), so each distinct bit pattern is formatted once.
    """
    kernel = np.ascontiguousarray(kernel, np.float32)
    bits, where = np.unique(kernel.view(np.int32), return_inverse=True)  # bits: keeps 0.0 and -0.0 apart
    decimals = np.array([float(str(v)) for v in bits.view(np.float32)])
    return decimals[where].reshape(kernel.shape).tolist()


def _step_to_dict(step: Step) -> dict[str, Any]:
    out: dict[str, Any] = {"op": _OP_OF[type(step)]}
    for f in dataclasses.fields(step):
        value = getattr(step, f.name)
        if f.name == "kernel":
            value = kernel_decimals(value)
        elif isinstance(value, (float, np.floating)):
            value = _json_float(float(value))
        elif isinstance(value, (bool, np.bool_)):
            value = bool(value)
        elif isinstance(value, (int, np.integer)):
            value = int(value)
        out[f.name] = value
    return out


def _step_from_dict(d: dict[str, Any]) -> Step:
    op = d.get("op")
    if op not in _OPS:
        raise ValueError(f"unknown recipe op {op!r}; choose from {list(_OPS)}")
    cls = _OPS[op]
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        value = d[f.name]
        if f.name == "kernel":
            value = np.asarray(value, dtype=np.float32)
        elif value is None:
            value = NAN
        kwargs[f.name] = value
    return cls(**kwargs)


# ---- sampling -----------------------------------------------------------------------------------

def recipe_rng(seed: int, key: str, variant: int) -> np.random.Generator:
    if seed < 0 or variant < 0:
        raise ValueError(f"seed and variant must be non-negative, got seed={seed}, variant={variant}")
    return np.random.default_rng([int(seed), sha256_int(key), int(variant)])  # 64 bits (pipeline.seeding)


def sample_recipe(cfg: DegradeConfig | Settings, seed: int, key: str, variant: int = 0, *,
                  scale: int | None = None) -> Recipe:
    """Draw the recipe of sample (`key`, `variant`) under `seed`; the same inputs give the same recipe.

    cfg: the `degrade:` config (or its merged `Settings`). scale: SR factor, default the preset's.
    Raises ValueError on a negative seed/variant or a scale not in {1, 2, 3, 4, 8}.
    """
    settings = cfg.settings if isinstance(cfg, DegradeConfig) else cfg
    scale = settings.scale if scale is None else scale
    check_scale("scale", scale)
    rng = recipe_rng(seed, key, variant)
    if settings.preset == "bsrgan":
        return _sample_bsrgan(settings, rng, scale)
    return _sample_realesrgan(settings, rng, scale)


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


def _beta(rng: np.random.Generator, beta_range: tuple[float, float]) -> float:
    """BasicSR's rule: with odds 1:1 draw β from [lo, 1] or from [1, hi]."""
    lo, hi = beta_range
    return float(rng.uniform(lo, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, hi))


def _identity_blur(name: str) -> Blur:
    return Blur(name=name, kind="none", size=1, kernel=pulse_kernel(1))


def sample_blur(rng: np.random.Generator, s: BlurSettings, name: str) -> Blur:
    """One blur step from `BlurSettings` `s` (applied with `s.prob`, else the identity)."""
    if rng.random() >= s.prob:
        return _identity_blur(name)
    size = _odd_size(rng, s.size_range)
    if rng.random() < s.sinc_prob:
        omega_range = s.sinc_omega_range if size < s.sinc_large_from else s.sinc_omega_range_large
        omega = float(rng.uniform(*omega_range))
        return Blur(name=name, kind="sinc", size=size, kernel=sinc_kernel(size, omega), omega=omega)
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
    return Blur(name=name, kind=kind, size=size, kernel=kernel, sigma_x=sigma_x, sigma_y=sigma_y,
                theta=theta, beta=beta)


def sample_resize(rng: np.random.Generator, s: ResizeSettings, name: str, relative_to: str) -> Resize:
    mode = _choice(rng, s.mode_probs)
    lo, hi = s.scale_range
    scale = float(rng.uniform(1.0, hi)) if mode == "up" else float(rng.uniform(lo, 1.0)) if mode == "down" else 1.0
    interp = s.interps[int(rng.integers(len(s.interps)))]
    return Resize(name=name, mode=mode, scale=scale, interp=interp, relative_to=relative_to)


def sample_noise(rng: np.random.Generator, s: NoiseSettings, name: str) -> Noise | None:
    if rng.random() >= s.prob:
        return None
    gaussian = bool(rng.random() < s.gaussian_prob)
    level = float(rng.uniform(*(s.sigma_range if gaussian else s.poisson_scale_range)))
    gray = bool(rng.random() < s.gray_prob)
    return Noise(name=name, kind="gaussian" if gaussian else "poisson", gray=gray, level=level, seed=_noise_seed(rng))


def sample_jpeg(rng: np.random.Generator, quality_range: tuple[int, int], name: str) -> Jpeg:
    lo, hi = quality_range
    return Jpeg(name=name, quality=int(rng.integers(lo, hi + 1)))


def _sample_realesrgan(s: Settings, rng: np.random.Generator, scale: int) -> Recipe:
    """USM → blur1 → resize1 → noise1 → JPEG1 → blur2 → resize2 → noise2 → (JPEG2) → final, as
    Real-ESRGAN's feed_data, with the per-batch draws (resize, noise type, final order) made per sample."""
    steps: list[Step] = []
    if s.usm.enabled:
        steps.append(Usm("usm", s.usm.size, s.usm.weight, s.usm.threshold))
    # stage 1 resizes relative to its input, stage 2 to the LR size (Real-ESRGAN's second resize)
    for stage, relative_to in (("1", "input"), ("2", "lr")):
        steps.append(sample_blur(rng, getattr(s, f"blur{stage}"), f"blur{stage}"))
        steps.append(sample_resize(rng, getattr(s, f"resize{stage}"), f"resize{stage}", relative_to))
        noise = sample_noise(rng, getattr(s, f"noise{stage}"), f"noise{stage}")
        steps += [noise] if noise else []
        jpeg = getattr(s, f"jpeg{stage}")
        if rng.random() < jpeg.prob:
            steps.append(sample_jpeg(rng, jpeg.quality_range, f"jpeg{stage}"))
    # final: resize back to the LR size + sinc (or identity), and JPEG, in a random order
    f = s.final
    if rng.random() < f.sinc_prob:
        size = _odd_size(rng, f.size_range)
        omega = float(rng.uniform(*f.omega_range))
        sinc = Blur(name="sinc_final", kind="sinc", size=size, kernel=sinc_kernel(size, omega), omega=omega)
    else:
        sinc = _identity_blur("sinc_final")
    resize = Resize(name="resize_final", mode="lr", scale=1.0, interp=f.interps[int(rng.integers(len(f.interps)))],
                    relative_to="lr")
    jpeg = sample_jpeg(rng, f.jpeg_quality_range, "jpeg_final")
    resize_first = bool(rng.random() < f.resize_first_prob)
    steps += [resize, sinc, jpeg] if resize_first else [jpeg, resize, sinc]
    return Recipe(preset=s.preset, scale=scale, order="resize_sinc_jpeg" if resize_first else "jpeg_resize_sinc",
                  steps=tuple(steps))


_BSRGAN_SLOTS = ("blur1", "blur2", "resize1", "resize_final", "noise1", "jpeg1", "camera")


def _sample_bsrgan(s: Settings, rng: np.random.Generator, scale: int) -> Recipe:
    """KAIR's degradation_bsrgan: optional 2x pre-downsample (scale 4), then the seven steps in a
    random order with resize1 before resize_final, then a final JPEG."""
    steps: list[Step] = []
    if scale == 4 and rng.random() < s.down0.prob:
        steps.append(Resize(name="down0", mode="down", scale=0.5,
                            interp=s.down0.interps[int(rng.integers(len(s.down0.interps)))], relative_to="input"))
    order = [_BSRGAN_SLOTS[i] for i in rng.permutation(len(_BSRGAN_SLOTS))]
    i, j = order.index("resize1"), order.index("resize_final")
    if i > j:
        order[i], order[j] = order[j], order[i]
    for slot in order:
        if slot in ("blur1", "blur2"):
            step = sample_blur(rng, getattr(s, slot), slot)
        elif slot == "resize1":
            lo, _ = s.resize1.scale_range  # KAIR: scale = 1 / uniform(1, 2 sf)
            step = Resize(name="resize1", mode="down", scale=float(1.0 / rng.uniform(1.0, 1.0 / lo)),
                          interp=s.resize1.interps[int(rng.integers(len(s.resize1.interps)))], relative_to="input")
        elif slot == "resize_final":
            step = Resize(name="resize_final", mode="lr", scale=1.0,
                          interp=s.final.interps[int(rng.integers(len(s.final.interps)))], relative_to="lr")
        elif slot == "noise1":
            step = sample_noise(rng, s.noise1, "noise1")
        elif slot == "jpeg1":
            step = sample_jpeg(rng, s.jpeg1.quality_range, "jpeg1") if rng.random() < s.jpeg1.prob else None
        else:
            step = _sample_camera(rng, s) if rng.random() < s.camera.prob else None
        if step is not None:
            steps.append(step)
    steps.append(sample_jpeg(rng, s.final.jpeg_quality_range, "jpeg_final"))
    return Recipe(preset=s.preset, scale=scale, order=",".join(order), steps=tuple(steps))


def _sample_camera(rng: np.random.Generator, s: Settings) -> Camera:
    c = s.camera
    lo, hi = c.shot_range
    shot = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    read = float(math.exp(c.read_slope * math.log(shot) + c.read_intercept + rng.normal(0.0, c.read_std)))
    return Camera(name="camera", shot=shot, read=read, seed=_noise_seed(rng))


# ---- table columns ------------------------------------------------------------------------------

BASE_COLUMNS = tuple(
    [f"blur{s}_{k}" for s in (1, 2) for k in ("kind", "size", "sigma_x", "sigma_y", "theta", "beta", "omega")]
    + [f"resize{s}_{k}" for s in (1, 2) for k in ("mode", "scale", "interp")]
    + [f"noise{s}_{k}" for s in (1, 2) for k in ("kind", "gray", "level")]
    + ["jpeg1_quality", "jpeg2_quality", "final_order", "final_kind", "final_size", "final_omega", "final_interp",
       "final_jpeg_quality"])
BSRGAN_COLUMNS = ("bsrgan_order", "down0_interp", "camera_shot", "camera_read")
STRING_COLUMNS = frozenset(c for c in BASE_COLUMNS + BSRGAN_COLUMNS
                           if c.endswith(("_kind", "_mode", "_interp", "_order")))


def recipe_columns(recipe: Recipe) -> dict[str, Any]:
    """The recipe's scalars under their index column names (NaN where a step is absent).

    Numbers are floats (`noise{s}_gray` is 1.0/0.0), names are strings; bsrgan adds
    `bsrgan_order`, `down0_interp`, `camera_shot`, `camera_read`.
    """
    cols: dict[str, Any] = {c: NAN for c in BASE_COLUMNS}
    for st in (1, 2):
        blur = recipe.step(f"blur{st}")
        if blur is not None:
            cols[f"blur{st}_kind"] = blur.kind
            if blur.kind != "none":
                cols[f"blur{st}_size"] = float(blur.size)
            for k in ("sigma_x", "sigma_y", "theta", "beta", "omega"):
                cols[f"blur{st}_{k}"] = float(getattr(blur, k))
        resize = recipe.step(f"resize{st}")
        if resize is not None:
            cols[f"resize{st}_mode"] = resize.mode
            cols[f"resize{st}_scale"] = float(resize.scale)
            cols[f"resize{st}_interp"] = resize.interp
        noise = recipe.step(f"noise{st}")
        if noise is not None:
            cols[f"noise{st}_kind"] = noise.kind
            cols[f"noise{st}_gray"] = float(noise.gray)
            cols[f"noise{st}_level"] = float(noise.level)
        jpeg = recipe.step(f"jpeg{st}")
        if jpeg is not None:
            cols[f"jpeg{st}_quality"] = float(jpeg.quality)
    if recipe.preset != "bsrgan":
        cols["final_order"] = recipe.order
    sinc = recipe.step("sinc_final")
    if sinc is not None:
        cols["final_kind"] = sinc.kind
        if sinc.kind != "none":
            cols["final_size"] = float(sinc.size)
        cols["final_omega"] = float(sinc.omega)
    resize = recipe.step("resize_final")
    cols["final_interp"] = resize.interp if resize is not None else NAN
    jpeg = recipe.step("jpeg_final")
    cols["final_jpeg_quality"] = float(jpeg.quality) if jpeg is not None else NAN
    if recipe.preset == "bsrgan":
        cols["bsrgan_order"] = recipe.order
        down0 = recipe.step("down0")
        cols["down0_interp"] = down0.interp if down0 is not None else NAN
        cam = recipe.step("camera")
        cols["camera_shot"] = cam.shot if cam is not None else NAN
        cols["camera_read"] = cam.read if cam is not None else NAN
    return cols


def padded_kernels(recipe: Recipe) -> dict[str, np.ndarray]:
    """`blur1`, `blur2`, `final` kernels, each (21, 21) float32 centred; absent/skipped → unit pulse."""
    from .kernels import MAX_SIZE, pad_kernel
    out = {}
    for key, name in (("blur1", "blur1"), ("blur2", "blur2"), ("final", "sinc_final")):
        step = recipe.step(name)
        out[key] = pad_kernel(step.kernel if step is not None else pulse_kernel(1), MAX_SIZE)
    return out
