"""The reference backend's fast paths against the plain formulas they replace.

- `unsharp_mask` (in place, uint8 mask): equal bit for bit to BasicSR's USMSharp spelled out with
  two float32 `cv2.GaussianBlur` calls.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.degrade import reference as ref


def _usmsharp(x: np.ndarray, size: int, weight: float, threshold: float) -> np.ndarray:
    sigma = ref.usm_sigma(size)
    blur = cv2.GaussianBlur(x, (size, size), sigma, borderType=cv2.BORDER_REFLECT_101)
    residual = x - blur
    mask = (np.abs(residual) * np.float32(255.0) > np.float32(threshold)).astype(np.float32)
    soft = cv2.GaussianBlur(mask, (size, size), sigma, borderType=cv2.BORDER_REFLECT_101)
    sharp = np.clip(x + np.float32(weight) * residual, 0.0, 1.0)
    return x + soft * (sharp - x)


@pytest.mark.parametrize("shape", [(96, 96), (57, 83), (256, 256)])
@pytest.mark.parametrize("size,weight,threshold", [(51, 0.5, 10.0), (21, 0.8, 4.0), (7, 0.5, 10.0)])
def test_unsharp_mask_equals_the_float_formula_bit_for_bit(shape, size, weight, threshold):
    rng = np.random.default_rng(sum(shape) + size)
    x = cv2.GaussianBlur(rng.random((*shape, 3)).astype(np.float32), (5, 5), 1.0)
    before = x.copy()
    out = ref.unsharp_mask(x, size, weight, threshold)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.array_equal(out, _usmsharp(x, size, weight, threshold))
    assert np.array_equal(x, before)  # the input is not written to

