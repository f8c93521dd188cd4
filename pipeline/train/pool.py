"""Two pools: Real-ESRGAN's training-pair pool (`PairPool`) and a pool of past fakes for D (`ImagePool`).

`PairPool`: a queue of recent pairs, shuffled, so a batch mixes many.

Real-ESRGAN degrades a whole batch with one resize/noise/JPEG draw and then passes it through a
queue of 180 pairs, so each batch it trains on mixes degradations. realsynth draws every recipe per
sample, but the pool also decorrelates batches built from neighbouring patches of the same photo,
and keeps the original's training dynamics. `pair_pool_size: 0` turns it off.

While the pool fills, batches pass through unchanged. Once full, each call shuffles the pool (with
torch's global RNG, which checkpoints save), returns its first B pairs and puts the new batch there.

`ImagePool` (Shrivastava et al. 2017, "history of refined images"; CycleGAN's `ImagePool`): D is
updated on a mix of the current fakes and older ones, so it keeps penalising what G produced a while
ago and G cannot oscillate between modes D has forgotten. `fake_pool_size: 0` turns it off.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from pipeline.seeding import stable_hash


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


class ImagePool:
    """CycleGAN's pool of `size` past fakes (0 = pass-through), with its own seeded generator.

    Per image of a batch: while the pool fills, the image is stored and returned; once full, with
    probability 0.5 a random stored image is returned and the new one takes its place, else the new
    one is returned. Draws come from a CPU `torch.Generator` seeded with `seed`, saved with the images
    by `state_dict` (a resumed run draws what an uninterrupted one would). Images of another shape
    (C, H, W) than those stored empty the pool first (e.g. a patch size that grows).

    Raises:
        ValueError: a negative size.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        if size < 0:
            raise ValueError(f"image pool size must be >= 0, got {size}")
        self.size = size
        self.images: Tensor | None = None
        self.count = 0
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        """images (B, C, H, W), detached fakes → a batch of the same shape, part of it from the pool."""
        if self.size == 0:
            return images
        if self.images is not None and self.images.shape[1:] != images.shape[1:]:
            self.images, self.count = None, 0
        if self.images is None:
            self.images = images.new_zeros((self.size, *images.shape[1:]))
        out = images.detach().clone()
        for i in range(images.shape[0]):
            if self.count < self.size:
                self.images[self.count] = images[i]
                self.count += 1
            elif torch.rand((), generator=self.generator).item() < 0.5:
                j = int(torch.randint(self.size, (), generator=self.generator))
                out[i] = self.images[j]
                self.images[j] = images[i]
        return out

    def state_dict(self) -> dict[str, Any]:
        """The filled part of the pool on the CPU (float: fakes are not 8-bit) and the generator's state."""
        images = None if self.images is None or not self.count else self.images[:self.count].detach().float().cpu()
        return {"count": self.count, "images": images, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.count = int(state["count"])
        self.generator.set_state(state["generator"])
        self.images = None
        if self.count:
            stored = state["images"].to(device)
            self.images = stored.new_zeros((self.size, *stored.shape[1:]))
            self.images[:self.count] = stored


def rank_image_pool(size: int, ckpt: Mapping[str, Any] | None, *, seed: int, rank: int,
                    device: torch.device) -> ImagePool:
    """This rank's pool of past fakes: draws seeded from (seed, rank), contents and generator restored from
    the checkpoint's `ranks[rank]["fake_pool"]` when resuming (a pool that was off there starts empty)."""
    pool = ImagePool(size, seed=stable_hash(f"fake_pool/{seed}/{rank}"))
    state = ckpt["ranks"][rank].get("fake_pool") if ckpt is not None else None
    if state is not None:
        pool.load_state_dict(state, device)
    return pool


def _pack(x: Tensor) -> Tensor:
    x = x.detach().float().cpu()
    q = (x * 255).round()
    return q.to(torch.uint8) if torch.equal(q / 255, x) else x


def _unpack(x: Tensor) -> Tensor:
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()
