"""`realsynth benchmark | score`: a fixed, seeded test set, and the scores of any checkpoints on it."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import FORCE_HELP, PRESET_NAMES, check_out_dir, check_out_file


def _benchmark(args: argparse.Namespace) -> int:
    from pipeline.cli import version
    from pipeline.degrade.benchmark import MANIFEST, make_benchmark
    from pipeline.io.atomic import atomic_dir
    from pipeline.parallel import keep_freed_memory

    check_out_dir(args.out, args.force, (args.input,), recursive=True)
    keep_freed_memory()
    with atomic_dir(args.out) as tmp:
        m = make_benchmark(Path(args.input), tmp, preset=args.preset, seed=args.seed, scale=args.scale,
                           split=args.split, workers=args.workers, version=version())
    print(f"benchmark: {m['samples']} pairs ({m['preset']}, x{m['scale']}, seed {m['seed']}, reference backend) "
          f"in {len(m['shards'])} shards -> {args.out}; {m['skipped']} skipped; identity: "
          f"{Path(args.out) / MANIFEST}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from pipeline.evaluate.score import score_set, scores_json
    from pipeline.io.atomic import atomic_write_bytes

    out = check_out_file(args.out, args.force, "--out names the scores.json file to write")
    scores, notes = score_set(Path(args.set), args.checkpoint, device=args.device, weights=args.weights,
                              tile=args.tile, crop_border=args.crop_border, niqe_params=args.niqe_params,
                              lpips_weights=args.lpips_weights)
    for line in notes:
        print(f"score: {line}")
    atomic_write_bytes(out, scores_json(scores).encode())
    from pipeline.evaluate.outputs import metrics_table
    print(metrics_table(scores, {"bicubic": "bicubic"}))  # the baseline first, then by name
    print(f"score: {len(scores)} models -> {out}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="HR images -> a fixed, seeded test set of HR/LR pairs (same bytes every run)")
    p.add_argument("input", metavar="HR", help="a folder of images (recursive) or an HR shard set")
    p.add_argument("out", metavar="OUT", help="new benchmark set directory (written atomically)")
    p.add_argument("--preset", default="realesrgan-x4plus", metavar="P",
                   help=f"{' | '.join(PRESET_NAMES)} (realesrgan-x4plus)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="recipes depend only on (seed, image key) (0)")
    p.add_argument("--scale", type=int, metavar="S", help="SR factor (the preset's: 2 for realesrgan-x2plus, else 4)")
    p.add_argument("--split", choices=["all", "train", "val"], default="all",
                   help="HR shard set input: only the tiles of this split (all)")
    p.add_argument("--workers", type=int, default=0, metavar="W",
                   help="processes (0: all cores); the bytes do not depend on it")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(fn=_benchmark, parser=p)

    p = sub.add_parser("score", help="bicubic and any generator checkpoints on a pair set -> scores.json")
    p.add_argument("set", metavar="SET", help="a benchmark set (or any set with hr.png and lr.png members)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="C",
                   help="a generator checkpoint, repeatable: ours, BasicSR / Real-ESRGAN's, or any architecture "
                        "spandrel detects (SwinIR, HAT, RCAN, SPAN, ...); named by its file stem")
    p.add_argument("--out", required=True, metavar="SCORES.json",
                   help="write {bicubic|<checkpoint stem>: {psnr_rgb, psnr_y, ssim_rgb, ssim_y, niqe?, lpips?}} here")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when visible")
    p.add_argument("--weights", choices=["params_ema", "params"], default="params_ema",
                   help="which weights of a training checkpoint (params_ema, else params)")
    p.add_argument("--tile", type=int, default=0, metavar="T",
                   help="run nets on T px LR tiles (16 px overlap) to bound memory (0: whole images; tiling "
                        "changes the outputs of transformers such as SwinIR)")
    p.add_argument("--crop-border", type=int, default=-1, metavar="N",
                   help="px cut from each side before PSNR/SSIM/NIQE (-1: the scale, as BasicSR)")
    p.add_argument("--niqe-params", metavar="FILE",
                   help="NIQE pristine model .npz ($REALSYNTH_NIQE_PARAMS, else models/weights/niqe_pris_params.npz; "
                        "NIQE is left out without it)")
    p.add_argument("--lpips-weights", metavar="DIR",
                   help="folder with torchvision's alexnet-owt-7be5be79.pth (the torch hub cache; LPIPS is "
                        "left out without it; nothing is downloaded)")
    p.add_argument("--force", action="store_true", help="replace an existing scores file")
    p.set_defaults(fn=_score, parser=p)
