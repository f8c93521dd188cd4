"""What a user op (`module:function` preset step) costs on the reference backend, and between DALI
segment graphs (`--dali`).

    .venv/bin/python bench/userop.py [--tiles 48] [--reps 3]
    .venv/bin/python bench/userop.py --dali [--tiles 64] [--reps 3] [--threads 2]

The same recipes twice: realesrgan-x4plus with a film-grain user op after noise2 (`grain` below:
a standard-normal field of the image's shape, scaled, added, clipped), once applied and once with the
step marked not applied, so every other step is identical. 256 px random HR tiles, one process,
OpenCV on one thread, best of `--reps` (alternating).

`--dali`: DALI in CPU mode (`device_id=None`; no GPU here), batches of 32, `--threads` threads, the
graph run alone (`run_prepared` on inputs prepared beforehand). The same recipes three ways: without
the user op (one whole graph), with a no-op user op after jpeg1 (`keep`: the graph cut into two
segment graphs, the float image handed out and back in, nothing computed), and with the grain op
there. GPU-side costs (host↔device copies at each cut) are not measured by this.
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


def keep(img: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    return img


def with_op(op: str, after: str) -> object:
    data = preset_settings("realesrgan-x4plus").to_data()
    at = [s["name"] for s in data["steps"]].index(after)
    data["steps"].insert(at + 1, {"name": "grain", "op": f"__main__:{op}",
                                  "params": {"strength": {"uniform": [0.01, 0.1]}}})
    return parse_preset(data)


def bench_dali(args: argparse.Namespace) -> None:
    """samples/s of DALI CPU-mode graphs: whole, cut at a no-op user op, cut at the grain op."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.degrade.dali_backend import DaliDegrader
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(args.tiles)]
    cut = {op: [sample_recipe(with_op(op, "jpeg1"), 0, f"t{i}", 0) for i in range(args.tiles)] for op in ("keep", "grain")}
    whole = [dataclasses.replace(r, steps=tuple(s for s in r.steps if s.name != "grain")) for r in cut["keep"]]
    degrader = DaliDegrader(32, "cpu", args.threads)
    cases = {"whole graph (no user op)": whole, "cut at a no-op user op": cut["keep"], "cut at the grain op": cut["grain"]}
    with ThreadPoolExecutor(args.threads) as pool:
        inputs = {name: [degrader.prepare(tiles[b:b + 32], rs[b:b + 32], pool) for b in range(0, len(rs), 32)]
                  for name, rs in cases.items()}
        for batches in inputs.values():  # build every graph before timing
            degrader.run_prepared(batches[0], pool)
        best = dict.fromkeys(cases, float("inf"))
        for _ in range(args.reps):
            for name, batches in inputs.items():
                start = time.perf_counter()
                for batch in batches:
                    degrader.run_prepared(batch, pool)
                best[name] = min(best[name], time.perf_counter() - start)
    base = best["whole graph (no user op)"]
    for name, sec in best.items():
        print(f"{name:28s} {args.tiles / sec:6.1f} samples/s  {1000 * sec / args.tiles:6.2f} ms/sample"
              f"  ({100 * (sec / base - 1):+.1f} %)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dali", action="store_true", help="DALI CPU-mode segment graphs instead")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if args.dali:
        bench_dali(args)
        return
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
