"""Benchmark: the online-degradation loader against what a training step consumes, same machine.

    python bench/online.py --hr data/hr --pairs data/pairs/train [--workers 0,2] [--batches 30]
    python bench/online.py --hr data/hr --patch 256 --batch 12 --ppp 1 --workers 0,8   # x4plus-like, a GPU box

Times patches/s of `online_batches` (the `degrade` preset, reference backend unless --backend) on the HR
tiles with each worker count, after 2 warm-up batches; the offline pair loader on --pairs for comparison;
and the training consumption of one `g_step` (L1, Adam, EMA) of the demo generator (RRDBNet 32 features,
2 blocks) at the same batch and patch, in patches/s. Prints a Markdown table and the ratio
loader / training; a ratio below 1 means the loader starves the step.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data.loader import infinite_batches  # noqa: E402
from pipeline.data.online import OnlineSpec, online_batches  # noqa: E402
from pipeline.degrade import preset_settings  # noqa: E402
from pipeline.models import build_generator  # noqa: E402
from pipeline.train.ema import make_ema, update_ema  # noqa: E402
from pipeline.train.steps import Criteria, g_step, make_targets  # noqa: E402
from pipeline.losses import build_pixel_loss  # noqa: E402

DEMO_G = {"num_feat": 32, "num_block": 2, "num_grow_ch": 16}


def rate(stream, *, batch: int, batches: int) -> float:
    """Patches/s of a stream after 2 warm-up batches (worker start-up excluded)."""
    try:
        for _ in range(2):
            next(stream)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(stream)
        return batches * batch / (time.perf_counter() - t0)
    finally:
        stream.close()


def train_rate(*, batch: int, patch: int, steps: int, opts: dict) -> float:
    """Patches/s that a training step of the generator consumes (median step time of `steps`)."""
    net = build_generator("rrdbnet", scale=4, **opts).train()
    ema = make_ema(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.99))
    crit = Criteria(pixel=build_pixel_loss("l1"), pixel_weight=1.0, perceptual=None, gan_kind="vanilla",
                    gan_weight=0.0, label_smoothing=0.0, gp_weight=0.0, clip=0.0)
    hr = torch.rand(batch, 3, patch, patch)
    lr = torch.nn.functional.interpolate(hr, scale_factor=0.25, mode="area")
    t = make_targets(hr, lr, usm={"size": 51, "weight": 0.5, "threshold": 10.0}, pixel_usm=False,
                     perceptual_usm=False, gan_usm=False, conditional=False)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        g_step(net, None, opt, t, crit, autocast=nullcontext, grad_clip=0.0, ddp=False)
        update_ema(ema, net, 0.99)
        if i:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hr", type=Path, default=Path("data/hr"))
    ap.add_argument("--pairs", type=Path, default=None, help="an offline pairs train set to compare with")
    ap.add_argument("--preset", default="realesrgan-x4plus")
    ap.add_argument("--backend", default="reference", choices=("reference", "dali-cpu", "dali-gpu"))
    ap.add_argument("--workers", default="0,2", help="comma-separated worker counts")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=64, help="HR patch side (shard.patch_size)")
    ap.add_argument("--ppp", type=int, default=1, help="windows per degraded tile (training uses WINDOWS_PER_TILE, 1)")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the training step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = OnlineSpec(args.hr, preset_settings(args.preset), 4, args.patch, args.ppp, args.backend)
    rows = []
    for w in [int(x) for x in args.workers.split(",")]:
        r = rate(online_batches(spec, batch_size=args.batch, workers=w, seed=0, pin_memory=False),
                 batch=args.batch, batches=args.batches)
        rows.append((f"online loader ({args.preset}, {args.backend}), {args.ppp} windows per tile", w, r))
        if args.pairs is not None:
            r = rate(infinite_batches(args.pairs, batch_size=args.batch, workers=w, seed=0, pin_memory=False),
                     batch=args.batch, batches=args.batches)
            rows.append(("offline pair loader (data/pairs/train)", w, r))
    consume = train_rate(batch=args.batch, patch=args.patch, steps=args.steps, opts=DEMO_G)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"HR set {args.hr}, batch {args.batch}, HR patch {args.patch} px\n")
    print("| what | workers | patches/s | loader / training |")
    print("|---|---|---|---|")
    for what, w, r in rows:
        print(f"| {what} | {w} | {r:.0f} | {r / consume:.2f} |")
    print(f"| training step, RRDBNet {DEMO_G['num_feat']}x{DEMO_G['num_block']} (demo), L1 + Adam + EMA | - | "
          f"{consume:.0f} | 1 |")


if __name__ == "__main__":
    main()
