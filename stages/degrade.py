"""DVC stage `degrade`: params `seed`, `scale`, `degrade` + `paths.hr` → `paths.lr`.

The LR shard set (`lr-*.tar`: `<key>.lr.png`, `<key>.json` with the full recipe) with an index row per
sample (hr_key, variant, backend, split and every recipe scalar), skipped.csv, report.md.
`degrade.engine: ray` runs the jobs as tasks on the Ray cluster at RAY_ADDRESS (a local Ray when
unset) and writes the same bytes (pipeline/degrade/ray_engine.py).

Incremental: the samples the set already at `paths.lr` holds with the same HR bytes, params and code
are copied from it, the rest computed; the set written is the one a run from scratch writes
(pipeline/degrade/incremental.py). dvc.yaml declares `paths.lr` `persist: true` so DVC leaves the
previous set in place for this; `--from-scratch` ignores it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import load_params
from stages import run_stage


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.degrade", description=__doc__)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--from-scratch", action="store_true",
                    help="compute every sample, reusing none of the set already at paths.lr")
    args = ap.parse_args(argv)
    cfg = load_params(args.params, sections=("seed", "scale", "paths", "degrade"))
    from pipeline.degrade.run import degrade_in_place
    from pipeline.io.parquet_rows import arrow_on_malloc
    from pipeline.parallel import keep_freed_memory, resolve_workers

    arrow_on_malloc()
    if resolve_workers(cfg.degrade.workers) == 1:  # this process degrades: reuse freed arrays, no page faults
        keep_freed_memory()  # (with workers it only writes, and its memory must not grow with the corpus)
    # atomic: written to a temporary sibling of paths.lr and renamed into place when complete
    stats = degrade_in_place(cfg.paths.hr, cfg.paths.lr, cfg.degrade, seed=cfg.seed, scale=cfg.scale,
                             reuse=not args.from_scratch)
    engine = ", ray" if cfg.degrade.engine == "ray" else ""
    print(f"degrade: {stats['samples']} LR samples ({cfg.degrade.preset}, {stats['backend']}{engine}) in "
          f"{stats['shards']} shards -> {cfg.paths.lr}; {stats['skipped']} skipped (see {cfg.paths.lr}/skipped.csv); "
          f"{stats['reused']} reused from the previous set ({stats['reuse']})")


if __name__ == "__main__":
    run_stage(main)
