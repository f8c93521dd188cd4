"""Degrade a whole HR set into an LR shard set; draw recipes without images; replay one sample.

    stats = degrade_set(Path("data/hr"), tmp, cfg, seed=0, scale=4)   # inside atomic_dir(...)

Work is split into tasks of consecutive output keys (sorted), run in worker processes (reference
backend, 'spawn' start method) or in batches through one DALI graph; results come back in key
order, and every sample depends only on (HR, seed, key, variant, params), so the bytes written do not
depend on `workers` or `batch_size`.
"""
from __future__ import annotations

import contextlib
import itertools
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io.images import ImageError, decode_image, decode_png, encode_png
from pipeline.io.shards import INDEX, Sample, ShardSet, json_bytes, read_member, write_shard_set
from pipeline.parallel import resolve_workers, worker_pool

from .config import DegradeConfig, Settings, check_scale
from .recipe import Recipe, padded_kernels, recipe_columns, sample_recipe
from .reference import TooSmallError, crop_to_scale, plan_shapes

SET_NAME = "lr"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


# ---- inputs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """An HR input: a shard set (`index` has key/split) or a folder (`files` maps key → path)."""
    path: Path
    is_set: bool
    keys: tuple[str, ...]
    splits: dict[str, str]
    files: dict[str, Path]


def folder_key(rel: Path) -> str:
    """Sample key of an image at relative path `rel`: path parts joined by '_', suffix dropped,
    characters other than [A-Za-z0-9_-] replaced by '_' (keys carry no dots)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", "_".join(rel.with_suffix("").parts)) or "img"


def open_source(inp: Path) -> Source:
    """Describe `inp`: a directory with index.parquet (HR shard set) or a folder of images.

    Raises:
        FileNotFoundError: `inp` is not a directory, or a folder without images.
        ValueError: two files map to the same key.
    """
    inp = Path(inp)
    if not inp.is_dir():
        raise FileNotFoundError(f"{inp}: not a directory (expected an HR shard set or a folder of images)")
    if (inp / INDEX).is_file():
        shards = ShardSet(inp)
        index = shards.index
        if "size_hr_png" not in index.columns:
            raise ValueError(f"{inp / INDEX}: no 'hr.png' members (is {inp} an HR shard set?)")
        splits = dict(zip(index["key"], index["split"])) if "split" in index.columns else {}
        return Source(inp, True, tuple(sorted(index["key"])), splits, {})
    files: dict[str, Path] = {}
    for path in sorted(p for p in inp.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        key = folder_key(path.relative_to(inp))
        if key in files:
            raise ValueError(f"{path}: same sample key {key!r} as {files[key]}; rename one of them")
        files[key] = path
    if not files:
        raise FileNotFoundError(f"{inp}: no images ({', '.join(IMAGE_EXTENSIONS)}) and no {INDEX}")
    return Source(inp, False, tuple(sorted(files)), {}, files)


def output_key(hr_key: str, variant: int) -> str:
    return f"{hr_key}_v{variant}"


# ---- per-sample work (runs in workers) ----------------------------------------------------------

@dataclass(frozen=True)
class Job:
    hr_key: str
    variant: int
    # (shard, offset, size) of `<hr_key>.hr.png` when the input is a shard set: workers read the HR
    # by offset and never load the index (nor pandas, ~0.6 s of each worker's start-up)
    hr_at: tuple[str, int, int] | None = None
    hr_file: Path | None = None  # the image when the input is a folder (`plan_set` gives each job one of the two)
    split: str | None = None   # the HR tile's split (train/val) when the input set has one


@dataclass
class Result:
    key: str
    hr_key: str
    variant: int
    recipe: Recipe
    split: str | None = None
    lr_png: bytes | None = None
    hr_png: bytes | None = None
    lr_shape: tuple[int, int] = (0, 0)
    hr_shape: tuple[int, int] = (0, 0)
    skipped: str | None = None   # reason when not produced
    sample: Sample | None = None  # members + index columns when produced


@dataclass(frozen=True)
class _Context:
    source: Source
    settings: Settings
    seed: int
    scale: int
    backend: str       # reference | dali-cpu | dali-gpu


_WORKER: dict[str, Any] = {}


def _for_workers(ctx: _Context) -> _Context:
    """`ctx` without the per-key tables its jobs already carry (keys, splits, files): pickled once
    per worker, it stays small however large the set (a million keys would be ~46 MB a worker)."""
    return replace(ctx, source=replace(ctx.source, keys=(), splits={}, files={}))


def _init_worker(ctx: _Context) -> None:
    import cv2
    cv2.setNumThreads(1)  # one process per core already
    _WORKER["ctx"] = ctx


def _decode_hr(ctx: _Context, job: Job) -> np.ndarray:
    if job.hr_at is not None:
        shard, offset, size = job.hr_at
        return decode_png(read_member(ctx.source.path / shard, job.hr_key, "hr.png", offset, size))
    return decode_image(job.hr_file.read_bytes())


def _prepare(ctx: _Context, jobs: list[Job]) -> list[tuple[Result, np.ndarray | None]]:
    """Decode each HR once, draw recipes, check sizes; returns (result, cropped hr or None if skipped)."""
    out, cache = [], {}
    for job in jobs:
        recipe = sample_recipe(ctx.settings, ctx.seed, job.hr_key, job.variant, scale=ctx.scale)
        res = Result(output_key(job.hr_key, job.variant), job.hr_key, job.variant, recipe, job.split)
        if job.hr_key not in cache:
            try:
                cache = {job.hr_key: _decode_hr(ctx, job)}
            except ImageError as err:
                cache = {job.hr_key: str(err)}
        hr = cache[job.hr_key]
        if isinstance(hr, str):
            res.skipped = f"unreadable HR: {hr}"
            out.append((res, None))
            continue
        hr = crop_to_scale(hr, ctx.scale)
        res.hr_shape = hr.shape[:2]
        try:
            res.lr_shape = plan_shapes(recipe, hr.shape[:2])[-1]
        except TooSmallError as err:
            res.skipped = f"too small ({hr.shape[0]}x{hr.shape[1]}): {err}"
            out.append((res, None))
            continue
        out.append((res, hr))
    return out


def _finish(ctx: _Context, res: Result, hr: np.ndarray, lr: np.ndarray) -> Result:
    """Encode the sample's members and index columns (in the worker, off the writer's core)."""
    res.lr_png = encode_png(lr)
    members = {"lr.png": res.lr_png, "json": _sample_json(res, ctx)}
    if not ctx.source.is_set:
        res.hr_png = members["hr.png"] = encode_png(np.ascontiguousarray(hr))
    cols = {"height": res.lr_shape[0], "width": res.lr_shape[1], "hr_key": res.hr_key, "variant": res.variant,
            "backend": ctx.backend, "scale": ctx.scale, "hr_height": res.hr_shape[0], "hr_width": res.hr_shape[1]}
    if res.split is not None:
        cols["split"] = res.split
    cols.update(recipe_columns(res.recipe))
    res.sample = Sample(res.key, members, cols)
    return res


def _run_reference(jobs: list[Job]) -> list[Result]:
    from .reference import apply_recipe, leading_usm, sharpen
    ctx = _WORKER["ctx"]
    results, shared = [], (None, None)  # the variants of a tile (consecutive jobs) share one USM
    for res, hr in _prepare(ctx, jobs):
        if hr is None:
            results.append(res)
            continue
        key = (res.hr_key, leading_usm(res.recipe))
        if shared[0] != key:
            shared = (key, sharpen(hr, res.recipe))
        results.append(_finish(ctx, res, hr, apply_recipe(hr, res.recipe, sharpened=shared[1])))
    return results


def _tasks(jobs: list[Job], size: int) -> list[list[Job]]:
    """`jobs` cut into consecutive tasks of at most `size`, each HR tile's variants kept in one task
    (they share its decode and USM only there); a tile with more than `size` variants is split."""
    tasks: list[list[Job]] = [[]]
    for _, group in itertools.groupby(jobs, key=lambda job: job.hr_key):
        group = list(group)
        if len(tasks[-1]) + len(group) > size:
            tasks.append([])
        while len(group) > size:
            tasks[-1:] = [group[:size], []]
            group = group[size:]
        tasks[-1].extend(group)
    return [task for task in tasks if task]


def _results_reference(ctx: _Context, jobs: list[Job], workers: int, batch_size: int) -> Iterator[Result]:
    tasks = _tasks(jobs, batch_size)
    if workers <= 1 or len(tasks) <= 1:
        import cv2
        threads = cv2.getNumThreads()
        _init_worker(ctx)
        try:
            for task in tasks:
                yield from _run_reference(task)
        finally:
            cv2.setNumThreads(threads)
        return
    with worker_pool(workers, initializer=_init_worker, initargs=(_for_workers(ctx),), reuse_memory=True) as pmap:
        for results in pmap(_run_reference, tasks):
            yield from results


# The GPU graph alone runs ~1,300 tiles/s on an H100, but the per-sample Python around it (recipe
# sampling, its JSON, shard I/O) holds the GIL: one process tops out near 180 tiles/s. So the GPU
# path runs one graph per this many cores, each in its own spawned process (bench/README.md).
GPU_CORES_PER_PROCESS = 4


def _prepare_batch(ctx: _Context, task: list[Job], pool, degrader):
    """Decode a batch (whole HR groups per thread: variants share one decode), draw its recipes
    and build the graph's inputs. Returns (prepared, todo, inputs)."""
    groups: dict[str, list[Job]] = {}
    for job in task:
        groups.setdefault(job.hr_key, []).append(job)
    parts = pool.map(lambda g: _prepare(ctx, g), groups.values())
    by_key = {res.key: (res, hr) for part in parts for res, hr in part}
    prepared = [by_key[output_key(j.hr_key, j.variant)] for j in task]
    todo = [(res, hr) for res, hr in prepared if hr is not None]
    inputs = degrader.prepare([hr for _, hr in todo], [res.recipe for res, _ in todo]) if todo else []
    return prepared, todo, inputs


def _finish_batch(ctx: _Context, prepared, todo, lrs, pool) -> list[Result]:
    list(pool.map(lambda item: _finish(ctx, item[0][0], item[0][1], item[1]), zip(todo, lrs)))
    return [res for res, _ in prepared]


def _dali_device(backend: str) -> str:
    """DaliDegrader's device for a resolved backend (`dali-gpu` or `dali-cpu`)."""
    return "gpu" if backend == "dali-gpu" else "cpu"


def _init_dali_worker(ctx: _Context, batch_size: int, threads: int) -> None:
    from .dali_backend import DaliDegrader
    _init_worker(ctx)
    _WORKER["dali"] = DaliDegrader(batch_size, _dali_device(ctx.backend), threads)


def _run_dali(task: list[Job]) -> list[Result]:
    ctx, degrader = _WORKER["ctx"], _WORKER["dali"]
    pool = degrader.pool
    prepared, todo, inputs = _prepare_batch(ctx, task, pool, degrader)
    lrs = degrader.run_prepared(inputs) if todo else []
    return _finish_batch(ctx, prepared, todo, lrs, pool)


def _results_dali(ctx: _Context, jobs: list[Job], batch_size: int, threads: int) -> Iterator[Result]:
    """DALI graphs over batches of jobs. On the CPU: one graph in this process, on `threads`
    threads, the next batch decoded and prepared while the graph runs the current one. On the GPU:
    one graph per GPU_CORES_PER_PROCESS cores, each in a spawned process (DALI never starts in this
    one, so nothing forks after it), results in job order. A sample's output depends only on its
    HR and recipe, never on which graph or batch ran it."""
    from concurrent.futures import ThreadPoolExecutor

    tasks = _tasks(jobs, batch_size)
    processes = min(len(tasks), threads // GPU_CORES_PER_PROCESS) if ctx.backend == "dali-gpu" else 1
    if processes > 1:
        per = max(1, threads // processes)
        with worker_pool(processes, initializer=_init_dali_worker, initargs=(_for_workers(ctx), batch_size, per),
                         reuse_memory=True) as pmap:
            for results in pmap(_run_dali, tasks):
                yield from results
        return
    from .dali_backend import DaliDegrader
    degrader = DaliDegrader(batch_size, _dali_device(ctx.backend), threads)
    pool = degrader.pool
    with contextlib.closing(degrader), ThreadPoolExecutor(1) as ahead:
        upcoming = ahead.submit(_prepare_batch, ctx, tasks[0], pool, degrader) if tasks else None
        for i in range(len(tasks)):
            prepared, todo, inputs = upcoming.result()
            if i + 1 < len(tasks):
                upcoming = ahead.submit(_prepare_batch, ctx, tasks[i + 1], pool, degrader)
            lrs = degrader.run_prepared(inputs) if todo else []
            yield from _finish_batch(ctx, prepared, todo, lrs, pool)


# ---- the set ------------------------------------------------------------------------------------

def resolve_backend(backend: str, preset: str) -> str:
    """`reference`, `dali-cpu` or `dali-gpu` for a configured `auto|dali|reference`."""
    if backend == "reference" or (backend == "auto" and preset == "bsrgan"):
        return "reference"
    from .dali_backend import cuda_visible
    gpu = cuda_visible()
    if backend == "auto":
        return "dali-gpu" if gpu else "reference"
    if backend == "dali":
        return "dali-gpu" if gpu else "dali-cpu"
    raise ValueError(f"backend must be 'auto', 'dali' or 'reference', got {backend!r}")


def _sample_json(res: Result, ctx: _Context) -> bytes:
    return json_bytes({"hr_key": res.hr_key, "variant": res.variant, "backend": ctx.backend, "seed": ctx.seed,
                       "hr_set": str(ctx.source.path) if ctx.source.is_set else None,
                       "hr_shape": list(res.hr_shape), "lr_shape": list(res.lr_shape),
                       "recipe": res.recipe.to_dict()})


def degrade_set(inp: Path, out: Path, cfg: DegradeConfig, *, seed: int, scale: int,
                progress: bool = True) -> dict[str, Any]:
    """Degrade every HR tile of `inp` (`cfg.variants` times) into the LR shard set `out`.

    inp: an HR shard set (index.parquet + `<key>.hr.png`) or a folder of images (searched
    recursively; each LR sample then also stores its HR as `<key>.hr.png`). out: the directory to
    write (wrap it in `atomic_dir`). Writes `lr-*.tar` + index.parquet, report.md with
    recipe_histograms.png and examples.png, and skipped.csv (`key,reason`).

    Returns {"samples", "shards", "skipped", "backend", "seconds"}.
    Raises FileNotFoundError / ValueError on a bad input, ParamsError on a bad scale.
    """
    start = time.perf_counter()
    ctx, jobs = plan_set(inp, cfg, seed=seed, scale=scale)
    results = degrade_jobs(ctx, jobs, cfg, workers=resolve_workers(cfg.workers))
    return write_set(out, ctx, cfg, results, len(jobs), start=start, progress=progress)


def plan_set(inp: Path, cfg: DegradeConfig, *, seed: int, scale: int) -> tuple[_Context, list[Job]]:
    """Open `inp`, resolve the backend and list every job (HR key × variant), sorted by output key."""
    check_scale("scale", scale)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    source = open_source(Path(inp))
    ctx = _Context(source, cfg.settings, seed, scale, resolve_backend(cfg.backend, cfg.preset))
    hr_at = ShardSet(source.path).locate(source.keys, "hr.png") if source.is_set else dict.fromkeys(source.keys)
    jobs = sorted((Job(k, v, hr_at=hr_at[k], hr_file=source.files.get(k), split=source.splits.get(k))
                   for k in source.keys for v in range(cfg.variants)), key=lambda j: output_key(j.hr_key, j.variant))
    return ctx, jobs


def degrade_jobs(ctx: _Context, jobs: list[Job], cfg: DegradeConfig, *, workers: int) -> Iterator[Result]:
    """Results of `jobs` in job order (skipped ones included, with their reason)."""
    if ctx.backend == "reference":
        return _results_reference(ctx, jobs, workers, cfg.batch_size)
    return _results_dali(ctx, jobs, cfg.batch_size, workers)


def write_set(out: Path, ctx: _Context, cfg: DegradeConfig, results: Iterable[Result], n_jobs: int, *,
              start: float, progress: bool = True) -> dict[str, Any]:
    """Write `results` (all `n_jobs` of them, in job order) as the LR set `out`: shards + index,
    skipped.csv, report.md. Returns the stats of `degrade_set`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    skipped: list[tuple[str, str]] = []
    examples: list[Result] = []
    every = max(1, n_jobs // max(cfg.examples, 1))

    def samples() -> Iterator[Sample]:
        from tqdm import tqdm
        for i, res in enumerate(tqdm(results, total=n_jobs, desc="degrade", unit="tile", disable=not progress)):
            if res.skipped is not None:
                skipped.append((res.key, res.skipped))
                continue
            if cfg.examples and i % every == 0 and len(examples) < cfg.examples:
                examples.append(res)
            yield res.sample

    import pandas as pd
    index = write_shard_set(out, samples(), set_name=SET_NAME, shard_bytes=cfg.shard_bytes)
    pd.DataFrame(skipped, columns=["key", "reason"]).to_csv(out / "skipped.csv", index=False)
    stats = {"samples": len(index), "shards": int(index["shard"].nunique()) if len(index) else 0,
             "skipped": len(skipped), "backend": ctx.backend, "seconds": round(time.perf_counter() - start, 3)}
    from .report import write_degrade_report
    hr_set = ShardSet(ctx.source.path) if ctx.source.is_set and examples else None  # one index read
    write_degrade_report(out, index, skipped, [(_example_hr(ctx, r, hr_set), r.lr_png, r.key) for r in examples],
                         stats=stats, preset=cfg.preset, seed=ctx.seed, scale=ctx.scale)
    return stats


def _example_hr(ctx: _Context, res: Result, hr_set: ShardSet | None) -> bytes:
    if res.hr_png is not None:  # folder input: the sample stores its cropped HR
        return res.hr_png
    return encode_png(crop_to_scale(decode_png(hr_set.read(res.hr_key, ["hr.png"])["hr.png"]), ctx.scale))


# ---- recipes only -------------------------------------------------------------------------------

def draw_recipes(out: Path, cfg: DegradeConfig, *, n: int, seed: int, scale: int) -> dict[str, Any]:
    """Draw `n` recipes (keys `000000`.., variant 0) without touching images.

    Writes out/recipes.parquet (`key` + DESIGN §4 columns), out/kernels.npz (`blur1`, `blur2`,
    `final`: N×21×21 float32, centred, zero-padded; skipped blur = unit pulse) and out/report.md
    with recipe_histograms.png. Returns {"recipes": n}.
    """
    check_scale("scale", scale)
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = cfg.settings
    rows, kernels = [], {"blur1": [], "blur2": [], "final": []}
    for i in range(n):
        key = f"{i:06d}"
        recipe = sample_recipe(settings, seed, key, 0, scale=scale)
        rows.append({"key": key, **recipe_columns(recipe)})
        for name, k in padded_kernels(recipe).items():
            kernels[name].append(k)
    import pandas as pd
    table = pd.DataFrame(rows)
    table.to_parquet(out / "recipes.parquet", index=False, engine="pyarrow", compression="zstd")
    np.savez_compressed(out / "kernels.npz", **{k: np.stack(v).astype(np.float32) for k, v in kernels.items()})
    from .report import write_recipes_report
    write_recipes_report(out, table, preset=cfg.preset, seed=seed, scale=scale)
    return {"recipes": n}


# ---- replay -------------------------------------------------------------------------------------

def replay_sample(set_dir: Path, key: str, *, hr_dir: Path | None = None) -> tuple[np.ndarray, bool]:
    """Regenerate sample `key` of LR set `set_dir` from its stored recipe with its stored backend.

    The HR comes from the set itself (`<key>.hr.png`, folder input) or from the HR shard set named
    in the sample's json (`hr_dir` overrides it). Returns (lr, equal to the stored lr.png pixels).
    Raises KeyError for an unknown key, FileNotFoundError when the HR set is missing.
    """
    lr_set = ShardSet(set_dir)
    members = lr_set.read(key)
    import json
    meta = json.loads(members["json"])
    recipe = Recipe.from_dict(meta["recipe"])
    if "hr.png" in members:
        hr = decode_png(members["hr.png"])
    else:
        hr_path = Path(hr_dir) if hr_dir is not None else Path(meta["hr_set"])
        hr = decode_png(ShardSet(hr_path).read(meta["hr_key"], ["hr.png"])["hr.png"])
    backend = meta["backend"]
    if backend == "reference":
        from .reference import apply_recipe
        lr = apply_recipe(hr, recipe)
    else:
        from .dali_backend import DaliDegrader, cuda_visible
        if backend == "dali-gpu" and not cuda_visible():
            raise ValueError(f"{set_dir}: sample {key!r} was made by DALI on a GPU (dali-gpu); replaying it needs a GPU")
        lr = DaliDegrader(1, _dali_device(backend)).run([hr], [recipe])[0]
    stored = decode_png(members["lr.png"])
    return lr, bool(stored.shape == lr.shape and np.array_equal(stored, lr))
