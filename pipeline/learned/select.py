"""Checkpoint selection on held-out real LR, as GAN practitioners pick a checkpoint by FID on held-out
data: a GAN's last step is not its best (the adversarial game drifts), and a generator can end up
further from the real LR than no generator at all.

- `holdout_split`: a seeded share (`holdout`, at least one file) of each input folder is held out of
  training: real LR files (the target) and HR files (the inputs G is scored on);
- `Selector.score`: a candidate G, written as a degrader file, degrades the held-out HR through the
  very preset the run writes (`op.learned_preset`: resize_lr, the `learned` step with α drawn from
  `strength_range`, the codec), and the score is `pipeline.calibrate`'s fingerprint distance of
  that LR to the held-out real LR (lower is closer);
- the loop (`train.py`) scores step 0 — G is the identity there, so that point is "resize + codec,
  no G" — and every `eval_every` steps and the last, and keeps the best step's weights (the
  earliest on a tie) as OUT/degrader.pth. When no step beats step 0, the degrader is the identity G
  and the preset is resize + codec in effect: never further than that baseline on the held-out set.
Scoring uses at most EVAL_IMAGES images of each held-out folder, the HR as central crops of
EVAL_SIDE LR px, so its cost does not grow with the user's photos.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.seeding import LEARNED, rng_for

EVAL_IMAGES = 16   # held-out images per domain that a score looks at (evenly spaced)
EVAL_SIDE = 256    # LR px: side of the central crop of a held-out image


def holdout_split(keys: list[str], fraction: float, seed: int, role: str, where: str) -> tuple[list[int], list[int]]:
    """(train, held) indices into `keys`: round(fraction·n) files, at least one, drawn from `seed` and
    the folder's `role` ("hr", "real_lr"; not its path, so a moved folder splits the same); fraction 0
    holds out nothing.
    Raises ValueError naming `where` when holding out would leave no file to train on."""
    if fraction <= 0:
        return list(range(len(keys))), []
    n_held = max(1, round(fraction * len(keys)))
    if n_held >= len(keys):
        raise ValueError(f"{where}: {len(keys)} image(s); selection holds out {n_held} (--holdout {fraction}) "
                         "and needs at least one more to train on: add images or pass --holdout 0")
    order = rng_for(LEARNED, seed, f"holdout/{role}").permutation(len(keys))
    held = sorted(int(i) for i in order[:n_held])
    return sorted(set(range(len(keys))) - set(held)), held


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
