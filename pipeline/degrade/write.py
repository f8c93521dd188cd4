"""Write an LR set from results in job order: the shards and index, skipped.csv and the report.

    stats = write_set(out, ctx, cfg, results, len(jobs), start=time.perf_counter())

The bytes depend only on the results and their order, so the local engine's results and a Ray
cluster's (`ray_engine.py`) write the same set.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.io.images import encode_png
from pipeline.io.shards import Sample, index_columns, iter_index, write_shard_set

from .config import DegradeConfig
from .geometry import crop_to_scale
from .incremental import inputs_writer, write_manifest
from .panels import report_columns
from .samples import Result
from .sources import Context, read_source_hr

SET_NAME = "lr"


def write_set(out: Path, ctx: Context, cfg: DegradeConfig, results: Iterable[Result], n_jobs: int, *,
              start: float, progress: bool = True) -> dict[str, Any]:
    """Write `results` (all `n_jobs` of them, in job order) as the LR set `out`: `lr-*.tar` shards +
    index.parquet, skipped.csv (`key,reason`), report.md with recipe_histograms.png and examples.png,
    and the manifest a later run reuses samples by (`incremental.write_manifest`).

    start: `time.perf_counter()` when the run began. Returns {"samples", "shards", "skipped",
    "backend", "seconds"}.
    """
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
            inputs.add({"key": res.key, "hr_sha256": res.hr_sha256})
            yield res.sample

    import pandas as pd
    with inputs_writer(out) as inputs:  # what each sample was made from, for a later run's reuse
        written_set = write_shard_set(out, samples(), set_name=SET_NAME, shard_bytes=cfg.shard_bytes)
    pd.DataFrame(skipped, columns=["key", "reason"]).to_csv(out / "skipped.csv", index=False)
    write_manifest(out, ctx)
    stats = {"samples": written_set.samples, "shards": written_set.shards,
             "skipped": len(skipped), "backend": ctx.backend, "seconds": round(time.perf_counter() - start, 3)}
    from .report import write_degrade_report
    shown = [(hr, r.lr_png, r.key) for hr, r in zip(_example_hrs(ctx, examples), examples)]
    columns = report_columns(index_columns(out))  # the report reads these, a piece at a time
    write_degrade_report(out, lambda: iter_index(out, columns), skipped, shown, stats=stats, preset=cfg.preset,
                         seed=ctx.seed, scale=ctx.scale)
    return stats


def _example_hrs(ctx: Context, examples: list[Result]) -> list[bytes]:
    """The cropped HR PNG of each example: stored with the sample (folder input) or read from the HR set."""
    return [r.hr_png if r.hr_png is not None else
            encode_png(crop_to_scale(read_source_hr(ctx.source, r.hr_key), ctx.scale)) for r in examples]
