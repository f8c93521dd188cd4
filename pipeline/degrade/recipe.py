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

from .kernels import pulse_kernel

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


@dataclass(frozen=True, eq=False)
class UserOp:
    """A `module:function` op (`userops.py`) with its drawn `params` and the `seed` of its generator;
    `applied` False when its probability left it out (params then NaN)."""
    name: str
    function: str
    params: dict[str, Any]
    seed: int
    applied: bool = True

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, UserOp) and (self.name, self.function, self.seed, self.applied) ==
                (other.name, other.function, other.seed, other.applied) and self.params.keys() == other.params.keys()
                and all(_same(v, other.params[k]) for k, v in self.params.items()))


Step = Union[Usm, Blur, Resize, Noise, Camera, Jpeg, UserOp]
_OPS: dict[str, type] = {"usm": Usm, "blur": Blur, "resize": Resize, "noise": Noise, "camera": Camera, "jpeg": Jpeg}
_OP_OF = {cls: op for op, cls in _OPS.items()}


@dataclass(frozen=True)
class Recipe:
    preset: str
    scale: int
    order: str            # the drawn order of its groups (`preset.py`): realesrgan: final order; bsrgan: the shuffle
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
    if isinstance(step, UserOp):
        return {"op": step.function, "name": step.name, "applied": step.applied, "seed": step.seed,
                "params": {k: _json_float(float(v)) if isinstance(v, float) else v for k, v in step.params.items()}}
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
    if isinstance(op, str) and ":" in op:
        return UserOp(name=d["name"], function=op, seed=int(d["seed"]), applied=bool(d["applied"]),
                      params={k: NAN if v is None else v for k, v in d["params"].items()})
    if op not in _OPS:
        raise ValueError(f"unknown recipe op {op!r}; choose from {list(_OPS)} or 'module:function'")
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

    Numbers are floats (`noise{s}_gray` is 1.0/0.0), names are strings; a recipe with a shuffled
    group (bsrgan's, and every preset derived from it, such as a calibrated `bsrgan-calibrated`)
    adds `bsrgan_order` (the shuffled orders; `final_order` keeps the chosen ones, NaN when there
    are none), `down0_interp`, `camera_shot`, `camera_read`;
    a user op `<name>_<param>` per parameter. Built-in steps under other names than these (a preset's own `blur3`) have no columns:
    their values are in the recipe JSON.
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
    shuffled, chosen = order_labels(recipe)
    if chosen or not shuffled:
        cols["final_order"] = chosen or recipe.order
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
    if shuffled:
        cols["bsrgan_order"] = shuffled
        down0 = recipe.step("down0")
        cols["down0_interp"] = down0.interp if down0 is not None else NAN
        cam = recipe.step("camera")
        cols["camera_shot"] = cam.shot if cam is not None else NAN
        cols["camera_read"] = cam.read if cam is not None else NAN
    for step in recipe.steps:
        if isinstance(step, UserOp):
            cols.update(user_columns(step))
    return cols


def order_labels(recipe: Recipe) -> tuple[str, str]:
    """The recipe's shuffled orders and its chosen ones, each joined by ';' ('' where none).

    A shuffled group's label joins its step names by ',', a choice's is one name (`preset.py`). Keyed
    on the recipe's structure, not the preset's name, so a preset derived from bsrgan (a calibrated
    one, a user's copy) keeps bsrgan's index columns.
    """
    labels = recipe.order.split(";")
    return (";".join(x for x in labels if "," in x),
            ";".join(x for x in labels if "," not in x and x != "fixed"))


def user_columns(step: UserOp) -> dict[str, Any]:
    """`<name>_<param>` per drawn parameter of a user op: numbers as floats, names as strings."""
    return {f"{step.name}_{k}": v if isinstance(v, str) else float(v) for k, v in step.params.items()}


def padded_kernels(recipe: Recipe) -> dict[str, np.ndarray]:
    """`blur1`, `blur2`, `final` kernels, each (21, 21) float32 centred; absent/skipped → unit pulse."""
    from .kernels import MAX_SIZE, pad_kernel
    out = {}
    for key, name in (("blur1", "blur1"), ("blur2", "blur2"), ("final", "sinc_final")):
        step = recipe.step(name)
        out[key] = pad_kernel(step.kernel if step is not None else pulse_kernel(1), MAX_SIZE)
    return out
