"""Validation during training: PSNR-Y of the EMA generator on fixed val batches, and an image grid.

PSNR follows BasicSR (and `pipeline.metrics.psnr`): 8-bit images (the net's output clamped to [0, 1]
and rounded), `crop_border = scale`, Y of MATLAB's YCbCr, averaged over images. The bicubic baseline
upsamples the LR with MATLAB's `imresize` (the SR papers' bicubic), so the two numbers compare.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.metrics import psnr
from pipeline.metrics.resize import imresize
from pipeline.report import grid


def to_images(x: Tensor) -> list[np.ndarray]:
    """(B, 3, H, W) float in [0, 1] → B (H, W, 3) uint8 RGB, clamped and rounded as BasicSR's tensor2img."""
    x = x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(img) for img in x]


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """(h, w, 3) uint8 → (scale·h, scale·w, 3) uint8 with MATLAB's bicubic imresize."""
    return np.clip(np.round(imresize(lr, float(scale))), 0, 255).astype(np.uint8)


def psnr_y(srs: Sequence[np.ndarray], hrs: Sequence[np.ndarray], scale: int) -> float:
    """Mean PSNR on Y over image pairs, crop_border = scale (BasicSR); inf-free (identical → capped at 100 dB)."""
    values = [min(psnr(sr, hr, crop_border=scale, y_channel=True), 100.0) for sr, hr in zip(srs, hrs)]
    return float(np.mean(values))


@torch.no_grad()
def upscale_batches(net: nn.Module, batches: Sequence[dict], *, device: torch.device,
                    autocast: Callable[[], AbstractContextManager],
                    memory_format: torch.memory_format = torch.contiguous_format) -> list[np.ndarray]:
    """net(lr) of every val batch as uint8 images (net in eval mode; its mode is restored)."""
    was_training = net.training
    net.eval()
    out: list[np.ndarray] = []
    try:
        for batch in batches:
            lr = batch["lr"].to(device).contiguous(memory_format=memory_format)
            with autocast():
                out += to_images(net(lr))
    finally:
        net.train(was_training)
    return out


def bicubic_psnr_y(batches: Sequence[dict], scale: int) -> float:
    hrs = [img for b in batches for img in to_images(b["hr"])]
    bics = [bicubic_upscale(img, scale) for b in batches for img in to_images(b["lr"])]
    return psnr_y(bics, hrs, scale)


def sample_grid(lrs: Sequence[np.ndarray], srs: Sequence[np.ndarray], hrs: Sequence[np.ndarray],
                scale: int) -> np.ndarray:
    """Rows of [bicubic | net | HR] at HR size (uint8 RGB), for the dvclive image log."""
    cell = max(max(hr.shape[:2]) for hr in hrs)
    rows = [[bicubic_upscale(lr, scale), sr, hr] for lr, sr, hr in zip(lrs, srs, hrs)]
    return grid(rows, cell=cell, nearest=True)
