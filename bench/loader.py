"""Benchmark: the PyTorch pair loader's throughput against an RRDBNet x4 training step, same machine.

    .venv/bin/python bench/loader.py [--workers 2] [--batch 16] [--patch 256] [--batches 40] [--model-batch 2]

Builds synthetic HR/LR sets (512 px HR tiles, photo-like PNGs), runs the shard stage on them
(timed), then measures samples/s of `infinite_batches` (batch 16, HR 256 px, LR 64 px) after a
warm-up, with 0 and `--workers` workers; then one RRDBNet x4 training step (L1, Adam; forward,
backward, update) at `--model-batch` LR 64 px patches, scaled to `--batch` (the step is linear in
the batch on a CPU; on a GPU, pass --model-batch 16 to time it directly). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import ShardConfig  # noqa: E402
from pipeline.data.loader import infinite_batches  # noqa: E402
from pipeline.shard import make_pairs  # noqa: E402
from pipeline.data.synthetic import write_synthetic_sets  # noqa: E402


def time_loader(train: Path, *, batch: int, workers: int, batches: int) -> float:
    """Samples/s of the endless stream, after 3 warm-up batches (worker start-up excluded)."""
    stream = infinite_batches(train, batch_size=batch, workers=workers, seed=0, pin_memory=False)
    for _ in range(3):
        next(stream)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(stream)
    dt = time.perf_counter() - t0
    stream.close()
    return batches * batch / dt


def time_rrdbnet(*, model_batch: int, lr_side: int, device: str) -> float | None:
    """Seconds per training sample of RRDBNet x4 (x4plus shape), or None if pipeline.models is missing."""
    try:
        from pipeline.models import build_generator
    except ImportError:
        return None
    net_g = build_generator("rrdbnet", scale=4).to(device)
    opt = torch.optim.Adam(net_g.parameters(), lr=1e-4)
    lr = torch.rand(model_batch, 3, lr_side, lr_side, device=device)
    hr = torch.rand(model_batch, 3, 4 * lr_side, 4 * lr_side, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(net_g(lr), hr).backward()
        opt.step()

    step()  # warm-up (allocations, cuDNN autotune)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / model_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=256, help="HR patch side (px)")
    ap.add_argument("--batches", type=int, default=40, help="timed batches per loader run")
    ap.add_argument("--model-batch", type=int, default=2, help="batch of the timed RRDBNet step (0: skip)")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        root = Path(tmp)
        hr, lr = write_synthetic_sets(root, photos=11, val_photos=1, tiles_per_photo=2, tile=2 * args.patch, scale=4,
                                      variants=2, shard_bytes=64 << 20)
        t0 = time.perf_counter()
        stats = make_pairs(hr, lr, root / "pairs", ShardConfig(patch_size=args.patch, patches_per_pair=4,
                                                                 min_shards=4, workers=args.workers), seed=0, scale=4)
        shard_s = time.perf_counter() - t0
        train = root / "pairs" / "train"
        png_kb = sum(p.stat().st_size for p in train.glob("*.tar")) / stats.train_patches / 1024
        rates = {w: time_loader(train, batch=args.batch, workers=w, batches=args.batches) for w in sorted({0, args.workers})}
    per_sample = time_rrdbnet(model_batch=args.model_batch, lr_side=args.patch // 4, device=device) if args.model_batch else 0.0

    print(file=sys.stderr, flush=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, device {device}, load average {os.getloadavg()[0]:.1f} at start of report")
    print(f"shard stage: {stats.used} pairs -> {stats.train_patches + stats.val_patches} patches of {args.patch} px in "
          f"{shard_s:.1f} s ({(stats.train_patches + stats.val_patches) / shard_s:.0f} patches/s, {args.workers} workers); "
          f"{png_kb:.0f} kB per stored sample (HR + LR PNG + json)")
    print()
    print("| what | batch | workers | samples/s | s per batch |")
    print("|---|---|---|---|---|")
    for w, rate in rates.items():
        print(f"| PyTorch pair loader, HR {args.patch} px | {args.batch} | {w} | {rate:.0f} | {args.batch / rate:.3f} |")
    if per_sample is None:
        print("| RRDBNet x4 train step | - | - | - | skipped: pipeline.models not available |")
    elif per_sample:
        scaled = "" if args.model_batch == args.batch else f" (timed at batch {args.model_batch}, scaled)"
        print(f"| RRDBNet x4 train step on {device}, LR {args.patch // 4} px{scaled} | {args.batch} | - | "
              f"{1 / per_sample:.2f} | {per_sample * args.batch:.2f} |")


if __name__ == "__main__":
    main()
