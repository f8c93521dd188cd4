"""Scale figures: the data stages and DVC on a synthetic corpus of up to 100,000+ LR/HR patch pairs.

    .venv/bin/python bench/scale.py [--sizes 12500 25000 100000] [--workers 2] [--keep DIR]

For each size N, a throwaway DVC project of this repo's code (git + dvc init) whose dvc.yaml holds
the repo's own `degrade` and `shard` stages (deps, params, outs as in dvc.yaml; the cmd wrapped by a
few lines that record the stage process's peak RSS and, polled every 0.2 s, its largest worker's), fed by:
  data/hr   N synthetic 32 px HR tiles (a gradient, a sinusoid and noise per tile, so PNGs are not
            trivial), written as one HR shard set through `write_shard_set`, `dvc add`ed; 8 tiles a
            "photo", every 10th photo in val;
  degrade   a small preset (blur 3-7 px, resize to 8 px, JPEG; `scale-bench.yaml` below: the x4plus
            preset's 21 px kernels do not fit an 8 px LR tile) on the reference backend;
  shard     one 32/8 px patch per pair (the whole tile).
Measured: `dvc repro` (both stages run), then a fully cached `dvc repro` and `dvc status` (best of 3,
fresh processes), peak RSS of each stage (its own process; its largest worker), and the bytes of
every index parquet. Figures go in bench/README.md ("Scale").
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.io.images import encode_png  # noqa: E402
from pipeline.io.shards import Sample, json_bytes, write_shard_set  # noqa: E402

DVC = Path(sys.executable).with_name("dvc")
TILE, PER_PHOTO = 32, 8
BLUR = {"name": "blur1", "op": "blur", "prob": 1.0, "kernel_probs": {"iso": 0.7, "aniso": 0.3},
        "size_range": [3, 7], "sigma_range": [0.2, 1.5], "beta_gaussian_range": [0.5, 4.0],
        "beta_plateau_range": [1.0, 2.0], "sinc_prob": 0.0, "sinc_omega_range": [1.05, 3.14],
        "sinc_omega_range_large": [0.63, 3.14], "sinc_large_from": 13}
PRESET = {"name": "scale-bench", "scale": 4, "steps": [
    BLUR, {"name": "resize_final", "op": "resize_lr", "interps": ["area", "bilinear", "bicubic"]},
    {"name": "jpeg_final", "op": "jpeg", "quality_range": [30, 95]}]}
# runs a stage module in this process and records its peak RSS and its children's (the workers')
RSS = """import json, resource, runpy, sys, threading, time
import psutil

def poll(peak, stop):  # the largest RSS any worker process reaches (RUSAGE_CHILDREN will not do: on Linux
    me = psutil.Process()  # a child's maxrss starts at its parent's RSS when it forks, before its exec)
    while not stop.wait(0.2):
        for child in me.children(recursive=True):
            try:
                peak[0] = max(peak[0], child.memory_info().rss)
            except psutil.Error:
                pass

if __name__ == "__main__":  # not again in the stage's spawned workers, which import this file as their main
    module, out = sys.argv[1], sys.argv[2]
    sys.argv = [module]
    peak, stop = [0], threading.Event()
    threading.Thread(target=poll, args=(peak, stop), daemon=True).start()
    start = time.perf_counter()
    try:
        runpy.run_module(module, run_name="__main__")
    except SystemExit as err:
        if err.code:
            raise
    finally:
        stop.set()
        json.dump({"self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "workers_mb": peak[0] / 2**20,
                   "seconds": time.perf_counter() - start}, open(out, "w"))
"""


def tiles(n: int, seed: int = 0):
    """`n` structured random 32 px RGB tiles (uint8), generated in blocks."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[0:TILE, 0:TILE].astype(np.float32) / TILE)[:, None, :, :, None]  # (1, H, W, 1)
    for start in range(0, n, 1024):
        m = min(1024, n - start)
        a, b, f, p = (rng.random((4, m, 1, 1, 3), dtype=np.float32))
        img = 0.5 * (a * yy + (1 - a) * xx)
        img += 0.3 * np.sin(2 * np.pi * (1 + 4 * f) * (yy + b * xx) + 6 * p)
        img += 0.1 * rng.standard_normal((m, TILE, TILE, 3), dtype=np.float32)
        yield from (np.clip(img * 255 + 64, 0, 255).astype(np.uint8))


def write_hr(path: Path, n: int) -> None:
    """The HR shard set: ingest's columns (source, source_sha256, scale, tile_x/y, size, split)."""
    def samples():
        for i, tile in enumerate(tiles(n)):
            photo = i // PER_PHOTO
            cols = {"source": f"synthetic/{photo:06d}", "source_sha256": f"{photo:064x}", "scale": 1.0,
                    "tile_x": 0, "tile_y": TILE * (i % PER_PHOTO), "height": TILE, "width": TILE,
                    "split": "val" if photo % 10 == 0 else "train"}
            yield Sample(f"p{i:07d}", {"hr.png": encode_png(tile), "json": json_bytes(cols)}, cols)
    write_shard_set(path, samples(), set_name="hr")


def project(root: Path, workers: int) -> None:
    """This repo's code, its degrade and shard stages (cmd wrapped by rss.py), bench params."""
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".dvcignore", root / ".dvcignore")
    (root / "data" / "real").mkdir(parents=True)
    (root / "presets").mkdir()
    (root / "data" / "real" / "README").write_text("no real pairs in this benchmark\n")
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("degrade", "shard"):
        stages[name]["cmd"] = f"python rss.py stages.{name} rss-{name}.json"
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {k: stages[k] for k in ("degrade", "shard")}},
                                                  sort_keys=False))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["degrade"] = {**{k: v for k, v in params["degrade"].items() if not isinstance(v, dict)},
                         "preset": "presets/scale-bench.yaml", "backend": "reference", "workers": workers, "examples": 4}
    params["shard"].update(patch_size=TILE, patches_per_pair=1, val_patches_per_pair=1, workers=workers)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "presets" / "scale-bench.yaml").write_text(yaml.safe_dump(PRESET, sort_keys=False))
    (root / "rss.py").write_text(RSS)
    (root / ".gitignore").write_text("rss-*.json\n")


def run(root: Path, *args: str) -> float:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(root),
           "PATH": f"{DVC.parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    done = subprocess.run(list(args), cwd=root, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed in {root}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - start


def one_size(root: Path, n: int, workers: int) -> dict:
    project(root, workers)
    t = time.perf_counter()
    write_hr(root / "data" / "hr", n)
    made = time.perf_counter() - t
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "b@x"], ["git", "config", "user.name", "b"],
                [str(DVC), "init", "-q"], [str(DVC), "add", "-q", "data/hr"]):
        run(root, *cmd)
    repro = run(root, str(DVC), "repro", "-q")
    cached = [run(root, str(DVC), "repro", "-q") for _ in range(3)]
    status = [run(root, str(DVC), "status", "-q") for _ in range(3)]
    rss = {s: json.loads((root / f"rss-{s}.json").read_text()) for s in ("degrade", "shard")}
    parquet = {p.relative_to(root / "data").as_posix(): p.stat().st_size for p in sorted((root / "data").rglob("*.parquet"))}
    lr = len(__import__("pandas").read_parquet(root / "data" / "lr" / "index.parquet", columns=["key"]))
    pairs = sum(len(__import__("pandas").read_parquet(root / "data" / "pairs" / s / "index.parquet", columns=["key"]))
                for s in ("train", "val"))
    return {"n": n, "lr": lr, "pairs": pairs, "make_hr_s": made, "repro_s": repro, "cached_repro_s": cached,
            "status_s": status, "rss": rss, "parquet": parquet}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[12_500, 25_000, 100_000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="keep the projects under this folder (default: a temp folder, removed)")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    base = args.keep or Path(tempfile.mkdtemp(prefix="scale-"))
    try:
        for n in args.sizes:
            r = one_size(base / f"n{n}", n, args.workers)
            print(json.dumps(r), flush=True)
            d, s = r["rss"]["degrade"], r["rss"]["shard"]
            print(f"| {r['n']:,} | {r['lr']:,} | {r['pairs']:,} | {r['repro_s']:.0f} "
                  f"(degrade {d['seconds']:.0f}, shard {s['seconds']:.0f}) | {min(r['cached_repro_s']):.2f} | "
                  f"{min(r['status_s']):.2f} | {d['self_mb']:.0f} / {d['workers_mb']:.0f} | "
                  f"{s['self_mb']:.0f} / {s['workers_mb']:.0f} | "
                  + " / ".join(f"{k} {v / 1e6:.2f}" for k, v in r["parquet"].items()) + " |", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
