"""`realsynth ingest | degrade | recipes | replay | inspect`: the data stages' library, outside DVC."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import FORCE_HELP, PRESET_NAMES, check_out_dir


def _ingest(args: argparse.Namespace) -> int:
    from pipeline.config import IngestConfig
    from pipeline.ingest import cap_summary, ingest
    from pipeline.io.atomic import atomic_dir
    from pipeline.params import build

    overrides = {k: v for k, v in dict(min_side=args.min_side, crop=args.crop, step=args.step,
                                        max_tiles_per_photo=args.max_tiles_per_photo,
                                        val_fraction=args.val_fraction, workers=args.workers,
                                        alpha=args.alpha).items() if v is not None}
    if args.scales:
        overrides["scales"] = [float(s) for s in args.scales.split(",")]
    cfg = build(IngestConfig, {**overrides, "sources": list(args.inputs)}, "ingest")
    check_out_dir(args.out, args.force, tuple(args.inputs), recursive=True)
    with atomic_dir(args.out) as tmp:
        stats = ingest(cfg.sources, tmp, cfg, seed=args.seed, scale=args.scale)
    print(f"{stats.accepted}/{stats.candidates} photos -> {stats.tiles} tiles (train {stats.train_tiles}, "
          f"val {stats.val_tiles}) in {stats.shards} shards -> {args.out}; {stats.rejected} rejected "
          f"(see {Path(args.out) / 'rejects.csv'}){cap_summary(stats)}")
    return 0


def _degrade_cfg(args: argparse.Namespace):
    from pipeline.degrade.config import DegradeConfig
    from pipeline.params import build

    data = {k: v for k, v in dict(preset=args.preset, variants=args.variants, backend=args.backend,
                                   batch_size=getattr(args, "batch_size", None),
                                   workers=getattr(args, "workers", None)).items() if v is not None}
    return build(DegradeConfig, data, "degrade")


def _scale(args: argparse.Namespace, cfg) -> int:
    """--scale, else the preset's own (2 for realesrgan-x2plus)."""
    return cfg.settings.scale if args.scale is None else args.scale


def _degrade(args: argparse.Namespace) -> int:
    from pipeline.degrade import run
    from pipeline.io.atomic import atomic_dir
    from pipeline.parallel import keep_freed_memory

    cfg = _degrade_cfg(args)
    check_out_dir(args.out, args.force, (args.input,), recursive=True)
    keep_freed_memory()  # a CLI process: reuse freed arrays instead of faulting in new ones
    with atomic_dir(args.out) as tmp:
        stats = run.degrade_set(Path(args.input), tmp, cfg, seed=args.seed, scale=_scale(args, cfg))
    print(f"degrade: {stats['samples']} LR samples ({cfg.preset}, {stats['backend']}) in {stats['shards']} "
          f"shards -> {args.out}; {stats['skipped']} skipped (see {Path(args.out) / 'skipped.csv'}); "
          f"report: {Path(args.out) / 'report.md'}")
    return 0


def _recipes(args: argparse.Namespace) -> int:
    from pipeline.degrade import run
    from pipeline.io.atomic import atomic_dir

    cfg = _degrade_cfg(args)
    check_out_dir(args.out, args.force)
    with atomic_dir(args.out) as tmp:
        run.draw_recipes(tmp, cfg, n=args.n, seed=args.seed, scale=_scale(args, cfg))
    print(f"recipes: {args.n} recipes -> {args.out}/recipes.parquet, kernels.npz, report.md, preset.yaml")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from pipeline.degrade import run
    from pipeline.io.images import encode_png

    img, same = run.replay_sample(Path(args.set), args.key)
    Path(args.out).write_bytes(encode_png(img))
    print(f"replay: {args.key} -> {args.out}: {'identical to' if same else 'DIFFERS from'} the stored sample")
    return 0 if same else 1


def _inspect(args: argparse.Namespace) -> int:
    from pipeline.data.inspect import inspect_set

    print(inspect_set(Path(args.set), grid=args.grid, seed=args.seed, out=args.out))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    # Help texts name the params.yaml defaults (pipeline/config.py, pipeline/degrade/config.py);
    # an unset flag keeps the default, and the config, not argparse, validates every value.
    p = sub.add_parser("ingest", help="HR photos (files, folders, globs, @lists, 'sample') -> HR tile shard set")
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="image files, folders (recursive), globs, @list.txt files, or 'sample' (bundled photos)")
    p.add_argument("out", metavar="OUT", help="new HR shard set directory (written atomically)")
    p.add_argument("--min-side", type=int, metavar="N", help="reject photos whose shorter side is below N px (128)")
    p.add_argument("--crop", type=int, metavar="C", help="tile size in px (400)")
    p.add_argument("--step", type=int, metavar="S", help="tile stride in px (200)")
    p.add_argument("--scales", help="comma-separated multiscale variants, e.g. 1,0.75,0.5 (1)")
    p.add_argument("--max-tiles-per-photo", type=int, metavar="N",
                   help="keep a seeded subset of at most N tiles per photo, all scales together (0: no cap)")
    p.add_argument("--val-fraction", type=float, metavar="F", help="share of photos held out for validation (0.2)")
    p.add_argument("--alpha", choices=["composite", "reject"], help="photos with transparency (composite)")
    p.add_argument("--workers", type=int, metavar="W", help="processes (0: all cores)")
    p.add_argument("--seed", type=int, default=0, help="train/val split and tile cap seed (0)")
    p.add_argument("--scale", type=int, default=4, help="SR scale the tiles are meant for (4)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(fn=_ingest, parser=p)

    for name, fn, help_ in (("degrade", _degrade, "HR folder or shard set -> degraded LR shard set"),
                            ("recipes", _recipes, "draw degradation recipes without images")):
        p = sub.add_parser(name, help=help_)
        if name == "degrade":
            p.add_argument("input", metavar="IN", help="an HR shard set (from ingest) or a folder of images")
            p.add_argument("out", metavar="OUT", help="new LR shard set directory (written atomically)")
        else:
            p.add_argument("out", metavar="OUT",
                           help="new directory: recipes.parquet, kernels.npz, report.md, preset.yaml "
                                "(written atomically)")
        p.add_argument("--preset", metavar="P",
                       help=f"{' | '.join(PRESET_NAMES)} (realesrgan-x4plus), or a preset YAML file (as "
                            "`recipes` writes to OUT/preset.yaml); steps, ranges and probabilities come from it")
        p.add_argument("--scale", type=int, metavar="S",
                       help="SR factor: 1, 2, 3, 4 or 8 (the preset's: 2 for realesrgan-x2plus, else 4)")
        p.add_argument("--seed", type=int, default=0, metavar="N",
                       help="recipes depend only on (seed, sample key, variant) (0)")
        if name == "degrade":
            p.add_argument("--variants", type=int, metavar="K", help="LR variants per HR image (1)")
            p.add_argument("--backend", choices=["auto", "dali", "reference"],
                           help="auto: DALI on a GPU, otherwise reference workers (auto)")
            p.add_argument("--batch-size", type=int, metavar="B",
                           help="samples per DALI batch or worker task; output bytes do not depend on it (32)")
            p.add_argument("--workers", type=int, metavar="W",
                           help="reference-backend processes (0: all cores); output bytes do not depend on it")
        else:
            p.add_argument("--n", type=int, default=1000, metavar="N", help="recipes to draw (1000)")
            p.set_defaults(variants=None, backend=None)
        p.add_argument("--force", action="store_true", help=FORCE_HELP)
        p.set_defaults(fn=fn, parser=p)

    p = sub.add_parser("inspect", help="summary and a sample grid of a shard set")
    p.add_argument("set", metavar="SET", help="a shard set directory (HR, LR or pairs)")
    p.add_argument("--grid", type=int, default=16, help="samples in the grid PNG written with --out (16; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the grid's random picks (0)")
    p.add_argument("--out", type=Path, metavar="GRID.png",
                   help="write the sample grid here (a folder: <folder>/inspect-<set>.png); never inside a "
                        "shard set. Without --out: the summary only, no file")
    p.set_defaults(fn=_inspect, parser=p)

    p = sub.add_parser("replay", help="regenerate one degraded sample from its stored recipe")
    p.add_argument("set", metavar="SET", help="the LR shard set holding the sample")
    p.add_argument("key", metavar="KEY", help="the sample's key (index.parquet 'key' column)")
    p.add_argument("out", metavar="OUT.png", help="where to write the regenerated LR image")
    p.set_defaults(fn=_replay, parser=p)
