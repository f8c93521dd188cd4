"""DVC stage `ingest`: params `ingest`, photos in `paths.photos` → `paths.hr` (HR tile shard set, rejects.csv, report.md)."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import load_params
from pipeline.ingest import cap_summary, ingest
from pipeline.io.atomic import atomic_dir
from stages import run_stage


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.ingest", description=__doc__)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    cfg = load_params(args.params, sections=("seed", "scale", "paths", "ingest"))
    with atomic_dir(cfg.paths.hr) as tmp:
        stats = ingest(cfg.ingest.sources, tmp, cfg.ingest, seed=cfg.seed, scale=cfg.scale,
                       root=cfg.paths.photos)
    print(f"ingest: {stats.accepted}/{stats.candidates} photos -> {stats.tiles} tiles "
          f"(train {stats.train_tiles}, val {stats.val_tiles}) in {stats.shards} shards -> {cfg.paths.hr}; "
          f"{stats.rejected} rejected (see {cfg.paths.hr}/rejects.csv){cap_summary(stats)}")


if __name__ == "__main__":
    run_stage(main)
