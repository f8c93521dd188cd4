"""The domain ops as preset steps (`op: pipeline.degrade.ops.steps:codec`): thin adapters whose
params are what a preset step can declare (`userops.py`: uniform, log_uniform, integers, choice).

Each adapter pins the declared params into the op's ranges (a value v becomes the range [v, v] or
the choice [v]) and lets the op's own sampler (`sample_<op>`) draw the rest from the step's seeded
generator, then applies the op. So every value a preset declares is in the recipe and the index
(`<step>_<param>`); the rest (the codec's speed preset and motion seed, the ISP's colour-matrix mix,
read noise and noise seed, each web generation's format and quality) follows from the step's seed,
and `realsynth replay` redraws it. The ops keep the image's shape; a preset's built-in resize steps
set the LR size around them.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import codec as _codec
from . import isp as _isp
from . import web as _web
from .params import check_choice, check_keys


def pinned(ranges: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """`ranges` with each key of `params` fixed to its value: [v] for a name, [v, v] for a number.
    Raises ValueError naming a param the op has no range for."""
    out = dict(ranges)
    for key, value in params.items():
        if key not in ranges:
            raise ValueError(f"param {key!r}: not a drawn key of the op; allowed: {sorted(ranges)}")
        out[key] = [value] if isinstance(value, str) else [value, value]
    return out


def codec(img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Video compression (`ops/codec.py`) at a constant quality.

    params: `codec` (h264, mpeg2, mpeg4, vp9, av1; hevc too, see the README's note), `strength` in
    [0, 1], the place in that codec's own CRF (or MPEG-2/4 quantiser) range of `codec.RANGES`
    (0: its finest, 1: its coarsest; one knob across codecs whose scales differ), and optionally
    `gop`, `b_frames`, `frames`, `motion` (else drawn from the defaults by `rng`). The speed preset
    and the motion seed come from `rng`.
    """
    check_keys("codec step", params, ("codec", "strength"))
    name = params["codec"]
    check_choice("codec step: codec", name, list(_codec.CODECS))
    strength = float(params["strength"])
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"codec step: strength must be in [0, 1], got {strength!r}")
    lo, hi = _codec.RANGES["crf"][name]
    crf = int(round(lo + strength * (hi - lo)))
    ranges = pinned(_codec.RANGES, {k: v for k, v in params.items() if k != "strength"})
    ranges.update(rate_control=["crf"], crf={name: [crf, crf]})
    return _codec.apply_codec(img, _codec.sample_codec(rng, ranges))


def isp(img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    """The camera ISP (`ops/isp.py`): any of its drawn keys (`rgb_gain`, `red_gain`, `blue_gain`,
    `shot`, `bayer`, `demosaic`, `jpeg_quality`) declared, the rest from its defaults; the
    colour-matrix mix, read noise (from shot, Brooks' fit) and noise seed from `rng`."""
    return _isp.apply_isp(img, _isp.sample_isp(rng, pinned(_isp.RANGES, params)))


WEB_FORMATS = "jpeg,webp,avif"


def web(img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Web re-encoding (`ops/web.py`): `generations` (1-4) and `min_quality`, the floor of every
    format's quality range (capped at the format's top: a harshness knob for the whole chain),
    optionally `min_scale` (the floor of the per-generation resize) and `formats` (names joined by
    ',', default all three: fixed here, not by what this machine's Pillow has, so that the bytes
    never depend on the machine; AVIF without libavif stops with one line). Each generation's
    format, quality, subsampling, scale and filter are drawn by `rng`."""
    check_keys("web step", params, ("generations", "min_quality"))
    ranges = pinned(_web.RANGES, {"generations": params["generations"]})
    ranges["format"] = str(params.get("formats", WEB_FORMATS)).split(",")
    floor = int(params["min_quality"])
    ranges["quality"] = {fmt: [min(floor, hi), hi] for fmt, (_, hi) in _web.RANGES["quality"].items()}
    if "min_scale" in params:
        ranges["scale"] = [float(params["min_scale"]), max(float(params["min_scale"]), _web.RANGES["scale"][1])]
    return _web.apply_web(img, _web.sample_web(rng, ranges))
