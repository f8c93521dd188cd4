"""Paired augmentation: the same flip/rotation on an HR patch and its LR patch.

The eight symmetries of the square (BasicSR's hflip + vflip + 90° rotation, each with p = 0.5) are
drawn from (seed, epoch, key): a sample gets the same transform in the same epoch whatever the
worker, rank or batch that reads it. The draw is ours (so it is a function of the sample alone);
the transform is albumentations' D4 group action.
"""
from __future__ import annotations

import numpy as np
from albumentations.augmentations.geometric.functional import d4

from pipeline.seeding import AUGMENT, rng_for

# code bits (hflip, vflip, then transpose) → albumentations' D4 element doing the same
D4_ELEMENTS = ("e", "h", "v", "r180", "t", "r90", "r270", "hvt")


def draw_dihedral(seed: int, epoch: int, key: str) -> int:
    """A code in 0..7: bit 0 = horizontal flip, bit 1 = vertical flip, bit 2 = transpose (then 90° rotation)."""
    return int(rng_for(AUGMENT, seed, epoch, key).integers(0, 8))


def dihedral(img: np.ndarray, code: int) -> np.ndarray:
    """Apply symmetry `code` (see `draw_dihedral`) to an (H, W, C) array; returns a contiguous copy.

    Raises:
        ValueError: code outside 0..7 or img not 3-D.
    """
    if not 0 <= code < 8:
        raise ValueError(f"code must be in 0..7, got {code}")
    if img.ndim != 3:
        raise ValueError(f"img must be (H, W, C), got shape {img.shape}")
    return np.ascontiguousarray(d4(img, D4_ELEMENTS[code]))


def augment_pair(hr: np.ndarray, lr: np.ndarray, code: int) -> tuple[np.ndarray, np.ndarray]:
    """The same symmetry on both images of a pair: (H, W, C) and (h, w, C) → same shapes, transposed if bit 2."""
    return dihedral(hr, code), dihedral(lr, code)
