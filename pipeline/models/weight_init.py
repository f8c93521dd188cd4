"""Weight initialisations of the papers the generators and discriminators come from.

- `scaled_kaiming_`: BasicSR's `default_init_weights` — Kaiming-normal weights (fan-in, ReLU gain)
  scaled by 0.1 and zero biases, on the convs of residual branches. Each branch then starts close to
  zero and each block close to the identity, which is what lets 23-block RRDBNets (ESRGAN §3.2,
  "smaller initialization") and MSRResNet train from scratch without blowing up.
- `pix2pix_normal_`: pix2pix / DCGAN — conv weights N(0, 0.02), batch-norm scales N(1, 0.02), zero biases.

Both draw from torch's global generator, so a seeded run builds the same weights.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

BASICSR_SCALE = 0.1
PIX2PIX_STD = 0.02


@torch.no_grad()
def scaled_kaiming_(convs: Iterable[nn.Module], scale: float = BASICSR_SCALE) -> None:
    """Kaiming-normal (fan-in) weights times `scale`, zero biases, for each conv in `convs`."""
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight)
        conv.weight.mul_(scale)
        if conv.bias is not None:
            conv.bias.zero_()


@torch.no_grad()
def pix2pix_normal_(net: nn.Module, std: float = PIX2PIX_STD) -> None:
    """N(0, std) for every conv and transposed conv weight, N(1, std) for batch-norm scales, zero biases."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
        else:
            continue
        if m.bias is not None:
            m.bias.zero_()
