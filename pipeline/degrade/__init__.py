"""Degradation engine: kernels, recipe sampling, presets, and the reference and DALI backends.

Public contract (users and outside checks call these names):
    sample_recipe(cfg, seed, key, variant) -> Recipe
    apply_recipe(hr, recipe, backend="reference") -> lr      # HWC uint8 RGB in and out
"""
from __future__ import annotations

import numpy as np

from .config import DegradeConfig, Settings, preset_settings
from .draw import sample_recipe
from .recipe import Recipe, recipe_columns
from .geometry import TooSmallError

BACKENDS = ("reference", "dali")

__all__ = ["DegradeConfig", "Recipe", "Settings", "TooSmallError", "apply_recipe", "preset_settings",
           "recipe_columns", "sample_recipe"]


def apply_recipe(hr: np.ndarray, recipe: Recipe, backend: str = "reference") -> np.ndarray:
    """Degrade one HR tile with `recipe`: (H, W, 3) uint8 RGB → (H // s, W // s, 3) uint8 RGB.

    backend: `reference` (`fast.apply_recipe`: the bytes of `spec.apply_recipe`, faster) or `dali`
    (a one-sample DALI graph, GPU if visible, built for this call: for many tiles build one
    `dali_backend.DaliDegrader` and call its `run`).
    Raises ValueError on a bad image or backend, TooSmallError when the tile is too small.
    """
    if backend == "reference":
        from .fast import apply_recipe as apply_reference
        return apply_reference(hr, recipe)
    if backend == "dali":
        from .dali_backend import DaliDegrader
        return DaliDegrader(1).run([hr], [recipe])[0]
    raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
