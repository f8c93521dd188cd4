"""Throughput of the degradation engine: HR 256 px tiles → x4 LR with the full realesrgan-x4plus recipe.

    .venv/bin/python bench/degrade.py [--tiles 512] [--workers 2] [--variants 4] [--no-dali]
    python bench/degrade.py --gpu [--tiles 4096] [--workers 16]       # on a GPU machine
    .venv/bin/python bench/degrade.py --presets video,camera,web [--tiles 128]   # presets next to x4plus

Rows (same tiles, same recipes, each end to end: PNG decode → USM → recipe → PNG encode):
  reference, 1 process     apply_recipe in this process, OpenCV on one thread (keeping freed
                           memory, as the stage's processes do: pipeline.parallel.keep_freed_memory)
  auto, N workers          degrade_set(backend=auto) on an HR shard set: shard read, N spawned
                           workers, shard + index write (report excluded; pool start-up included),
                           also with the workers on glibc's default malloc, for comparison,
                           and with --variants LR tiles per HR tile (tiles/variants HR tiles, so
                           the same number of LR tiles; the variants share the HR's decode and USM)
  dali cpu                 DaliDegrader(device=cpu), batches of 32, decode/encode in this process
  dali gpu                 the same on the GPU, when CUDA is visible
With --gpu (CPU reference rows use all --workers; DALI rows on the GPU):
  dali gpu graph, batch B  the graph alone: inputs prepared beforehand, feed + run + copy back
  dali inputs, N threads   recipe → graph inputs (kernels, sizes, noise fields) for one batch
  auto (dali-gpu)          degrade_set end to end on a shard set, like the stage, with one graph
                           in this process or one per GPU_CORES_PER_PROCESS cores in spawned ones
and a floor: each op of one typical recipe done once with OpenCV on one tile (indented rows: the
op's parts, or how it was done before, for comparison).
With --presets (a comma-separated list; realesrgan-x4plus always first, same tiles, same run): per
preset the reference row, the auto row, and each step's mean ms over the tiles (reference backend,
one process), the slowest step named.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.degrade import DegradeConfig, Recipe, sample_recipe  # noqa: E402
from pipeline.degrade import fast, spec  # noqa: E402
from pipeline.degrade.kernels import gaussian_kernel, sinc_kernel  # noqa: E402
from pipeline.io.images import decode_png, encode_png  # noqa: E402
from pipeline.io.shards import Sample, write_shard_set  # noqa: E402
from pipeline.parallel import keep_freed_memory  # noqa: E402
from pipeline.params import build  # noqa: E402

TILE = 256
SEED = 0


def make_tiles(n: int) -> list[bytes]:
    """`n` 256 px PNG tiles cut from scikit-image's bundled photos (offline)."""
    import skimage.data
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    tiles = []
    while len(tiles) < n:
        for photo in photos:
            h, w = photo.shape[:2]
            k = len(tiles)
            y = (k * 37) % (h - TILE)
            x = (k * 53) % (w - TILE)
            tiles.append(encode_png(np.ascontiguousarray(photo[y:y + TILE, x:x + TILE, :3])))
            if len(tiles) == n:
                break
    return tiles


def tile_key(i: int) -> str:
    """The key of tile `i`, in every row, so all rows draw the same recipes."""
    return f"t{i:06d}"


def tile_recipes(cfg: DegradeConfig, n: int) -> list[Recipe]:
    settings = cfg.settings
    return [sample_recipe(settings, SEED, tile_key(i), 0, scale=4) for i in range(n)]


def bench_reference(tiles: list[bytes], cfg: DegradeConfig) -> float:
    cv2.setNumThreads(1)
    settings = cfg.settings
    start = time.perf_counter()
    for i, data in enumerate(tiles):
        recipe = sample_recipe(settings, SEED, tile_key(i), 0, scale=4)  # drawing it is part of the work
        encode_png(fast.apply_recipe(decode_png(data), recipe))
    return len(tiles) / (time.perf_counter() - start)


def bench_auto(tiles: list[bytes], workers: int, batch_size: int = 32, backend: str = "auto",
               variants: int = 1, preset: str = "realesrgan-x4plus") -> tuple[float, str]:
    """degrade_set's steps on an HR shard set (plan, pooled jobs, write), timing each result as it
    reaches the writer: prints the start-up (time to the first result) and the steady-state rate.
    Returns (LR tiles/s, backend); `variants` LR tiles per HR tile."""
    from pipeline.degrade import schedule, sources, write
    with tempfile.TemporaryDirectory() as tmp:
        hr = Path(tmp) / "hr"
        write_shard_set(hr, (Sample(tile_key(i), {"hr.png": t}, {"height": TILE, "width": TILE})
                             for i, t in enumerate(tiles)), set_name="hr")
        cfg = build(DegradeConfig, {"backend": backend, "workers": workers, "batch_size": batch_size, "examples": 0,
                                    "variants": variants, "preset": preset}, "degrade")
        before, faults = _children_cpu(), _children_faults()
        start, stamps = time.perf_counter(), []

        def timed(results):
            for res in results:
                stamps.append(time.perf_counter())
                yield res
        ctx, jobs = sources.plan_set(hr, cfg, seed=SEED, scale=4)
        results = timed(schedule.degrade_jobs(ctx, jobs, batch_size=batch_size, workers=workers))
        stats = write.write_set(Path(tmp) / "lr", ctx, cfg, results, len(jobs), start=start, progress=False)
    n = max(stats["samples"], 1)
    worker_ms = (_children_cpu() - before) / n * 1e3
    if worker_ms > 0:
        print(f"auto: {worker_ms:.1f} ms of worker CPU and {(_children_faults() - faults) / n:.0f} "
              f"page faults per tile (worker start-up included)")
    k = len(stamps) // 10  # past the pool's start-up and first batches
    if len(stamps) - k > 1:
        print(f"auto: first result after {stamps[0] - start:.2f} s; steady state (last 90 % of results) "
              f"{(len(stamps) - k - 1) / (stamps[-1] - stamps[k]):.1f} tiles/s")
    return stats["samples"] / stats["seconds"], stats["backend"]


def bench_auto_default_malloc(tiles: list[bytes], workers: int) -> float:
    """`bench_auto` with workers on glibc's default malloc (before `keep_freed_memory`)."""
    os.environ["REALSYNTH_KEEP_FREED_MEMORY"] = "0"  # spawned workers inherit it
    try:
        return bench_auto(tiles, workers)[0]
    finally:
        del os.environ["REALSYNTH_KEEP_FREED_MEMORY"]


def _children_faults() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the pool's workers, once joined)."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_dali(tiles: list[bytes], cfg: DegradeConfig, device: str, threads: int) -> float:
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.degrade.dali_backend import DaliDegrader
    degrader = DaliDegrader(32, device, threads)
    recipes = tile_recipes(cfg, len(tiles))
    degrader.run([decode_png(tiles[0])], recipes[:1])  # warm-up
    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        for b in range(0, len(tiles), 32):
            hrs = [decode_png(t) for t in tiles[b:b + 32]]
            for lr in degrader.run(hrs, recipes[b:b + 32], pool):
                encode_png(lr)
        return len(tiles) / (time.perf_counter() - start)


def bench_dali_gpu_graph(tiles: list[bytes], cfg: DegradeConfig, batch: int, threads: int) -> tuple[float, float]:
    """(tiles/s of the GPU graph alone, tiles/s of input preparation on `threads` threads)."""
    from pipeline.degrade.dali_backend import DaliDegrader
    degrader = DaliDegrader(batch, "gpu", threads)
    hrs = [decode_png(t) for t in tiles]
    recipes = tile_recipes(cfg, len(tiles))
    degrader.run(hrs[:batch], recipes[:batch])  # warm-up: allocations, CUDA kernels
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        inputs = [degrader.prepare(hrs[b:b + batch], recipes[b:b + batch], pool) for b in range(0, len(hrs), batch)]
        prep = len(tiles) / (time.perf_counter() - start)
    start = time.perf_counter()
    for batch_inputs in inputs:
        degrader.run_prepared(batch_inputs)
    return len(tiles) / (time.perf_counter() - start), prep


def gpu_rows(tiles: list[bytes], cfg: DegradeConfig, workers: int) -> None:
    """Print the --gpu table, row by row as each is measured."""
    print("\n| path | tiles/s |\n|---|---|", flush=True)

    def row(name: str, rate: float) -> None:
        print(f"| {name} | {rate:.1f} |", flush=True)

    row("reference, 1 process (256 tiles)", bench_reference(tiles[:256], cfg))
    auto, backend = bench_auto(tiles, workers, 32, "reference")
    row(f"{backend}, {workers} worker processes, shard set in/out", auto)
    for batch in (32, 128, 256):
        graph, prep = bench_dali_gpu_graph(tiles, cfg, batch, workers)
        row(f"dali gpu graph only, batch {batch}", graph)
        row(f"dali inputs prepared, {workers} threads, batch {batch}", prep)
    from pipeline.degrade import schedule
    for per_process, batch in ((workers, 256), (4, 64), (4, 128), (2, 64)):
        schedule.GPU_CORES_PER_PROCESS = per_process
        auto, backend = bench_auto(tiles, workers, batch)
        graphs = max(1, workers // per_process)
        row(f"auto ({backend}), {graphs} graph process(es) x {workers // graphs} threads, batch {batch}, "
            f"shard set in/out", auto)


def op_floor(tile: bytes, reps: int = 20) -> dict[str, float]:
    """Milliseconds per op on one 256 px tile (best of `reps`), OpenCV on one thread."""
    cv2.setNumThreads(1)
    hr = decode_png(tile)
    x = spec.to_float(hr)
    small = cv2.resize(x, (180, 180), interpolation=cv2.INTER_AREA)  # a typical stage-1 size
    lr = cv2.resize(x, (64, 64), interpolation=cv2.INTER_AREA)
    small_q = spec.quantize(small)
    vals = spec.poisson_levels(small_q)
    fast.poisson_counts(small_q, vals, 0)  # builds the per-process tables
    aniso, sinc = gaussian_kernel(13, 2.0, 1.0, 0.5), sinc_kernel(21, 1.5)
    ops = {
        "png decode 256": lambda: decode_png(tile),
        "usm (2x 51 px Gaussian)": lambda: fast.unsharp_mask(x),
        "  usm, float mask, not in place (before)": lambda: spec.unsharp_mask(x),
        "blur1 iso 13 px (separable)": lambda: fast.blur(x, gaussian_kernel(13, 1.5)),
        "blur1 aniso 13 px (filter2D, 2x2 tiles)": lambda: fast.blur(x, aniso),
        "  blur1 aniso 13 px, one cv2.filter2D call (before)": lambda: cv2.filter2D(
            x, -1, aniso, borderType=cv2.BORDER_REFLECT_101),
        "blur1 sinc 21 px (filter2D, 2x2 tiles)": lambda: fast.blur(x, sinc),
        "  blur1 sinc 21 px, one cv2.filter2D call (before)": lambda: cv2.filter2D(
            x, -1, sinc, borderType=cv2.BORDER_REFLECT_101),
        "resize1 256→180 area": lambda: spec.resize(x, (180, 180), "area"),
        "noise1 gaussian 180": lambda: spec.add_gaussian_noise(small, 10.0, False, 1),
        "noise1 poisson 180": lambda: spec.add_poisson_noise(small, 1.0, False, 1, counts=fast.poisson_counts),
        "  poisson counts 180, guide-table inversion": lambda: fast.poisson_counts(small_q, vals, 1),
        "  poisson counts 180, Generator.poisson (before)": lambda: np.random.default_rng(1).poisson(
            small_q * (vals / 255.0)),
        "jpeg1 180": lambda: spec.jpeg(small, 60),
        "stage 2 + final at 64 px (blur, resize, noise, jpeg)": lambda: spec.jpeg(spec.add_gaussian_noise(
            spec.resize(fast.blur(lr, gaussian_kernel(9, 1.0)), (64, 64), "bicubic"), 5.0, False, 2), 60),
        "png encode 64": lambda: encode_png(spec.quantize(lr)),
    }
    out = {}
    for name, fn in ops.items():
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        out[name] = best * 1e3
    return out


def step_times(tiles: list[bytes], cfg: DegradeConfig) -> dict[str, float]:
    """Mean ms per tile of each recipe step (by name; a step not drawn for a tile counts 0 there),
    reference backend in this process, OpenCV on one thread."""
    cv2.setNumThreads(1)
    settings, total = cfg.settings, {}
    for i, data in enumerate(tiles):
        recipe = sample_recipe(settings, SEED, tile_key(i), 0, scale=4)
        hr = spec.crop_to_scale(decode_png(data), recipe.scale)
        img = spec.to_float(hr)
        for step in recipe.steps:
            start = time.perf_counter()
            img = fast.apply_step(img, step, hr.shape[:2], recipe.scale)
            total[step.name] = total.get(step.name, 0.0) + time.perf_counter() - start
    return {name: 1e3 * t / len(tiles) for name, t in total.items()}


def preset_rows(tiles: list[bytes], presets: list[str], workers: int) -> None:
    """The --presets table: tiles/s of each preset next to realesrgan-x4plus, and its slowest step."""
    keep_freed_memory()
    names = ["realesrgan-x4plus"] + [p for p in presets if p != "realesrgan-x4plus"]
    print("\n| preset | reference, 1 process, tiles/s | auto, %d workers, tiles/s | slowest step (mean ms/tile) | "
          "steps, mean ms/tile |\n|---|---|---|---|---|" % workers, flush=True)
    for name in names:
        cfg = build(DegradeConfig, {"preset": name}, "degrade")
        ref = bench_reference(tiles, cfg)
        auto, backend = bench_auto(tiles, workers, preset=name)
        times = step_times(tiles, cfg)
        slowest = max(times, key=times.get)
        steps = ", ".join(f"{k} {v:.1f}" for k, v in times.items())
        print(f"| {name} | {ref:.1f} | {auto:.1f} ({backend}) | {slowest} ({times[slowest]:.1f}) | {steps} |",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-dali", action="store_true")
    ap.add_argument("--variants", type=int, default=4,
                    help="LR variants per HR tile in the last auto row (tiles/variants HR tiles, same LR count)")
    ap.add_argument("--gpu", action="store_true", help="the GPU rows (needs CUDA and DALI)")
    ap.add_argument("--presets", metavar="P,P", help="only the presets table: these presets next to x4plus")
    args = ap.parse_args()
    cfg = build(DegradeConfig, {}, "degrade")
    tiles = make_tiles(args.tiles)
    if args.presets:
        print(f"{args.tiles} HR {TILE} px tiles -> x4 LR, cores {os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.1f}")
        preset_rows(tiles, args.presets.split(","), args.workers)
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")
        return
    print(f"{args.tiles} HR {TILE} px tiles -> x4 LR, preset realesrgan-x4plus, cores {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.gpu:
        gpu_rows(tiles, cfg, args.workers)
        return
    keep_freed_memory()  # this process stands for the stage's, which keeps freed memory
    rows = [("reference, 1 process", bench_reference(tiles, cfg))]
    before = bench_auto_default_malloc(tiles, args.workers)
    auto, backend = bench_auto(tiles, args.workers)
    rows.append((f"auto ({backend}), {args.workers} workers, workers on glibc's default malloc (before)", before))
    rows.append((f"auto ({backend}), {args.workers} workers, shard set in/out", auto))
    if args.variants > 1:  # variants of a tile share its decode and USM
        auto, backend = bench_auto(tiles[:len(tiles) // args.variants], args.workers, variants=args.variants)
        rows.append((f"auto ({backend}), {args.workers} workers, {args.variants} variants per HR tile "
                     f"(LR tiles/s)", auto))
    if not args.no_dali:
        rows.append(("dali cpu, batch 32", bench_dali(tiles, cfg, "cpu", args.workers)))
        from pipeline.degrade.dali_backend import cuda_visible
        if cuda_visible():
            rows.append(("dali gpu, batch 32", bench_dali(tiles, cfg, "gpu", args.workers)))
    base = rows[0][1]
    print("\n| path | tiles/s | x reference |\n|---|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.1f} | {rate / base:.2f} |")
    print(f"(one process: {1e3 / base:.1f} ms per tile)")
    floor = op_floor(tiles[0])
    print("\n| op (one 256 px tile, OpenCV, 1 thread) | ms |\n|---|---|")
    for name, ms in floor.items():
        print(f"| {name} | {ms:.2f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
