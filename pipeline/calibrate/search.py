"""Fit a preset to real LR: a coordinate search over a few interpretable knobs, so that LR
synthesised from the user's own HR crops has the real LR's fingerprint.

    fit = search(preset, hr_crops, real_fp, budget=40, seed=0)
    fit.preset                 # the calibrated Preset; fit.knobs, fit.history, fit.distance

Knobs (0 everywhere is the preset itself), applied to every step of the op they name, in groups too:
- `blur`: log2 factor on the blur steps' `sigma_range` and kernel sizes (odd, at most 21), and the
  inverse factor on every sinc cutoff ω (+1: twice the σ, half the cutoff);
- `noise`: log2 factor on the noise steps' `sigma_range` and `poisson_scale_range`;
- `jpeg`: quality points added to the JPEG steps' `quality_range` (kept in [1, 100]);
- `resize`: exponent 2^k on the resize steps' `scale_range` bounds (+1: down to lo², up to hi²;
  negative: milder resizes);
- `sinc`: added to the sinc steps' `prob` (kept in [0, 1]);
- `order`: added to the probability of a choice group's first order (the others scaled to fill
  the rest): realesrgan's `resize_sinc_jpeg`, where the JPEG comes last and its 8x8 grid survives.
A knob whose op the preset lacks is left out. The search is deterministic: the same crops, the same
recipe keys and seed at every point (common random numbers), the knobs tried in a fixed order with
fixed steps, halved when a sweep finds nothing better, until `budget` fingerprints were measured.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.degrade import TooSmallError, apply_recipe, sample_recipe
from pipeline.degrade.kernels import MAX_SIZE
from pipeline.degrade.preset import Preset, parse_preset

from .fingerprint import distance, fingerprint


@dataclass(frozen=True)
class Knob:
    name: str
    ops: tuple[str, ...]   # the step ops it changes
    lo: float
    hi: float
    step: float            # the first step of the search


KNOBS = (
    Knob("blur", ("blur", "sinc"), -3.0, 2.0, 1.0),
    Knob("noise", ("noise",), -5.0, 2.0, 1.0),
    Knob("jpeg", ("jpeg",), -60.0, 60.0, 20.0),
    Knob("resize", ("resize",), -2.0, 1.0, 1.0),
    Knob("sinc", ("sinc",), -1.0, 1.0, 0.4),
    Knob("order", ("choice",), -1.0, 1.0, 0.5),
)


@dataclass
class Fit:
    preset: Preset
    knobs: dict[str, float]
    distance: float
    fingerprint: dict[str, float]
    history: list[tuple[dict[str, float], float]] = field(default_factory=list)  # every point measured, in order


def _scaled(pair: Sequence[float], factor: float, lo: float = 0.0) -> list[float]:
    return [max(lo, float(v) * factor) for v in pair]


def _tune_step(step: dict[str, Any], knobs: Mapping[str, float]) -> None:
    """Apply the knobs to one step's data (in place)."""
    op = step.get("op")
    if op in ("blur", "sinc") and knobs.get("blur"):
        f = 2.0 ** knobs["blur"]
        step["size_range"] = [min(MAX_SIZE, max(3, int(v * f) // 2 * 2 + 1)) for v in step["size_range"]]
        for key in ("omega_range", "sinc_omega_range", "sinc_omega_range_large"):
            if key in step:
                step[key] = [min(math.pi, v / f) for v in step[key]]
        if op == "blur":
            step["sigma_range"] = _scaled(step["sigma_range"], f, lo=1e-3)
    elif op == "noise" and knobs.get("noise"):
        f = 2.0 ** knobs["noise"]
        step["sigma_range"] = _scaled(step["sigma_range"], f)
        step["poisson_scale_range"] = _scaled(step["poisson_scale_range"], f)
    elif op == "jpeg" and knobs.get("jpeg"):
        step["quality_range"] = [int(min(100, max(1, round(q + knobs["jpeg"])))) for q in step["quality_range"]]
    elif op == "resize" and knobs.get("resize"):
        e = 2.0 ** knobs["resize"]
        lo, hi = step["scale_range"]
        step["scale_range"] = [float(lo) ** e, float(hi) ** e]
    if op == "sinc" and knobs.get("sinc"):
        step["prob"] = float(min(1.0, max(0.0, step["prob"] + knobs["sinc"])))


def _shifted_first(probs: Mapping[str, float], shift: float) -> dict[str, float]:
    """`probs` with `shift` added to the first label's (kept in [0, 1]) and the others scaled to fill the rest."""
    labels = list(probs)
    first = min(1.0, max(0.0, probs[labels[0]] + shift))
    rest = sum(probs[k] for k in labels[1:])
    out = {labels[0]: first}
    for k in labels[1:]:
        out[k] = (1.0 - first) * (probs[k] / rest if rest > 0 else 1.0 / (len(labels) - 1))
    return out


def tuned_preset(preset: Preset, knobs: Mapping[str, float], name: str | None = None) -> Preset:
    """`preset` with `knobs` applied (module docstring), renamed `name` when given; validated again.
    Raises ParamsError when a knob drives a range out of what the step allows."""
    data = preset.to_data()
    for item in data["steps"]:
        for step in item["steps"] if "order" in item else [item]:
            _tune_step(step, knobs)
        if item.get("order") == "choice" and knobs.get("order"):
            item["order_probs"] = _shifted_first(item["order_probs"], knobs["order"])
    if name:
        data["name"] = name
    return parse_preset(data)


def active_knobs(preset: Preset) -> tuple[Knob, ...]:
    """The knobs whose ops the preset has."""
    ops = {s.op for item in preset.items for s in getattr(item, "steps", (item,))}
    ops |= {"choice" for item in preset.items if getattr(item, "order", None) == "choice"}
    return tuple(k for k in KNOBS if ops & set(k.ops))


def synthesize(preset: Preset, hr_crops: Sequence[np.ndarray], *, seed: int, variants: int = 1) -> list[np.ndarray]:
    """LR of every crop × variant under `preset`, reference backend; crop k's recipes are keyed
    `crop<k>`, so two presets draw from the same uniforms. A sample whose recipe shrinks the crop
    below its kernels is left out, as `degrade` skips it."""
    out = []
    for k, hr in enumerate(hr_crops):
        for v in range(variants):
            try:
                out.append(apply_recipe(hr, sample_recipe(preset, seed, f"crop{k}", v)))
            except TooSmallError:
                continue
    return out


def search(preset: Preset, hr_crops: Sequence[np.ndarray], real_fp: Mapping[str, float], *, budget: int = 40,
           seed: int = 0, variants: int = 1, progress: Callable[[str], None] | None = None) -> Fit:
    """Coordinate search of the active knobs (module docstring) minimising `distance` between the
    fingerprint of LR synthesised from `hr_crops` and `real_fp`, within `budget` measurements
    (the preset itself is the first). Raises ValueError on a budget under 1 or no crops."""
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    if not hr_crops:
        raise ValueError("search: no HR crops")
    knobs = active_knobs(preset)
    seen: dict[tuple, tuple[float, dict]] = {}
    history: list[tuple[dict[str, float], float]] = []

    def measure(x: dict[str, float]) -> float:
        key = tuple(round(x[k.name], 6) for k in knobs)
        if key not in seen:
            lrs = synthesize(tuned_preset(preset, x), hr_crops, seed=seed, variants=variants)
            fp = fingerprint(lrs) if len(lrs) * 2 >= len(hr_crops) * variants else {}
            seen[key] = (distance(fp, real_fp) if fp else math.inf, fp)  # most samples too small: out
            history.append((dict(x), seen[key][0]))
            if progress:
                progress(f"calibrate: {len(history)}/{budget} " + _knob_text(x) + f" -> distance {seen[key][0]:.3f}")
        return seen[key][0]

    best = {k.name: 0.0 for k in knobs}
    best_d = measure(best)
    steps = {k.name: k.step for k in knobs}
    while len(history) < budget and any(steps[k.name] >= k.step / 8 for k in knobs):
        improved = False
        for k in knobs:
            for sign in (1.0, -1.0):
                if len(history) >= budget:
                    break
                x = {**best, k.name: min(k.hi, max(k.lo, best[k.name] + sign * steps[k.name]))}
                if x[k.name] == best[k.name]:
                    continue
                d = measure(x)
                if d < best_d:
                    best, best_d, improved = x, d, True
                    break
        if not improved:
            steps = {n: s / 2 for n, s in steps.items()}
    key = tuple(round(best[k.name], 6) for k in knobs)
    return Fit(tuned_preset(preset, best), best, best_d, seen[key][1], history)


def _knob_text(x: Mapping[str, float]) -> str:
    return " ".join(f"{n}={v:+.3g}" for n, v in x.items())


def knob_effects(knobs: Mapping[str, float]) -> list[str]:
    """The knobs in words, for the report."""
    words = {"blur": lambda v: f"blur σ x{2 ** v:.3g}", "noise": lambda v: f"noise level x{2 ** v:.3g}",
             "jpeg": lambda v: f"JPEG quality {v:+.0f}", "resize": lambda v: f"resize bounds ^{2 ** v:.3g}",
             "sinc": lambda v: f"sinc probability {v:+.2f}", "order": lambda v: f"first order's probability {v:+.2f}"}
    return [f"`{n}` = {v:+.3g}: {words[n](v)}" for n, v in knobs.items() if not math.isnan(v)]
