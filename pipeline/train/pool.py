"""Real-ESRGAN's training-pair pool: a queue of recent pairs, shuffled, so a batch mixes many.

Real-ESRGAN degrades a whole batch with one resize/noise/JPEG draw and then passes it through a
queue of 180 pairs, so each batch it trains on mixes degradations. realsynth draws every recipe per
sample, but the pool also decorrelates batches built from neighbouring patches of the same photo,
and keeps the original's training dynamics. `pair_pool_size: 0` turns it off.

While the pool fills, batches pass through unchanged. Once full, each call shuffles the pool (with
torch's global RNG, which checkpoints save), returns its first B pairs and puts the new batch there.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class PairPool:
    """A pool of `size` (lr, hr) pairs; `size` must be a multiple of the batch size (0 = pass-through).

    Raises:
        ValueError: a negative size; (in `__call__`) a batch size that does not divide it.
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"pair pool size must be >= 0, got {size}")
        self.size = size
        self.lr: Tensor | None = None
        self.hr: Tensor | None = None
        self.count = 0

    def __call__(self, lr: Tensor, hr: Tensor) -> tuple[Tensor, Tensor]:
        """lr (B, C, h, w), hr (B, C, H, W) → a batch of the same shapes from the pool."""
        if self.size == 0:
            return lr, hr
        b = lr.shape[0]
        if self.size % b:
            raise ValueError(f"pair pool size {self.size} is not a multiple of the batch size {b}")
        if self.lr is None:
            self.lr = lr.new_zeros((self.size, *lr.shape[1:]))
            self.hr = hr.new_zeros((self.size, *hr.shape[1:]))
        assert self.hr is not None
        if self.count < self.size:
            self.lr[self.count:self.count + b] = lr
            self.hr[self.count:self.count + b] = hr
            self.count += b
            return lr, hr
        perm = torch.randperm(self.size).to(self.lr.device)
        self.lr, self.hr = self.lr[perm], self.hr[perm]
        out_lr, out_hr = self.lr[:b].clone(), self.hr[:b].clone()
        self.lr[:b], self.hr[:b] = lr, hr
        return out_lr, out_hr

    def state_dict(self) -> dict[str, Any]:
        """The filled part of the pool on the CPU, as uint8 when that is lossless (8-bit images), else float."""
        if self.lr is None or self.count == 0:
            return {"count": 0, "lr": None, "hr": None}
        return {"count": self.count, "lr": _pack(self.lr[:self.count]), "hr": _pack(self.hr[:self.count])}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.count = int(state["count"])
        if self.count == 0:
            self.lr = self.hr = None
            return
        lr, hr = _unpack(state["lr"]).to(device), _unpack(state["hr"]).to(device)
        self.lr = lr.new_zeros((self.size, *lr.shape[1:]))
        self.hr = hr.new_zeros((self.size, *hr.shape[1:]))
        self.lr[:self.count], self.hr[:self.count] = lr, hr


def _pack(x: Tensor) -> Tensor:
    x = x.detach().float().cpu()
    q = (x * 255).round()
    return q.to(torch.uint8) if torch.equal(q / 255, x) else x


def _unpack(x: Tensor) -> Tensor:
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()
