"""Checkpoint selection on held-out real LR, as GAN practitioners pick a checkpoint by FID on held-out
data: a GAN's last step is not its best (the adversarial game drifts), and a generator can end up
further from the real LR than no generator at all.

- `split_band`: a band along one edge of every image (the edge drawn per image from the seed, its
  folder's role and the image's key; `holdout` of that side, on the 8 px LR grid) is held out of
  training: bands of the real LR (the target) and of the HR (the inputs G is scored on); training
  crops come from the rest alone. Every scene thus appears on both sides, so the score follows the
  degradation, not which scenes were held out (whole held-out files did: one mostly black HR
  against a street scene decided the pick);
- `Selector.score`: a candidate G, written as a degrader file, degrades the held-out HR through the
  very preset the run writes (`op.learned_preset`: resize_lr, the `learned` step with α drawn from
  `strength_range`, the codec), and the score is `pipeline.calibrate`'s fingerprint distance of
  that LR to the held-out real LR (lower is closer);
- the loop (`train.py`) scores step 0 — G is the identity there, so that point is "resize + codec,
  no G" — and every `eval_every` steps and the last, and keeps the best step's weights (the
  earliest on a tie) as OUT/degrader.pth. When no step beats step 0, the degrader is the identity G
  and the preset is resize + codec in effect: never further than that baseline on the held-out set.
Scoring uses at most EVAL_IMAGES bands of each folder, as central crops of at most
EVAL_SIDE LR px, so its cost does not grow with the user's photos.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.seeding import LEARNED, rng_for

EVAL_IMAGES = 16   # held-out images per domain that a score looks at (evenly spaced)
EVAL_SIDE = 256    # LR px: side of the central crop of a held-out band
EDGES = ("top", "bottom", "left", "right")
GRID = 8           # LR px: band boundaries on the JPEG grid
HOLDOUT_SPLIT = "edge band per image"  # in the run identity: a state from the old whole-file split is not resumed


def band_edge(seed: int, role: str, key: str) -> str:
    """The edge whose band is held out of image `key`, drawn from `seed`, the folder's `role` ("hr",
    "real_lr"; not its path, so a moved folder splits the same) and the key."""
    return EDGES[int(rng_for(LEARNED, seed, f"holdout/{role}/{key}").integers(len(EDGES)))]


def split_band(img: np.ndarray, fraction: float, edge: str, align: int, min_rest: int,
               where: str) -> tuple[np.ndarray, np.ndarray]:
    """(rest, band): the band along `edge` of about `fraction` of that side (at least `align` px), its
    boundary on the `align` grid, so the rest of a top/left band starts on the grid (a JPEG's 8 px
    phase kept in the training crops) and a bottom/right band starts on it.
    Raises ValueError naming `where` when the rest is under `min_rest` px on a side."""
    axis = 0 if edge in ("top", "bottom") else 1
    side = img.shape[axis]
    n = max(align, int(round(fraction * side / align)) * align)
    cut = n if edge in ("top", "left") else max(0, side - n) // align * align
    rest_side = side - cut if edge in ("top", "left") else cut
    if min(rest_side, img.shape[1 - axis]) < min_rest:
        raise ValueError(f"{where} is {img.shape[1]}x{img.shape[0]} px; --holdout {fraction} holds out a band "
                         f"of {side - rest_side} px at the {edge} and leaves {rest_side} px, under the "
                         f"{min_rest} px a training crop needs: use larger images, a smaller --crop or --holdout 0")
    first, second = (img[:cut], img[cut:]) if axis == 0 else (img[:, :cut], img[:, cut:])
    band, rest = (first, second) if edge in ("top", "left") else (second, first)
    return np.ascontiguousarray(rest), np.ascontiguousarray(band)


def holdout_bands(keys: list[str], images: list[np.ndarray], fraction: float, seed: int, role: str,
                  align: int, min_rest: int, where: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(rests, bands) of every image (`split_band`, the edge from `band_edge`); with fraction 0 the
    images whole and no bands."""
    if fraction <= 0:
        return list(images), []
    pairs = [split_band(img, fraction, band_edge(seed, role, k), align, min_rest, f"{where}: {k}")
             for k, img in zip(keys, images)]
    return [r for r, _ in pairs], [b for _, b in pairs]


def central(img: np.ndarray, side: int, align: int) -> np.ndarray:
    """The central crop of at most side×side px, its corner on the `align` grid."""
    h, w = img.shape[:2]
    y, x = max(0, (h - side) // 2) // align * align, max(0, (w - side) // 2) // align * align
    return np.ascontiguousarray(img[y:y + side, x:x + side])


def spaced(items: list, n: int) -> list:
    """At most `n` of `items`, evenly spaced in their order."""
    if len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


class Selector:
    """Scores candidate degraders against the held-out real LR (module docstring)."""

    def __init__(self, cfg, held_keys: list[str], held_hr: list[np.ndarray], held_real: list[np.ndarray]):
        from pipeline.calibrate import fingerprint

        self.cfg = cfg
        pairs = spaced(list(zip(held_keys, held_hr)), EVAL_IMAGES)
        self.hr = [(k, central(img, EVAL_SIDE * cfg.scale, cfg.scale)) for k, img in pairs]
        self.target = fingerprint([central(img, EVAL_SIDE, 8) for img in spaced(held_real, EVAL_IMAGES)])

    def score(self, degrader: Path) -> float:
        """Fingerprint distance of the held-out HR's LR by the preset around `degrader` to the held-out
        real LR; inf when nothing is comparable."""
        from pipeline.calibrate import distance, fingerprint
        from pipeline.degrade import apply_recipe, sample_recipe
        from pipeline.degrade.preset import parse_preset

        from .op import learned_preset

        cfg = self.cfg
        preset = parse_preset(learned_preset(str(degrader), cfg.scale, cfg.interp, tuple(cfg.strength_range),
                                             jpeg_quality=cfg.jpeg_quality))
        lrs = [apply_recipe(hr, sample_recipe(preset, cfg.seed, key, 0)) for key, hr in self.hr]
        d = distance(fingerprint(lrs), self.target)
        return d if math.isfinite(d) else math.inf


def best_point(curve: list[list[float]]) -> list[float]:
    """The [step, distance] of `curve` with the lowest distance, the earliest on a tie."""
    return min(curve, key=lambda p: (p[1], p[0]))


def curve_lines(curve: list[list[float]], best_step: int) -> list[str]:
    """The report's Markdown table of the selection curve, step 0 and the chosen step marked."""
    lines = ["| step | fingerprint distance to held-out real LR | |", "|---|---|---|"]
    for step, d in curve:
        note = ["G = identity: resize + codec, no G"] if step == 0 else []
        note += ["**selected**"] if int(step) == best_step else []
        lines.append(f"| {int(step)} | {d:.4f} | {'; '.join(note)} |")
    return lines
