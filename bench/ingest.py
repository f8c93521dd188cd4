"""Ingest throughput on the bundled sample photos: tiles/s for 1 and N worker processes.

    .venv/bin/python bench/ingest.py [--repeat 3] [--workers 1 2]

Prints one row per worker count (best of `--repeat` runs, wall clock, decode → validate → tile →
PNG encode → tar + index), so the rows are comparable side by side.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time

from pipeline.config import IngestConfig
from pipeline.ingest import ingest
from pipeline.params import build


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--crop", type=int, default=400)
    ap.add_argument("--step", type=int, default=200)
    args = ap.parse_args()
    print(f"# ingest bench: sample photos, crop {args.crop} step {args.step}; {platform.processor() or platform.machine()}")
    print("| workers | photos | tiles | best s | tiles/s |")
    print("|---|---|---|---|---|")
    for workers in args.workers:
        cfg = build(IngestConfig, {"crop": args.crop, "step": args.step, "workers": workers}, "ingest")
        best, stats = float("inf"), None
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                stats = ingest(["sample"], d, cfg, seed=0, scale=4)
                best = min(best, time.perf_counter() - t0)
        print(f"| {workers} | {stats.accepted} | {stats.tiles} | {best:.2f} | {stats.tiles / best:.1f} |")


if __name__ == "__main__":
    main()
