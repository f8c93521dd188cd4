"""Incremental degrade: the stage after ~4 % more HR tiles, against the stage from scratch on the same tiles.

    .venv/bin/python bench/incremental.py [--sizes 1536 3072] [--added 0.04] [--workers 0]

For each size N: an HR shard set of N tiles of 256 px (cut from scikit-image's bundled photos, keys
hashed so new tiles fall between old ones, as new photos' keys do), `python -m stages.degrade
--from-scratch` to make the previous LR set, then N x `added` more tiles, then two timed runs of the
whole stage in a fresh process (imports, plan, workers, shards, index, report), one variant per tile:
  incremental    `python -m stages.degrade` with the previous set in place at paths.lr
  from scratch   `python -m stages.degrade --from-scratch` on the same tiles
and a check that both wrote the same files, byte for byte. `histograms s`: report.md's
recipe_histograms.png drawn again for the final set in this process, a part of both runs that does not
shrink with the work (every added sample changes it). Figures go in bench/README.md.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from degrade import make_tiles  # noqa: E402

from pipeline.io.shards import Sample, json_bytes, write_shard_set  # noqa: E402


def write_hr(path: Path, tiles: list[bytes]) -> None:
    """HR shard set of `tiles`; tile i's key is a hash of i, so added tiles sort among the others."""
    shutil.rmtree(path, ignore_errors=True)
    samples = []
    for i, png in enumerate(tiles):
        key = "p" + hashlib.sha256(str(i).encode()).hexdigest()[:12]
        cols = {"height": 256, "width": 256, "split": "val" if i % 10 == 0 else "train"}
        samples.append(Sample(key, {"hr.png": png, "json": json_bytes(cols)}, cols))
    samples.sort(key=lambda s: s.key)
    write_shard_set(path, samples, set_name="hr")


def stage(params: Path, *flags: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "stages.degrade", "--params", str(params), *flags], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        raise SystemExit(f"stages.degrade {' '.join(flags)} failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - start, done.stdout.strip().splitlines()[-1]


def tree(set_dir: Path) -> dict[str, str]:
    return {p.relative_to(set_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(set_dir.rglob("*")) if p.is_file()}


def histogram_seconds(set_dir: Path, scratch: Path) -> float:
    import pandas as pd

    from pipeline.degrade.report import plot_histograms
    index = pd.read_parquet(set_dir / "index.parquet")
    start = time.perf_counter()
    plot_histograms(index, scratch / "histograms.png")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1536, 3072])
    ap.add_argument("--added", type=float, default=0.04)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print("| HR tiles before → after | LR tiles computed | from scratch s | incremental s | ratio | same bytes "
          "| histograms s |")
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        more = n + round(n * args.added)
        tiles = make_tiles(more)
        with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
            tmp = Path(tmp)
            params = tmp / "params.yaml"
            params.write_text(yaml.safe_dump({
                "seed": 0, "scale": 4, "paths": {"hr": str(tmp / "hr"), "lr": str(tmp / "lr"), "photos": str(tmp / "photos")},
                "degrade": {"preset": "realesrgan-x4plus", "variants": 1, "backend": "reference",
                            "workers": args.workers}}))
            (tmp / "photos").mkdir()
            write_hr(tmp / "hr", tiles[:n])
            stage(params, "--from-scratch")
            write_hr(tmp / "hr", tiles)
            t_inc, line = stage(params)
            kept = tree(tmp / "lr")
            t_full, _ = stage(params, "--from-scratch")
            same = kept == tree(tmp / "lr")
            t_hist = histogram_seconds(tmp / "lr", tmp)
            print(f"| {n} → {more} | {more - n} | {t_full:.1f} | {t_inc:.1f} | {t_inc / t_full:.2f} | {same} "
                  f"| {t_hist:.1f} |", flush=True)
            print(f"  incremental: {line}", file=sys.stderr)


if __name__ == "__main__":
    main()
