"""Degradation ops of other domains: video codecs, chroma subsampling, a camera ISP, web re-encoding.

Each op is a pair of pure functions and a table of default ranges (plain data, YAML-able):

    sample_<op>(rng: np.random.Generator, ranges: Mapping = <module>.RANGES) -> dict
        draws the op's parameters: flat JSON scalars and strings (None where a key does not apply),
        including a `seed` int where the op needs randomness of its own (noise, motion).
    apply_<op>(img: np.ndarray, params: Mapping) -> np.ndarray
        (H, W, 3) float32 RGB in [0, 1] → (H, W, 3) float32 RGB in [0, 1], the same shape, as the
        steps of `spec` work (uint8 only at the API: `spec.to_float` / `spec.quantize`). A function
        of (img, params) alone: the same params give the same bytes, in any process.

As a preset step (a `module:function` op called with (img, drawn params, seeded generator)): the
recipe stage calls `OPS[name].sample(rng, ranges)` with the step's ranges (defaults `OPS[name].ranges`)
and stores the dict; the degrade stage calls `OPS[name].apply(img, params)`; the generator is not
needed there, since every random choice, seeds included, is in the params. `step(name)` gives that
(img, params, rng) → img function. Recipes name codecs by their common names (`h264`, `hevc`,
`mpeg2`, `mpeg4`, `vp9`, `av1`) in the codec op's `codec` param, the ISP's demosaic in `demosaic`.

Ops (name: module, what it needs):
    codec:  codec.py   PyAV (FFmpeg's encoders, in memory); a codec missing from the wheel → ValueError
    chroma: chroma.py  OpenCV / NumPy
    isp:    isp.py     OpenCV demosaicing, Pillow's libjpeg
    web:    web.py     Pillow (JPEG, WebP, AVIF where Pillow has libavif)
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from . import chroma, codec, isp, web


class DomainOp(NamedTuple):
    """An op's sampler, its apply function and its default ranges."""
    sample: Callable[[np.random.Generator, Mapping[str, Any]], dict[str, Any]]
    apply: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]
    ranges: dict[str, Any]


OPS: dict[str, DomainOp] = {
    "codec": DomainOp(codec.sample_codec, codec.apply_codec, codec.RANGES),
    "chroma": DomainOp(chroma.sample_chroma, chroma.apply_chroma, chroma.RANGES),
    "isp": DomainOp(isp.sample_isp, isp.apply_isp, isp.RANGES),
    "web": DomainOp(web.sample_web, web.apply_web, web.RANGES),
}

__all__ = ["OPS", "DomainOp", "get_op", "step"]


def get_op(name: str) -> DomainOp:
    """The op called `name`. Raises ValueError naming the choices on an unknown name."""
    if name not in OPS:
        raise ValueError(f"unknown domain op {name!r}; choose from {sorted(OPS)}")
    return OPS[name]


def step(name: str) -> Callable[[np.ndarray, Mapping[str, Any], np.random.Generator], np.ndarray]:
    """The op as a preset's (img, params, rng) → img function; `rng` is unused (see the module docstring)."""
    op = get_op(name)

    def run(img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator | None = None) -> np.ndarray:
        return op.apply(img, params)
    run.__name__ = f"apply_{name}"
    return run
