"""Exponential moving average of the generator weights (`params_ema`), as BasicSR's `model_ema`."""
from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(net: nn.Module) -> nn.Module:
    """A frozen copy of `net` in eval mode, to be updated by `update_ema`."""
    ema = copy.deepcopy(net).eval()
    ema.requires_grad_(False)
    return ema


def ema_decay_at(step: int, decay: float, warmup: bool = True) -> float:
    """The decay for the EMA update after optimisation step `step` (1-based).

    With warm-up (timm's model EMA, gamma 1, power 2/3) it is `min(decay, 1 - (1 + step)^(-2/3))`:
    0.37 after step 1, 0.94 after step 60, `decay` 0.999 from step ~31,600 on. A constant 0.99 would
    leave 55 % of the random initialisation in params_ema after 60 steps; this leaves 6e-5.
    """
    if not warmup:
        return decay
    return min(decay, 1.0 - (1.0 + step) ** (-2.0 / 3.0))


@torch.no_grad()
def update_ema(net_ema: nn.Module, net: nn.Module, decay: float) -> None:
    """p_ema ← decay·p_ema + (1 - decay)·p for every parameter; buffers (BatchNorm statistics) copied.

    decay 0 makes net_ema a copy of net. Both nets must have the same architecture (unwrapped).

    Raises:
        ValueError: if decay is outside [0, 1).
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema decay must be in [0, 1), got {decay}")
    ema_params = list(net_ema.parameters())
    params = [p.detach() for p in net.parameters()]
    if len(ema_params) != len(params):
        raise ValueError(f"ema net has {len(ema_params)} parameters, net has {len(params)}")
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(net_ema.buffers(), net.buffers()):
        b_ema.copy_(b)
