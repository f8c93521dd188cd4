"""`realsynth upscale`: a generator checkpoint on a file or a folder of images."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import DEFAULT_TILE, check_out_dir


def _upscale(args: argparse.Namespace) -> int:
    from pipeline.infer import upscale_path
    from pipeline.io.atomic import atomic_dir

    kw = dict(tile=args.tile, overlap=args.overlap, device=args.device, weights=args.weights)
    inp, out = Path(args.input), Path(args.out)
    if inp.is_dir():  # a folder out: refused if it holds anything, else written whole or not at all
        check_out_dir(out, args.force, (inp,))
        with atomic_dir(out) as tmp:
            n = upscale_path(Path(args.checkpoint), inp, tmp, **kw)
    else:
        n = upscale_path(Path(args.checkpoint), inp, out, **kw)
    print(f"upscale: {n} image(s) -> {args.out}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="super-resolve a file or folder with a checkpoint (tiled, any size)")
    p.add_argument("--checkpoint", required=True, help="generator weights: models/*/generator.pth, or a public Real-ESRGAN / BasicSR .pth")
    p.add_argument("input", metavar="IN", help="an image file or a folder of images")
    p.add_argument("out", metavar="OUT", help="output file, or folder when IN is a folder")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"tile size in LR px: memory grows with the tile, not the image ({DEFAULT_TILE}; "
                        "0: the whole image at once)")
    p.add_argument("--overlap", type=int, default=16,
                   help="context in LR px on each side of a tile, across which neighbours are feathered (16)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when visible")
    p.add_argument("--weights", choices=["params_ema", "params"], default="params_ema",
                   help="which generator weights of a training checkpoint (params_ema, else params when "
                        "the checkpoint has no EMA weights)")
    p.add_argument("--force", action="store_true", help="replace OUT if it is a non-empty folder (IN a folder)")
    p.set_defaults(fn=_upscale, parser=p)
