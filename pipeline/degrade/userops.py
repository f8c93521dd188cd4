"""User ops: a preset step whose `op` is `module:function`, sampled, recorded and replayed like a built-in.

    steps:
      - name: grain
        op: mypkg.film:add_grain        # importable wherever the degrade runs (worker processes too)
        prob: 0.5                        # optional: u < prob, else the step is recorded as not applied
        params:                          # drawn per sample, in this order
          strength: {uniform: [0.01, 0.08]}
          size: {integers: [1, 3]}       # inclusive
          shape: {choice: [round, square]}
          iso: {log_uniform: [100, 6400]}

The function's signature (what `spec.apply_step` calls):

    def add_grain(img: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
        img:    (H, W, 3) float32 in [0, 1] (values may stray outside before a clip, as between
                the built-in steps); not to be modified in place
        params: the drawn values by name ({"strength": 0.043, "size": 2, "shape": "round", ...})
        rng:    PCG64 seeded by the step's own drawn 63-bit seed: the op's only randomness
        returns (H, W, 3) float32, the same H and W (a user op may not resize)

It must be a pure function of its arguments (no global state, no I/O), so that the sample is the
same in every process and `realsynth replay` reproduces it. Draws from the recipe generator: u < prob
(when given), each param in order (uniform: one uniform; integers: one integer; choice: one integer;
log_uniform: one uniform of the log), then the seed. The recipe stores the step as
`{"op": "module:function", "name", "applied", "params", "seed"}` and the index gets one column per
param, `<name>_<param>` (NaN when not applied).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from pydantic import Field, model_validator

from pipeline.params import Float, Int, Model, Prob, Str, check_interval, invalid

from .steps import StepBase

NAN = float("nan")


class Range(Model):
    """One drawn parameter: exactly one of the four kinds."""
    uniform: Optional[tuple[Float, Float]] = None
    log_uniform: Optional[tuple[Float, Float]] = None
    integers: Optional[tuple[Int, Int]] = None
    choice: Optional[tuple[Union[Str, Int, Float], ...]] = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Range:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise invalid("", f"expected exactly one of {list(type(self).model_fields)}, got {given}")
        if given[0] != "choice":
            check_interval(given[0], getattr(self, given[0]), lo=1e-300 if given[0] == "log_uniform" else None)
        return self


class UserStep(StepBase):
    """A `module:function` step: its optional probability and its drawn parameters."""
    prob: Optional[Prob] = None
    params: dict[Str, Range] = {}

    @model_validator(mode="after")
    def _importable(self) -> UserStep:
        try:
            resolve(self.op)
        except ValueError as err:
            raise invalid("op", str(err)) from None
        return self


def is_user_op(op: Any) -> bool:
    return isinstance(op, str) and ":" in op


@functools.lru_cache(maxsize=None)
def resolve(path: str) -> Callable[[np.ndarray, dict, np.random.Generator], np.ndarray]:
    """The function named `module:function`. Raises ValueError when it cannot be imported or called."""
    module, _, name = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"expected an importable 'module:function', got {path!r} ({err})") from None
    if not callable(fn):
        raise ValueError(f"expected a function at {path!r}, got {type(fn).__name__}")
    return fn


def module_file(op: str) -> Path | None:
    """The source file of the module of `op` (`module:function`), None where it has none or is not found."""
    try:
        spec = importlib.util.find_spec(op.partition(":")[0])
    except (ImportError, ValueError):  # ValueError: a module without a spec (`__main__` of `python -c`)
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and Path(origin).is_file() else None


def draw_value(rng: np.random.Generator, spec: Range) -> Any:
    """One parameter's value (Python float, int or the choice itself)."""
    if spec.uniform is not None:
        return float(rng.uniform(*spec.uniform))
    if spec.log_uniform is not None:
        lo, hi = spec.log_uniform
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if spec.integers is not None:
        lo, hi = spec.integers
        return int(rng.integers(lo, hi + 1))
    return spec.choice[int(rng.integers(len(spec.choice)))]


def apply_user_op(img: np.ndarray, function: str, params: dict[str, Any], seed: int) -> np.ndarray:
    """Run the user op on (H, W, 3) float32; checks what it returns.
    Raises ValueError naming the op when the result is not a same-shape image."""
    out = resolve(function)(img, dict(params), np.random.default_rng(seed))
    if not isinstance(out, np.ndarray) or out.shape != img.shape:
        got = out.shape if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"user op {function}: expected an array of shape {img.shape}, got {got}")
    return out.astype(np.float32, copy=False)
