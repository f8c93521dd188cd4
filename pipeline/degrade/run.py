"""The degrade engine's entry points: a whole HR set into an LR shard set, recipes without
images, one sample replayed.

    stats = degrade_set(Path("data/hr"), tmp, cfg, seed=0, scale=4)   # inside atomic_dir(...)

`degrade_set` is plan → run → write: `sources.plan_set` lists the jobs, `incremental.plan_reuse`
finds those a previous set already holds, `schedule.degrade_jobs` runs the others (worker processes or
DALI graphs), `write.write_set` writes every result in job order (`incremental.merge_results`).
`degrade.engine` picks who runs the jobs: this machine (`schedule`) or a Ray cluster (`ray_engine`);
the writing is the same either way.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io.images import decode_png
from pipeline.parallel import resolve_workers

from .config import DegradeConfig, check_scale
from .draw import sample_recipe
from .incremental import merge_results, plan_reuse
from .preset import dump_preset
from .recipe import Recipe, padded_kernels, recipe_columns
from .schedule import dali_device, degrade_jobs
from .sources import plan_set, read_sample, read_set_hrs
from .write import write_set

PRESET_FILE = "preset.yaml"


def degrade_set(inp: Path, out: Path, cfg: DegradeConfig, *, seed: int, scale: int,
                progress: bool = True, previous: Path | None = None) -> dict[str, Any]:
    """Degrade every HR tile of `inp` (`cfg.variants` times) into the LR shard set `out`.

    inp: an HR shard set (index.parquet + `<key>.hr.png`) or a folder of images (searched
    recursively; each LR sample then also stores its HR as `<key>.hr.png`). out: the directory to
    write (wrap it in `atomic_dir`). Writes `lr-*.tar` + index.parquet, report.md with
    recipe_histograms.png and examples.png, and skipped.csv (`key,reason`).
    previous: an LR set written before (by this function; it may be `out`'s final path while `out` is
    the temporary one): the samples it holds with the same inputs, params and code are copied from it
    instead of computed (`incremental`); the set written is the same, byte for byte.

    Returns {"samples", "shards", "skipped", "backend", "seconds", "reused", "reuse"} (reused: samples
    carried over; reuse: why that many, in words).
    Raises FileNotFoundError / ValueError on a bad input, ParamsError on a bad scale.
    """
    start = time.perf_counter()
    with _engine(cfg) as engine:
        ctx, jobs = plan_set(inp, cfg, seed=seed, scale=scale, gpu=engine.gpu)
        reuse = plan_reuse(previous, ctx, jobs)
        fresh = engine.run(ctx, reuse.todo)
        stats = write_set(out, ctx, cfg, merge_results(ctx, jobs, reuse, fresh), len(jobs), start=start,
                          progress=progress)
    return {**stats, "reused": len(reuse.carried), "reuse": reuse.why}


def degrade_in_place(inp: Path, out: Path, cfg: DegradeConfig, *, seed: int, scale: int, reuse: bool = True,
                     progress: bool = True) -> dict[str, Any]:
    """The stage's path: `degrade_set` into a temporary sibling of `out` that replaces it when complete
    (`atomic_dir`: a failed run leaves the previous set), reusing that previous set when `reuse`."""
    from pipeline.io.atomic import atomic_dir
    with atomic_dir(out) as tmp:
        return degrade_set(inp, tmp, cfg, seed=seed, scale=scale, progress=progress,
                           previous=Path(out) if reuse else None)


class _LocalEngine:
    """`degrade.engine: local`: this machine's worker processes or DALI graphs (`schedule`)."""
    gpu = None  # the backend follows this machine's GPUs

    def __init__(self, cfg: DegradeConfig) -> None:
        self.cfg = cfg

    def run(self, ctx, jobs):
        return degrade_jobs(ctx, jobs, batch_size=self.cfg.batch_size, workers=resolve_workers(self.cfg.workers))


def _engine(cfg: DegradeConfig) -> contextlib.AbstractContextManager:
    """The engine `cfg.engine` names, as a context (Ray's session is closed when the set is written)."""
    if cfg.engine == "ray":
        from .ray_engine import ray_engine
        return ray_engine(cfg)
    return contextlib.nullcontext(_LocalEngine(cfg))


def draw_recipes(out: Path, cfg: DegradeConfig, *, n: int, seed: int, scale: int) -> dict[str, Any]:
    """Draw `n` recipes (keys `000000`.., variant 0) without touching images.

    Writes out/recipes.parquet (`key` + the `recipe_columns`), out/kernels.npz (`blur1`, `blur2`,
    `final`: N×21×21 float32, centred, zero-padded; skipped blur = unit pulse), out/report.md
    with recipe_histograms.png, and out/preset.yaml: the complete preset drawn from (overrides
    merged in); given back as the preset it draws the same recipes. Returns {"recipes": n}.
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
    (out / PRESET_FILE).write_text(dump_preset(settings))
    return {"recipes": n}


def replay_sample(set_dir: Path, key: str, *, hr_dir: Path | None = None) -> tuple[np.ndarray, bool]:
    """Regenerate sample `key` of LR set `set_dir` from its stored recipe with its stored backend.

    The HR comes from the set itself (`<key>.hr.png`, folder input) or from the HR shard set named
    in the sample's json (`hr_dir` overrides it). Returns (lr, equal to the stored lr.png pixels).
    Raises KeyError for an unknown key, FileNotFoundError when the HR set is missing.
    """
    members = read_sample(set_dir, key)
    meta = json.loads(members["json"])
    recipe = Recipe.from_dict(meta["recipe"])
    if "hr.png" in members:
        hr = decode_png(members["hr.png"])
    else:
        hr_path = Path(hr_dir) if hr_dir is not None else Path(meta["hr_set"])
        hr = read_set_hrs(hr_path, [meta["hr_key"]])[meta["hr_key"]]
    backend = meta["backend"]
    if backend == "reference":
        from .fast import apply_recipe
        lr = apply_recipe(hr, recipe)
    else:
        from .dali_backend import DaliDegrader, cuda_visible
        if backend == "dali-gpu" and not cuda_visible():
            raise ValueError(f"{set_dir}: sample {key!r} was made by DALI on a GPU (dali-gpu); replaying it needs a GPU")
        lr = DaliDegrader(1, dali_device(backend)).run([hr], [recipe])[0]
    stored = decode_png(members["lr.png"])
    return lr, bool(stored.shape == lr.shape and np.array_equal(stored, lr))
