"""CycleGAN's image pool: the discriminators see a mix of the newest fakes and up to `size` older
ones (Shrivastava et al. 2017; Zhu et al. 2017, size 50), which damps the oscillation between G and D.

Per image of a batch: while the pool is not full it is stored and passed on; once full, with odds
1:1 it is passed on as is, or swapped for a random stored fake (the new one takes its place). The
choices come from the generator the caller passes (the loop draws it from (seed, step)), and the
stored fakes are part of the training checkpoint (`state_dict`), so a resumed run sees the same pool.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class FakePool:
    """A pool of up to `size` past fakes (size 0: pass-through).

    Raises:
        ValueError: a negative size.
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"image pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[Tensor] = []

    def __call__(self, fakes: Tensor, rng: np.random.Generator) -> Tensor:
        """fakes: (B, C, H, W), detached here. Returns (B, C, H, W): per image, it or a stored one."""
        fakes = fakes.detach()
        if self.size == 0:
            return fakes
        out = []
        for img in fakes:
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif rng.random() < 0.5:
                out.append(img)
            else:
                i = int(rng.integers(self.size))
                out.append(self.images[i])
                self.images[i] = img.clone()
        return torch.stack(out)

    def state_dict(self) -> dict:
        return {"size": self.size, "images": torch.stack(self.images) if self.images else torch.empty(0)}

    def load_state_dict(self, state: dict) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"image pool size {self.size} does not match the checkpoint's {int(state['size'])}")
        self.images = [img.clone() for img in state["images"]] if state["images"].numel() else []
