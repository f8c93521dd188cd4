"""Small layers shared by the discriminators.

- `MinibatchStdDev` (ProGAN, Karras et al. 2018, §3): one extra channel holding how much the images of
  a group differ, so D can see a batch with too little variety (mode collapse) and G is pushed to vary.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

MBSTD_GROUP = 4  # ProGAN's group size


def _group_size(batch: int, group_size: int) -> int:
    """The largest divisor of `batch` not above `group_size` (ProGAN uses min(4, B) and needs it to divide B)."""
    return max(d for d in range(1, min(group_size, batch) + 1) if batch % d == 0)


def minibatch_stddev(x: Tensor, group_size: int = MBSTD_GROUP, eps: float = 1e-8) -> Tensor:
    """Append ProGAN's minibatch standard deviation to `x` as one more channel.

    Image i belongs to group i mod (B / G) (ProGAN's reshape), G = the largest divisor of B up to
    `group_size`. Per group: the standard deviation over its G images of every feature at every pixel
    (biased, + eps under the root), averaged over channels and pixels to one number, filled in as a
    constant channel for each image of the group. A batch of identical images gets sqrt(eps).

    x: (B, C, H, W) → (B, C + 1, H, W), same dtype (the statistic is computed in float32).

    Raises:
        ValueError: x is not 4-D or group_size < 1.

    Example:
        >>> minibatch_stddev(torch.zeros(4, 8, 5, 5)).shape
        torch.Size([4, 9, 5, 5])
    """
    if x.ndim != 4:
        raise ValueError(f"minibatch_stddev needs (B, C, H, W) input, got shape {tuple(x.shape)}")
    if group_size < 1:
        raise ValueError(f"minibatch_stddev group_size must be >= 1, got {group_size}")
    b, c, h, w = x.shape
    g = _group_size(b, group_size)
    y = x.float().reshape(g, b // g, c, h, w)
    std = (y.var(dim=0, unbiased=False) + eps).sqrt()        # (B/G, C, H, W)
    stat = std.mean(dim=(1, 2, 3)).reshape(1, b // g, 1, 1, 1)
    stat = stat.expand(g, b // g, 1, h, w).reshape(b, 1, h, w)
    return torch.cat([x, stat.to(x.dtype)], dim=1)


class MinibatchStdDev(nn.Module):
    """`minibatch_stddev` as a layer (no parameters, nothing in the state dict); see the function."""

    def __init__(self, group_size: int = MBSTD_GROUP) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"minibatch_stddev group_size must be >= 1, got {group_size}")
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        return minibatch_stddev(x, self.group_size)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"
