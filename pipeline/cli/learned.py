"""`realsynth learn-degradation`: learn a degrader from unpaired real LR photos (DSGAN or CycleGAN)."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pipeline.cli.common import FORCE_HELP, check_out_dir


def _out_dir(out: Path, force: bool, inputs: tuple[Path, ...]) -> None:
    """Start over with --force; resume an unfinished run (OUT/train.pth, no degrader.pth); else refuse
    a non-empty OUT as every command does."""
    from pipeline.learned.train import DEGRADER, TRAIN_STATE

    unfinished = (out / TRAIN_STATE).is_file() and not (out / DEGRADER).exists()
    check_out_dir(out, force or unfinished, inputs, recursive=True)
    if force and (out.exists() or out.is_symlink()):
        shutil.rmtree(out) if out.is_dir() and not out.is_symlink() else out.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _learn(args: argparse.Namespace) -> int:
    from pipeline.config import check_scale
    from pipeline.degrade.preset import dump_preset, parse_preset
    from pipeline.io.atomic import atomic_write_text
    from pipeline.learned.op import learned_preset, load_degrader
    from pipeline.learned.report import write_report
    from pipeline.learned.data import real_jpeg_quality
    from pipeline.learned.train import DEGRADER, LearnConfig, learn_degradation

    check_scale("--scale", args.scale)
    for path in (args.real_lr, args.hr):
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: not a folder (expected a folder of images or an HR shard set)")
    quality = real_jpeg_quality(args.real_lr) if args.jpeg == "auto" else 0 if args.jpeg == "off" else _quality(args.jpeg)
    if args.jpeg == "auto":
        print("learn-degradation: --jpeg auto: " + (f"the real LR shows a JPEG grid, quality {quality}"
                                                     if quality else "no JPEG grid in the real LR, no codec"))
    cfg = LearnConfig(scale=args.scale, interp=args.interp, method=args.method, crop=args.crop,
                      batch_size=args.batch_size, steps=args.steps, save_every=args.save_every, seed=args.seed,
                      num_feat=args.num_feat, num_block=args.num_block, noise=args.noise, jpeg_quality=quality,
                      lambda_adv=args.adv, lambda_identity=args.identity, pool_size=args.pool,
                      holdout=args.holdout, eval_every=args.eval_every, strength_range=tuple(args.strength_range))
    out = Path(args.out)
    _out_dir(out, args.force, (args.real_lr, args.hr))
    summary = learn_degradation(args.real_lr, args.hr, out, cfg, log=print)
    net, _ = load_degrader(out / DEGRADER)
    data = learned_preset(str((out / DEGRADER).resolve()), cfg.scale, cfg.interp, cfg.strength_range,
                          jpeg_quality=cfg.jpeg_quality)
    atomic_write_text(out / "preset.yaml", dump_preset(parse_preset(data, f"{out / 'preset.yaml'}: ")))
    write_report(out, cfg, summary, net, real_lr=args.real_lr, hr=args.hr)
    if summary.selected is not None:
        print(f"learn-degradation: selected step {summary.selected} of {summary.steps} on the held-out bands"
              + (": G never beat resize + codec alone, so the degrader is G at step 0, the identity"
                 if summary.selected == 0 else ""))
    print(f"learn-degradation: {summary.steps} steps -> {out / DEGRADER}; preset {out / 'preset.yaml'}; "
          f"report {out / 'report.md'}")
    return 0


def _quality(text: str) -> int:
    """--jpeg Q: an integer in [1, 100]. Raises ValueError naming the flag."""
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise ValueError(f"--jpeg: expected auto, off or a libjpeg quality in [1, 100], got {text!r}")
    return int(text)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("learn-degradation", help="real LR photos + HR photos -> a learned degrader (DSGAN or CycleGAN)")
    p.add_argument("real_lr", metavar="REAL_LR", type=Path, help="folder of real LR photos (read recursively)")
    p.add_argument("out", metavar="OUT", help="run folder: degrader.pth, preset.yaml, report.md, train.pth "
                                              "(an unfinished run there is resumed)")
    p.add_argument("--hr", required=True, type=Path, metavar="HR",
                   help="folder of HR photos or an HR shard set (other scenes than REAL_LR are fine)")
    p.add_argument("--scale", type=int, default=4, metavar="S", help="SR factor: HR is downscaled by it (4)")
    p.add_argument("--interp", default="area", choices=("area", "bilinear", "bicubic"),
                   help="HR downscale, and the preset's resize to LR (area)")
    p.add_argument("--method", default="dsgan", choices=("dsgan", "cyclegan"),
                   help="dsgan: one generator, low-frequency L1 + GAN on the high frequencies (default); "
                        "cyclegan: two generators, cycle + identity L1")
    p.add_argument("--jpeg", default="auto", metavar="auto|off|Q",
                   help="the codec in the loop and the preset's final jpeg step: auto = the real LR's quality "
                        "when it shows a JPEG grid (auto)")
    p.add_argument("--noise", type=int, default=3, metavar="N", help="noise input channels of G (3; 0: none)")
    p.add_argument("--steps", type=int, default=400, metavar="N", help="training steps (400)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the nets and the crops (0)")
    p.add_argument("--crop", type=int, default=32, metavar="C", help="LR crop size, px (32)")
    p.add_argument("--batch-size", type=int, default=4, metavar="B", help="crops per domain per step (4)")
    p.add_argument("--save-every", type=int, default=50, metavar="N", help="steps between train.pth saves (50)")
    p.add_argument("--holdout", type=float, default=0.25, metavar="F",
                   help="share of every REAL_LR and HR image held out as a band along one edge (drawn per "
                        "image from the seed; no training crop touches it) to pick the best step by "
                        "fingerprint distance, step 0 (no G) included (0.25; 0: no selection, the last step)")
    p.add_argument("--eval-every", type=int, default=50, metavar="N", help="steps between selection scores (50)")
    p.add_argument("--num-feat", type=int, default=32, metavar="F", help="generator width (32)")
    p.add_argument("--num-block", type=int, default=4, metavar="N", help="generator ResNet blocks (4)")
    p.add_argument("--adv", type=float, default=0.002, metavar="W",
                   help="dsgan: adversarial weight against the low-frequency L1's 1 (0.002)")
    p.add_argument("--identity", type=float, default=0.5, metavar="W",
                   help="cyclegan: identity loss weight, x the cycle weight 10 (0.5; 0 disables)")
    p.add_argument("--pool", type=int, default=50, metavar="N", help="image pool of past fakes (50; 0 disables)")
    p.add_argument("--strength-range", type=float, nargs=2, default=(0.8, 1.0), metavar=("LO", "HI"),
                   help="the preset's per-sample strength α: LR = x + α·residual (0.8 1.0)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(fn=_learn, parser=p)
