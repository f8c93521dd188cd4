"""Time one Real-ESRGAN training step (G + D) of the loop, beside the same step written the plain way.

    python bench/train_step.py                          # x4plus: RRDBNet 23x64, U-Net SN D, batch 12, GT 256
    python bench/train_step.py --batch 2 --gt 128 --steps 2   # a CPU-sized probe
    python bench/train_step.py --modes fp32,bf16,bf16-cl,bf16-cl-compile   # on a GPU

One step = USM of the HR targets, G forward, L1 + GAN loss (perceptual too with --vgg FILE), G
backward and Adam step, D forward on real and fake, D backward and Adam step, EMA of G. "loop" runs
`pipeline.train.steps` (finiteness guards, one sync per step for them); "plain" is the same
arithmetic written inline as in BasicSR's `optimize_parameters`, without guards. Inputs are random
tensors (data loading is not timed). Prints a Markdown table; seconds per step are the median of
--steps timed steps after --warmup untimed ones.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from functools import partial

import torch
import torch.nn.functional as F

from pipeline.losses import PerceptualLoss, build_pixel_loss, d_loss, g_loss
from pipeline.models import build_discriminator, build_generator
from pipeline.train.ema import make_ema, update_ema
from pipeline.train.steps import Criteria, d_step, g_step, make_targets
from pipeline.train.usm import usm_sharp

MODES = {  # name: (bf16 autocast, channels_last, torch.compile)
    "fp32": (False, False, False),
    "fp32-cl": (False, True, False),
    "bf16": (True, False, False),
    "bf16-cl": (True, True, False),
    "bf16-cl-compile": (True, True, True),
}
USM = {"size": 51, "weight": 0.5, "threshold": 10.0}


def build(args, channels_last: bool, device: torch.device):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net_g = build_generator("rrdbnet", scale=4, num_feat=args.num_feat, num_block=args.num_block,
                            num_grow_ch=args.num_grow_ch).to(device, memory_format=fmt).train()
    net_d = build_discriminator("unet_sn", num_feat=args.d_feat).to(device, memory_format=fmt).train()
    perceptual = PerceptualLoss(weights=args.vgg).to(device, memory_format=fmt) if args.vgg else None
    return net_g, net_d, perceptual, fmt


def batch(args, device, fmt):
    lr = torch.rand(args.batch, 3, args.gt // 4, args.gt // 4, device=device).contiguous(memory_format=fmt)
    hr = torch.rand(args.batch, 3, args.gt, args.gt, device=device).contiguous(memory_format=fmt)
    return lr, hr


def loop_step(net_g, raw_g, net_d, raw_d, ema, opt_g, opt_d, crit, autocast, lr, hr):
    t = make_targets(hr, lr, usm=USM, pixel_usm=True, perceptual_usm=True, gan_usm=False, conditional=False)
    g = g_step(net_g, raw_d, opt_g, t, crit, autocast=autocast, grad_clip=0.0, ddp=False)
    d_step(net_d, opt_d, g.sr, t, crit, autocast=autocast, grad_clip=0.0, ddp=False, world_size=1)
    update_ema(ema, raw_g, 0.999)


def plain_step(net_g, raw_g, net_d, raw_d, ema, opt_g, opt_d, crit, autocast, lr, hr):
    hr_usm = usm_sharp(hr, **USM)
    for p in raw_d.parameters():
        p.requires_grad = False
    opt_g.zero_grad()
    with autocast():
        out = net_g(lr)
        loss = F.l1_loss(out.float(), hr_usm)
        if crit.perceptual is not None:
            loss = loss + crit.perceptual(out, hr_usm)
        loss = loss + 0.1 * g_loss("vanilla", raw_d(out).float())
    loss.backward()
    opt_g.step()
    for p in raw_d.parameters():
        p.requires_grad = True
    opt_d.zero_grad()
    with autocast():
        loss_d = d_loss("vanilla", net_d(hr).float(), net_d(out.detach()).float())
    loss_d.backward()
    opt_d.step()
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), raw_g.parameters()):
            p_ema.mul_(0.999).add_(p, alpha=0.001)


def run(args, mode: str, style: str, device: torch.device) -> float:
    bf16, channels_last, compiled = MODES[mode]
    raw_g, raw_d, perceptual, fmt = build(args, channels_last, device)
    ema = make_ema(raw_g)
    net_g = torch.compile(raw_g) if compiled else raw_g
    net_d = torch.compile(raw_d) if compiled else raw_d
    opt_g = torch.optim.Adam(raw_g.parameters(), lr=1e-4, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(raw_d.parameters(), lr=1e-4, betas=(0.9, 0.99))
    crit = Criteria(pixel=build_pixel_loss("l1"), pixel_weight=1.0, perceptual=perceptual, gan_kind="vanilla",
                    gan_weight=0.1, label_smoothing=0.0, gp_weight=10.0, clip=0.01)
    autocast = partial(torch.autocast, "cuda", dtype=torch.bfloat16) if bf16 else nullcontext
    step = loop_step if style == "loop" else plain_step
    lr, hr = batch(args, device, fmt)
    times = []
    for i in range(args.warmup + args.steps):
        sync(device)
        t0 = time.perf_counter()
        step(net_g, raw_g, net_d, raw_d, ema, opt_g, opt_d, crit, autocast, lr, hr)
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=12, help="per-GPU batch (Real-ESRGAN: 12)")
    ap.add_argument("--gt", type=int, default=256, help="HR patch size (Real-ESRGAN: 256)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile needs them)")
    ap.add_argument("--num-feat", type=int, default=64)
    ap.add_argument("--num-block", type=int, default=23)
    ap.add_argument("--num-grow-ch", type=int, default=32)
    ap.add_argument("--d-feat", type=int, default=64)
    ap.add_argument("--vgg", default=None, help="vgg19-dcbb9e9d.pth to include the perceptual loss")
    ap.add_argument("--modes", default=None, help=f"comma list of {list(MODES)}; default fp32 on CPU, all on CUDA")
    ap.add_argument("--styles", default="loop,plain")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = args.modes.split(",") if args.modes else (list(MODES) if device.type == "cuda" else ["fp32"])
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"RRDBNet {args.num_block}x{args.num_feat} (grow {args.num_grow_ch}) x4 + U-Net SN D {args.d_feat}, "
          f"batch {args.batch}, GT {args.gt}, perceptual {'on' if args.vgg else 'off'}, {name}, torch {torch.__version__}")
    print(f"median of {args.steps} steps after {args.warmup} warm-up\n")
    print("| mode | " + " | ".join(f"{s} s/step" for s in args.styles.split(",")) + " | loop HR px/s |")
    print("|---|" + "---|" * (len(args.styles.split(",")) + 1))
    for mode in modes:
        secs = [run(args, mode, style, device) for style in args.styles.split(",")]
        px = args.batch * args.gt * args.gt / secs[0]
        print(f"| {mode} | " + " | ".join(f"{s:.3f}" for s in secs) + f" | {px:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
