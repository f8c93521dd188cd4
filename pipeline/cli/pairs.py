"""`realsynth pairs`: import captured HR/LR photo pairs as a real-pair shard set."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import FORCE_HELP, check_out_dir


def _pairs(args: argparse.Namespace) -> int:
    from pipeline.config import check_scale
    from pipeline.io.atomic import atomic_dir
    from pipeline.pairs import Limits, import_pairs

    if args.scale is not None:
        check_scale("--scale", args.scale)
    limits = Limits(max_shift=args.max_shift, max_residual=args.max_residual, min_response=args.min_response)
    check_out_dir(args.out, args.force, (args.hr_dir, args.lr_dir), recursive=True)
    with atomic_dir(args.out) as tmp:
        stats = import_pairs(args.hr_dir, args.lr_dir, tmp, scale=args.scale, limits=limits,
                             val_fraction=args.val_fraction, seed=args.seed, workers=args.workers)
    print(f"pairs: {stats.pairs} pairs (x{stats.scale}; train {stats.train}, val {stats.val}) in {stats.shards} "
          f"shards -> {args.out}; {stats.rejected} rejected (see {Path(args.out) / 'rejects.csv'})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pairs", help="captured HR/LR photo pairs -> aligned real-pair shard set")
    p.add_argument("hr_dir", metavar="GT_DIR", help="folder of HR (ground-truth) photos, read recursively")
    p.add_argument("lr_dir", metavar="LQ_DIR",
                   help="folder of LR photos; files pair by name, suffixes like _x4, x4, _LR, _HR ignored")
    p.add_argument("out", metavar="OUT", help="new real-pair set directory (written atomically)")
    p.add_argument("--scale", type=int, metavar="S",
                   help="expected scale: 1, 2, 3, 4 or 8 (default: what most pairs show); other pairs are refused")
    p.add_argument("--max-shift", type=float, default=8.0, metavar="PX",
                   help="largest misalignment, LR px, taken out by cropping; larger is refused (8)")
    p.add_argument("--max-residual", type=float, default=0.25, metavar="PX",
                   help="sub-pixel misalignment, LR px, left after cropping whole HR px that is accepted (0.25)")
    p.add_argument("--min-response", type=float, default=0.4, metavar="R",
                   help="phase-correlation peak below which a pair counts as unmatched (0.4)")
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="share of pairs held out for validation, by HR file (0.2)")
    p.add_argument("--seed", type=int, default=0, help="train/val split seed (0)")
    p.add_argument("--workers", type=int, default=0, metavar="W", help="processes (0: all cores)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(fn=_pairs, parser=p)
