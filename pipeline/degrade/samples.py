"""One task's work, wherever it runs: jobs → `Result`s (the LR sample's members and index columns,
or why it was skipped). Pure functions of (Context, jobs), so a worker process, a thread of this
one or another engine's worker give the same bytes.

    results = degrade_task(ctx, jobs)                       # reference backend
    results = degrade_batch(ctx, jobs, degrader, pool)      # a DALI graph, `pool` around it
"""
from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.io.images import ImageError, encode_png
from pipeline.io.shards import Sample, json_bytes

from .geometry import TooSmallError, crop_to_scale, plan_shapes
from .draw import sample_recipe
from .recipe import Recipe, recipe_columns
from .sources import Context, Job, output_key, read_hr

if TYPE_CHECKING:
    from .dali_backend import DaliDegrader


@dataclass
class Result:
    """A job's outcome: `sample` (members + index columns) when produced, else `skipped` (why)."""
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
    hr_sha256: str | None = None  # the job's (`Job.hr_sha256`), recorded beside the set for the next run


def prepare(ctx: Context, jobs: list[Job]) -> list[tuple[Result, np.ndarray | None]]:
    """Draw each job's recipe and check its sizes, decoding each HR once (consecutive jobs of a
    tile share it). Returns (result, cropped (H, W, 3) uint8 HR), the HR None when skipped."""
    out, cache = [], {}
    for job in jobs:
        recipe = sample_recipe(ctx.settings, ctx.seed, job.hr_key, job.variant, scale=ctx.scale)
        res = Result(output_key(job.hr_key, job.variant), job.hr_key, job.variant, recipe, job.split,
                     hr_sha256=job.hr_sha256)
        if job.hr_key not in cache:
            try:
                cache = {job.hr_key: read_hr(ctx.source, job)}
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


def sample_json(ctx: Context, res: Result) -> bytes:
    """The `<key>.json` member: everything `replay_sample` needs to make the sample again."""
    return json_bytes({"hr_key": res.hr_key, "variant": res.variant, "backend": ctx.backend, "seed": ctx.seed,
                       "hr_set": str(ctx.source.path) if ctx.source.is_set else None,
                       "hr_shape": list(res.hr_shape), "lr_shape": list(res.lr_shape),
                       "recipe": res.recipe.to_dict()})


def finish(ctx: Context, res: Result, hr: np.ndarray, lr: np.ndarray) -> Result:
    """Encode the sample's members and index columns into `res` (where the work ran, off the
    writer's core). hr: the cropped HR; lr: (h, w, 3) uint8 RGB. Returns `res`."""
    res.lr_png = encode_png(lr)
    members = {"lr.png": res.lr_png, "json": sample_json(ctx, res)}
    if not ctx.source.is_set:
        res.hr_png = members["hr.png"] = encode_png(np.ascontiguousarray(hr))
    res.sample = Sample(res.key, members, sample_columns(ctx, res))
    return res


def sample_columns(ctx: Context, res: Result) -> dict:
    """The sample's index columns: its shapes, identity, backend, split and every recipe scalar.
    A function of `res`'s fields alone, so a sample carried over from a previous set
    (`incremental.carry`) gets the values, and the types, a fresh one gets."""
    cols = {"height": res.lr_shape[0], "width": res.lr_shape[1], "hr_key": res.hr_key, "variant": res.variant,
            "backend": ctx.backend, "scale": ctx.scale, "hr_height": res.hr_shape[0], "hr_width": res.hr_shape[1]}
    if res.split is not None:
        cols["split"] = res.split
    cols.update(recipe_columns(res.recipe))
    return cols


def degrade_task(ctx: Context, jobs: list[Job]) -> list[Result]:
    """The reference backend on `jobs`, in order; the variants of a tile (consecutive jobs) share
    one sharpened HR (`fast.sharpen`)."""
    from .fast import apply_recipe, leading_usm, sharpen
    results, shared = [], (None, None)
    for res, hr in prepare(ctx, jobs):
        if hr is None:
            results.append(res)
            continue
        key = (res.hr_key, leading_usm(res.recipe))
        if shared[0] != key:
            shared = (key, sharpen(hr, res.recipe))
        results.append(finish(ctx, res, hr, apply_recipe(hr, res.recipe, sharpened=shared[1])))
    return results


def prepare_batch(ctx: Context, jobs: list[Job], degrader: DaliDegrader, pool: Executor):
    """Everything before a DALI graph runs `jobs`: decode (whole HR tiles per thread of `pool`:
    variants share one decode), draw the recipes, build the graph's inputs.

    Returns (prepared, todo, inputs): every job's (result, hr); those to run; their graph inputs.
    """
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.hr_key, []).append(job)
    parts = pool.map(lambda g: prepare(ctx, g), groups.values())
    by_key = {res.key: (res, hr) for part in parts for res, hr in part}
    prepared = [by_key[output_key(j.hr_key, j.variant)] for j in jobs]
    todo = [(res, hr) for res, hr in prepared if hr is not None]
    inputs = degrader.prepare([hr for _, hr in todo], [res.recipe for res, _ in todo], pool) if todo else []
    return prepared, todo, inputs


def finish_batch(ctx: Context, prepared, todo, lrs: list[np.ndarray], pool: Executor) -> list[Result]:
    """`finish` each of `todo` with its LR tile on `pool`; returns every result of `prepared`, in order."""
    list(pool.map(lambda item: finish(ctx, item[0][0], item[0][1], item[1]), zip(todo, lrs)))
    return [res for res, _ in prepared]


def degrade_batch(ctx: Context, jobs: list[Job], degrader: DaliDegrader, pool: Executor) -> list[Result]:
    """The DALI backend on `jobs` (at most `degrader.batch_size`), in order: `prepare_batch`, the
    graph, `finish_batch`."""
    prepared, todo, inputs = prepare_batch(ctx, jobs, degrader, pool)
    return finish_batch(ctx, prepared, todo, degrader.run_prepared(inputs, pool) if todo else [], pool)
