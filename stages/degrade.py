"""DVC stage `degrade`: params `seed`, `scale`, `degrade` + `paths.hr` → `paths.lr`.

The LR shard set (`lr-*.tar`: `<key>.lr.png`, `<key>.json` with the full recipe) with an index row per
sample (hr_key, variant, backend, split and every recipe scalar), skipped.csv, report.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import load_params
from stages import run_stage


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.degrade", description=__doc__)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    cfg = load_params(args.params, sections=("seed", "scale", "paths", "degrade"))
    from pipeline.degrade.run import degrade_set
    from pipeline.io.atomic import atomic_dir

    with atomic_dir(cfg.paths.lr) as tmp:
        stats = degrade_set(cfg.paths.hr, tmp, cfg.degrade, seed=cfg.seed, scale=cfg.scale)
    print(f"degrade: {stats['samples']} LR samples ({cfg.degrade.preset}, {stats['backend']}) in {stats['shards']} "
          f"shards -> {cfg.paths.lr}; {stats['skipped']} skipped (see {cfg.paths.lr}/skipped.csv)")


if __name__ == "__main__":
    run_stage(main)
