"""Pixel losses between a prediction and its target, mean-reduced over every element.

    loss = build_pixel_loss("charbonnier")(net_g(lr), hr)
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

PixelLoss = Callable[[Tensor, Tensor], Tensor]


def _check_shapes(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pixel loss: pred and target shapes differ, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error. pred, target: same shape, e.g. (B, C, H, W). Returns a scalar.

    Raises:
        ValueError: if the shapes differ.
    """
    _check_shapes(pred, target)
    return F.l1_loss(pred, target)


def l2_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error (MSE). pred, target: same shape. Returns a scalar.

    Raises:
        ValueError: if the shapes differ.
    """
    _check_shapes(pred, target)
    return F.mse_loss(pred, target)


def charbonnier_loss(pred: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """Charbonnier (smooth L1): mean of sqrt((pred - target)² + eps). Returns a scalar.

    Raises:
        ValueError: if the shapes differ or eps <= 0.
    """
    _check_shapes(pred, target)
    if not eps > 0:
        raise ValueError(f"charbonnier eps must be positive, got {eps!r}")
    return torch.sqrt((pred - target) ** 2 + eps).mean()


PIXEL_LOSSES: dict[str, PixelLoss] = {"l1": l1_loss, "l2": l2_loss, "charbonnier": charbonnier_loss}


def build_pixel_loss(name: str) -> PixelLoss:
    """Return the pixel loss function `name`: 'l1', 'l2' (MSE) or 'charbonnier'.

    Raises:
        ValueError: on an unknown name.
    """
    if name not in PIXEL_LOSSES:
        raise ValueError(f"unknown pixel loss {name!r}; choose from {sorted(PIXEL_LOSSES)}")
    return PIXEL_LOSSES[name]
