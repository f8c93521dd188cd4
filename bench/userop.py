"""What a user op (`module:function` preset step) costs on the reference backend.

    .venv/bin/python bench/userop.py [--tiles 48] [--reps 3]

The same recipes twice: realesrgan-x4plus with a film-grain user op after noise2 (`grain` below:
a standard-normal field of the image's shape, scaled, added, clipped), once applied and once with the
step marked not applied, so every other step is identical. 256 px random HR tiles, one process,
OpenCV on one thread, best of `--reps` (alternating). A user op runs on the reference backend only:
a preset with one makes `backend: auto` pick it, as for bsrgan.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.degrade import preset_settings, sample_recipe  # noqa: E402
from pipeline.degrade.fast import apply_recipe  # noqa: E402
from pipeline.degrade.geometry import plan_shapes  # noqa: E402
from pipeline.degrade.preset import parse_preset  # noqa: E402


def grain(img: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(params["strength"]), 0, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    data = preset_settings("realesrgan-x4plus").to_data()
    at = [s["name"] for s in data["steps"]].index("noise2")
    data["steps"].insert(at + 1, {"name": "grain", "op": "__main__:grain",
                                  "params": {"strength": {"uniform": [0.01, 0.1]}}})
    preset = parse_preset(data)
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(args.tiles)]
    on = [sample_recipe(preset, 0, f"t{i}", 0) for i in range(args.tiles)]
    off = [dataclasses.replace(r, steps=tuple(dataclasses.replace(s, applied=False) if s.name == "grain" else s
                                              for s in r.steps)) for r in on]
    best = {"applied": float("inf"), "not applied": float("inf")}
    for _ in range(args.reps):
        for name, recipes in (("not applied", off), ("applied", on)):
            start = time.perf_counter()
            for hr, r in zip(tiles, recipes):
                apply_recipe(hr, r)
            best[name] = min(best[name], (time.perf_counter() - start) / args.tiles)
    for name, sec in best.items():
        print(f"grain {name:12s} {1000 * sec:6.2f} ms/tile  {1 / sec:6.1f} tiles/s")
    print(f"difference: {1000 * (best['applied'] - best['not applied']):+.2f} ms/tile")
    # the op alone, on images of the shape each recipe hands it (the difference above is within noise
    # on a shared box)
    shapes = [plan_shapes(r, (256, 256))[[s.name for s in r.steps].index("grain")] for r in on]
    imgs = [rng.random((h, w, 3), dtype=np.float32) for h, w in shapes]
    alone = float("inf")
    for _ in range(args.reps):
        start = time.perf_counter()
        for img, r in zip(imgs, on):
            grain(img, r.step("grain").params, np.random.default_rng(r.step("grain").seed))
        alone = min(alone, (time.perf_counter() - start) / args.tiles)
    print(f"the op alone: {1000 * alone:.3f} ms/tile on its input (mean {np.mean([h * w for h, w in shapes]):.0f} px)")


if __name__ == "__main__":
    main()
