"""DVC stage `shard`: `paths.hr` + `paths.lr` (+ `shard.real_pairs`) → `paths.pairs` (train/ and val/ patch shard sets, report)."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import load_params
from pipeline.shard import make_pairs
from pipeline.io.atomic import atomic_dir
from pipeline.io.parquet_rows import arrow_on_malloc
from stages import run_stage


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.shard", description=__doc__)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    cfg = load_params(args.params, sections=("seed", "scale", "paths", "shard"))
    arrow_on_malloc()
    with atomic_dir(cfg.paths.pairs) as tmp:
        stats = make_pairs(cfg.paths.hr, cfg.paths.lr, tmp, cfg.shard, seed=cfg.seed, scale=cfg.scale)
    print(f"shard: {stats.used}/{stats.lr_tiles} pairs -> {stats.train_patches} train patches in {stats.train_shards} "
          f"shards, {stats.val_patches} val patches in {stats.val_shards} shards -> {cfg.paths.pairs}; "
          f"{stats.skipped} pairs skipped (see {cfg.paths.pairs}/skipped.csv)")
    if cfg.shard.real_pairs:
        print(f"shard: of those, {stats.real_train_patches} train and {stats.real_val_patches} val patches from "
              f"{stats.real_pairs} real pairs in {cfg.shard.real_pairs}")


if __name__ == "__main__":
    run_stage(main)
