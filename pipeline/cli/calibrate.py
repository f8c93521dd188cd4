"""`realsynth fingerprint | calibrate | preview`: measure real LR, fit a preset to it, look at a preset."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.cli.common import FORCE_HELP, PRESET_NAMES, check_out_dir, check_out_file

PRESET_HELP = f"{' | '.join(PRESET_NAMES)} (realesrgan-x4plus), or a preset YAML file"


def _fingerprint(args: argparse.Namespace) -> int:
    from pipeline.calibrate.fingerprint import fingerprint, format_table, json_ready
    from pipeline.io.atomic import atomic_write_text

    out = check_out_file(args.out, args.force, "--out names the file to write") if args.out else None
    fp = fingerprint(Path(args.input), limit=args.limit)
    print(format_table({Path(args.input).name or str(args.input): fp}))
    if out is not None:
        atomic_write_text(out, json.dumps(json_ready(fp), indent=2, sort_keys=True, allow_nan=False) + "\n")
        print(f"fingerprint: {int(fp['images'])} images -> {out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from pipeline.calibrate.run import calibrate
    from pipeline.io.atomic import atomic_dir

    check_out_dir(args.out, args.force, (args.real_lr, args.hr), recursive=True)
    with atomic_dir(args.out) as tmp:
        s = calibrate(Path(args.real_lr), Path(args.hr), tmp, preset=args.preset, budget=args.budget,
                      seed=args.seed, crops=args.crops, crop_size=args.crop, variants=args.variants,
                      progress=None if args.quiet else print)
    print(f"calibrate: distance to the real LR {s['distance_default']:.3f} (default {args.preset}) -> "
          f"{s['distance_calibrated']:.3f} ({s['preset']}) in {s['seconds']} s -> {Path(args.out) / 'preset.yaml'}; "
          f"report: {Path(args.out) / 'report.md'}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from pipeline.calibrate.preview import preview
    from pipeline.degrade.preset import load_preset
    from pipeline.io.atomic import atomic_write_bytes
    from pipeline.io.images import encode_png, read_image

    out = check_out_file(args.out, args.force, "OUT.png names the file to write")
    grid, texts = preview(read_image(args.photo), load_preset(args.preset), n=args.n, seed=args.seed,
                          crop=args.crop)
    atomic_write_bytes(out, encode_png(grid))
    for lines in texts:
        print(" | ".join(lines))
    print(f"preview: {args.n} samples ({args.preset}, seed {args.seed}) -> {out}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fingerprint", help="degradation fingerprint of LR images: noise, blur, JPEG, chroma")
    p.add_argument("input", metavar="SET_OR_FOLDER", help="a folder of images (recursive) or a shard set (lr.png)")
    p.add_argument("--out", metavar="F.json", help="also write the fingerprint as JSON here")
    p.add_argument("--limit", type=int, default=256, metavar="N",
                   help="measure at most N images, evenly spaced in name order (256)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(fn=_fingerprint, parser=p)

    p = sub.add_parser("calibrate", help="fit a preset so LR from your HR matches your real LR photos")
    p.add_argument("real_lr", metavar="REAL_LR", help="folder of real LR photos (recursive) or an LR shard set")
    p.add_argument("out", metavar="OUT",
                   help="new directory: preset.yaml, report.md, fingerprints.json, gallery/ (written atomically)")
    p.add_argument("--hr", required=True, metavar="HR",
                   help="your own HR photos (a folder or an HR shard set); other scenes than REAL_LR are fine")
    p.add_argument("--preset", default="realesrgan-x4plus", metavar="P", help=f"the preset to start from: {PRESET_HELP}")
    p.add_argument("--budget", type=int, default=40, metavar="N", help="fingerprints the search may measure (40)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="crop positions and recipe draws (0)")
    p.add_argument("--crops", type=int, default=16, metavar="K", help="HR crops synthesised at each point (16)")
    p.add_argument("--crop", type=int, default=256, metavar="PX", help="HR crop side, px (256)")
    p.add_argument("--variants", type=int, default=1, metavar="V", help="LR variants per crop at each point (1)")
    p.add_argument("--quiet", action="store_true", help="no line per measured point")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(fn=_calibrate, parser=p)

    p = sub.add_parser("preview", help="a grid of K degraded samples of one photo, with their recipes")
    p.add_argument("photo", metavar="PHOTO", help="an image file")
    p.add_argument("out", metavar="OUT.png", help="the grid to write")
    p.add_argument("--preset", default="realesrgan-x4plus", metavar="P", help=PRESET_HELP)
    p.add_argument("--n", type=int, default=8, metavar="K", help="samples (8)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="recipe seed (0)")
    p.add_argument("--crop", type=int, default=256, metavar="PX", help="central crop of the photo degraded, px (256)")
    p.add_argument("--force", action="store_true", help="replace an existing OUT.png")
    p.set_defaults(fn=_preview, parser=p)
