"""Per-op time of the domain ops (pipeline/degrade/ops) on one 256 px tile, next to the full
realesrgan-x4plus recipe on the same tile.

    .venv/bin/python bench/domain_ops.py [--draws 12] [--repeat 3]

Tile: scikit-image's astronaut, area-resized to 256 px (offline). Each row draws `--draws` params
from the op's default ranges (seed 0; a row for one codec / demosaic / format narrows the ranges to
it), times `apply_<op>` on each `--repeat` times in this one process (OpenCV on 1 thread, as in a
degrade worker) and keeps each draw's best; the row gives the mean, median and slowest draw over the
draws (mean: what a preset's throughput pays), and the mean PSNR against the tile.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.degrade import DegradeConfig, apply_recipe, sample_recipe  # noqa: E402
from pipeline.degrade.ops import OPS  # noqa: E402
from pipeline.degrade.ops.codec import encoder_name  # noqa: E402
from pipeline.params import build  # noqa: E402

TILE = 256


def tile() -> np.ndarray:
    from skimage import data
    return cv2.resize(data.astronaut(), (TILE, TILE), interpolation=cv2.INTER_AREA)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def time_op(name: str, ranges: dict, img: np.ndarray, draws: int, repeat: int) -> tuple[float, float, float, float]:
    """(mean ms, median ms, slowest ms, mean PSNR dB) of apply over `draws` params from `ranges`."""
    op = OPS[name]
    rng = np.random.default_rng(0)
    best, scores = [], []
    for _ in range(draws):
        params = op.sample(rng, ranges)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            out = op.apply(img, params)
            times.append(time.perf_counter() - start)
        best.append(min(times) * 1e3)
        scores.append(psnr(out, img))
    return statistics.fmean(best), statistics.median(best), max(best), statistics.fmean(scores)


def rows() -> list[tuple[str, str, dict]]:
    """(label, op, ranges) of every row: each op with its defaults, then narrowed to one choice."""
    out = []
    for name, op in OPS.items():
        out.append((f"{name} (default ranges)", name, op.ranges))
    for codec in OPS["codec"].ranges["codec"]:
        try:
            encoder_name(codec)
        except ValueError as e:
            print(f"skipped: {e}")
            continue
        out.append((f"codec {codec}", "codec", {**OPS["codec"].ranges, "codec": [codec]}))
    for method in OPS["isp"].ranges["demosaic"]:
        out.append((f"isp, demosaic {method}", "isp", {**OPS["isp"].ranges, "demosaic": [method]}))
    for fmt in OPS["web"].ranges["format"]:
        out.append((f"web, all {fmt}", "web", {**OPS["web"].ranges, "format": [fmt]}))
    return out


def recipe_ms(img: np.ndarray, draws: int, repeat: int) -> float:
    """Median best-of-`repeat` ms of the realesrgan-x4plus recipe (reference backend, x4) on `img`."""
    settings = build(DegradeConfig, {}, "degrade").settings
    best = []
    for i in range(draws):
        recipe = sample_recipe(settings, 0, f"t{i:06d}", 0, scale=4)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            apply_recipe(img, recipe)
            times.append(time.perf_counter() - start)
        best.append(min(times) * 1e3)
    return statistics.median(best)


def main() -> None:
    ap = argparse.ArgumentParser(prog="bench/domain_ops.py")
    ap.add_argument("--draws", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    hr = tile()
    img = hr.astype(np.float32) / 255
    print(f"{TILE} px tile, {args.draws} draws x best of {args.repeat}, cores {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| op | mean ms | median ms | slowest draw ms | mean PSNR dB |\n|---|---|---|---|---|")
    results = []
    for label, name, ranges in rows():
        mean, med, worst, score = time_op(name, ranges, img, args.draws, args.repeat)
        results.append((mean, label))
        print(f"| {label} | {mean:.1f} | {med:.1f} | {worst:.1f} | {score:.1f} |", flush=True)
    recipe = recipe_ms(hr, args.draws, args.repeat)
    print(f"| realesrgan-x4plus recipe, reference (for scale) | – | {recipe:.1f} | – | – |")
    slowest = max(r for r in results if "default" in r[1])
    print(f"slowest op with its default ranges: {slowest[1]} ({slowest[0]:.1f} ms mean)")


if __name__ == "__main__":
    main()
