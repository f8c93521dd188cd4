"""Shared checks and draws of the domain ops: the image contract and [lo, hi] / choice ranges.

Every check raises ValueError in one line naming the key, the value and what is allowed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def check_img(img: np.ndarray, name: str = "img", min_side: int = 1) -> None:
    """Raise ValueError unless `img` is (H, W, 3) float32 with H, W >= `min_side`."""
    if img.dtype != np.float32 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) float32 RGB in [0, 1], got {img.shape} {img.dtype}")
    if min(img.shape[:2]) < min_side:
        raise ValueError(f"{name} must be at least {min_side}x{min_side} px, got {img.shape[1]}x{img.shape[0]}")


def check_choice(key: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise ValueError unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")


def check_range(key: str, value: float, lo: float, hi: float) -> None:
    """Raise ValueError unless lo <= value <= hi."""
    if not lo <= value <= hi:
        raise ValueError(f"{key} must be in [{lo}, {hi}], got {value!r}")


def check_keys(op: str, params: Mapping[str, Any], required: Sequence[str]) -> None:
    """Raise ValueError naming the first key of `required` missing from `params`."""
    for key in required:
        if key not in params:
            raise ValueError(f"{op} params: missing key {key!r} (got {sorted(params)})")


def bounds(ranges: Mapping[str, Any], key: str) -> tuple[float, float]:
    """ranges[key] as (lo, hi). Raises ValueError unless it is [lo, hi] with lo <= hi."""
    pair = ranges.get(key)
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not pair[0] <= pair[1]:
        raise ValueError(f"ranges.{key}: expected [lo, hi] with lo <= hi, got {pair!r}")
    return pair[0], pair[1]


def draw_int(rng: np.random.Generator, ranges: Mapping[str, Any], key: str) -> int:
    """An int uniform in ranges[key] = [lo, hi], both ends included."""
    lo, hi = bounds(ranges, key)
    return int(rng.integers(int(lo), int(hi) + 1))


def draw_float(rng: np.random.Generator, ranges: Mapping[str, Any], key: str) -> float:
    """A float uniform in ranges[key] = [lo, hi]."""
    lo, hi = bounds(ranges, key)
    return float(rng.uniform(lo, hi))


def draw_choice(rng: np.random.Generator, ranges: Mapping[str, Any], key: str) -> Any:
    """One element of the non-empty list ranges[key], uniformly. Raises ValueError on an empty or missing list."""
    options = ranges.get(key)
    if not isinstance(options, (list, tuple)) or not options:
        raise ValueError(f"ranges.{key}: expected a non-empty list of choices, got {options!r}")
    return options[int(rng.integers(len(options)))]


def draw_seed(rng: np.random.Generator) -> int:
    """A seed for the op's own noise or motion, stored in its params (an int below 2**31, JSON-safe)."""
    return int(rng.integers(2**31))
