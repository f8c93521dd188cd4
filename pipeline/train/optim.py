"""The optimizers: Adam for G (every recipe) and, by `optim_d`, Adam or RMSProp for D.

    opt_d = build_optimizer(net_d.parameters(), "rmsprop", lr=5e-5, betas=(0.9, 0.99), alpha=0.99)

RMSProp is the WGAN paper's critic optimizer (Arjovsky et al. 2017, Algorithm 1: RMSProp, lr 5e-5,
weights clipped to [-0.01, 0.01]): with Adam's momentum the clipped critic's training was unstable.
WGAN-GP went back to Adam (β = (0, 0.9)), so only `gan.kind: wgan` defaults to RMSProp (config.WGAN_CRITIC).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

OPTIMIZERS = ("adam", "rmsprop")


def build_optimizer(params: Iterable[torch.nn.Parameter], name: str, *, lr: float, betas: tuple[float, float],
                    alpha: float = 0.99) -> torch.optim.Optimizer:
    """`name` 'adam' (with `betas`) or 'rmsprop' (with `alpha`, no momentum, as the WGAN paper).

    Raises:
        ValueError: an unknown name.
    """
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=alpha)
    raise ValueError(f"unknown optimizer {name!r}; choose from {list(OPTIMIZERS)}")
