"""`realsynth upscale`: a generator checkpoint on a file or a folder of images; `realsynth export`: the
generator as an ONNX file."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.common import DEFAULT_TILE, check_out_dir

# pipeline.export.DEFAULT_OPSET, spelled out so `--help` does not import torch (a test keeps them equal)
DEFAULT_OPSET = 17


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


def _export(args: argparse.Namespace) -> int:
    from pipeline.export import export_checkpoint

    ckpt, out = Path(args.checkpoint), Path(args.out)
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; OUT is the .onnx file to write")
    if out.exists() or out.is_symlink():
        if ckpt.exists() and out.resolve() == ckpt.resolve():
            raise ValueError(f"{out}: is the checkpoint itself; choose another OUT")
        if not args.force:
            raise FileExistsError(f"{out}: exists; pass --force to replace it")
    info = export_checkpoint(ckpt, out, opset=args.opset, fp16=args.fp16, weights=args.weights)
    if info["weights"] != args.weights and info["weights"] != "state_dict":
        print(f"export: {ckpt} has no {args.weights}; using its {info['weights']}", file=sys.stderr)
    print(f"export: {info['name']} x{info['scale']} ({info['weights']}, {info['dtype']}, opset {info['opset']}) "
          f"-> {out}; onnxruntime vs PyTorch: max {info['max_diff'] * 255:.3f} grey levels")
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

    p = sub.add_parser("export", help="write a generator checkpoint as ONNX (dynamic H/W), checked with onnxruntime")
    p.add_argument("--checkpoint", required=True, help="generator weights: anything `upscale` loads")
    p.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, 11..20 ({DEFAULT_OPSET})")
    p.add_argument("--fp16", action="store_true", help="float16 input, weights and output (default: float32)")
    p.add_argument("--weights", choices=["params_ema", "params"], default="params_ema",
                   help="which generator weights of a training checkpoint, as for upscale")
    p.add_argument("--force", action="store_true", help="replace OUT.onnx if it exists")
    p.set_defaults(fn=_export, parser=p)
