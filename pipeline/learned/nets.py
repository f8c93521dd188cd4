"""Torch pieces both training methods share: batches as tensors, the generator's noise input, the
codec in the loop and the frequency split.

- Noise input: G sees the image and `noise` channels of N(0, 1) (`with_noise`). A degradation is
  partly random (sensor noise, grain); a deterministic G can only make noise out of the image's own
  texture, none on flat regions. In the preset step the channels come from the step's recorded seed
  (`op.degrade_lr`), so samples differ yet replay exactly.
- Codec in the loop (`jpeg_ste`): when the real LR shows a JPEG grid, the preset runs a real `jpeg`
  step after G, and training shows D jpeg(G(x)) at that quality: G learns what happens before the
  codec. A conv net cannot make quantised DCT coefficients on a fixed 8×8 grid; libjpeg can. The
  round trip has no gradient, so it is passed straight through (Bengio et al. 2013): forward is the
  decoded JPEG, backward the identity.
- Frequency split (Fritsche et al. 2019): `lowpass` is a Gaussian blur (reflect padding), the high
  frequencies are x − lowpass(x).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.degrade.jpeg import jpeg_roundtrip
from pipeline.train.usm import blur_separable, gaussian_kernel1d


def to_tensor(batch: np.ndarray) -> Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(batch.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0))


def draw_noise(rng: np.random.Generator, channels: int, h: int, w: int, batch: int = 1) -> Tensor:
    """(batch, channels, h, w) float32 N(0, 1) from `rng` (empty channels when 0)."""
    return torch.from_numpy(rng.standard_normal((batch, channels, h, w), dtype=np.float32))


def with_noise(x: Tensor, z: Tensor) -> Tensor:
    """G's input: the image's channels, then the noise channels."""
    return torch.cat([x, z], dim=1) if z.shape[1] else x


def jpeg_ste(x: Tensor, quality: int) -> Tensor:
    """What the preset writes, with a straight-through gradient: forward, x clipped and quantized to
    8 bits, then (quality > 0) a libjpeg round trip (`pipeline.degrade.jpeg`, as the preset's `jpeg`
    step); backward, the identity. The clipping matters: a residual that swings past 0 or 1 would
    keep the mean of the unclipped image while shifting the colours of the written one."""
    with torch.no_grad():
        q = (x.detach().clamp(0, 1) * 255).round()
        if quality:
            imgs = q.to(torch.uint8).permute(0, 2, 3, 1).numpy()
            coded = np.stack([jpeg_roundtrip(np.ascontiguousarray(img), quality) for img in imgs])
            q = torch.from_numpy(coded.transpose(0, 3, 1, 2).astype(np.float32))
        out = q / 255.0
    return x + (out - x).detach()


def gaussian_kernel(sigma: float) -> Tensor:
    """(k,) Gaussian of `sigma` px, k = 2·ceil(3σ) + 1, summing to 1: `lowpass`'s separable kernel."""
    return gaussian_kernel1d(2 * max(1, math.ceil(3 * sigma)) + 1, sigma)


def lowpass(x: Tensor, kernel: Tensor) -> Tensor:
    """Gaussian blur of every channel of (B, C, H, W), reflect padding (`train.usm.blur_separable`)."""
    return blur_separable(x, kernel)


YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def d_view(v: Tensor, kernel: Tensor) -> Tensor:
    """What the dsgan discriminator sees of (B, 3, H, W) RGB: the high frequencies (v − lowpass(v)) of
    Y, Cb, Cr, the chroma averaged over 2×2 blocks (and repeated back to H × W). JPEG decoders differ
    in how they upsample 4:2:0 chroma (repeat, as realsynth's `jpeg` step; smooth, as libjpeg's
    default): on 2×2 block means they agree, so D judges chroma noise and bleeding, not the decoder."""
    ycc = torch.einsum("ij,bjhw->bihw", YCC, v)
    high = ycc - lowpass(ycc, kernel)
    h, w = high.shape[-2:]
    chroma = F.avg_pool2d(high[:, 1:, :h - h % 2, :w - w % 2], 2)
    chroma = F.pad(F.interpolate(chroma, scale_factor=2, mode="nearest"), (0, w % 2, 0, h % 2), mode="replicate")
    return torch.cat([high[:, :1], chroma], dim=1)
