"""The reference backend's fast paths against the plain formulas they replace.

- `unsharp_mask` (in place, uint8 mask): equal bit for bit to BasicSR's USMSharp spelled out with
  two float32 `cv2.GaussianBlur` calls;
- `poisson_counts` (inversion with a guide table): an exact Poisson sampler, so it is checked by
  statistics against `scipy.stats.poisson` (per-level mean and variance within 5 standard errors,
  a chi-square test of the frequencies at p > 1e-4) and for being a function of the seed alone;
- `blur` with a large kernel (OpenCV's DFT path) run on tiles: the same values as one
  `cv2.filter2D` call (both are float64 sums rounded to float32; at most one float32 ulp apart).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import stats

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


@pytest.mark.parametrize("vals", [1, 2, 16, 256])
def test_poisson_tables_are_cdfs_and_guides(vals):
    cdf, cells, m = ref._poisson_tables(vals)
    cdf = cdf.reshape(256, m)
    assert np.all(np.diff(cdf, axis=1) >= 0) and np.all(cdf[:, -1] == 1.0)
    lam = np.arange(256) * vals / 255
    ks = np.arange(m - 1)  # the last column is set to 1
    np.testing.assert_allclose(cdf[:, :-1], stats.poisson.cdf(ks[None, :], lam[:, None]), rtol=1e-12, atol=1e-300)
    assert np.all(stats.poisson.sf(m - 2, lam) < 1e-30)
    cells = cells.reshape(256, ref.POISSON_GUIDE)
    lo, hi = cells & 0xFFFF, (cells & 0xFFFF) + (cells >> 16)
    assert np.all(hi[:, :-1] == lo[:, 1:]) and hi.max() < m  # brackets tile each level's counts
    bounds = np.arange(ref.POISSON_GUIDE) / ref.POISSON_GUIDE  # lo = min{k : cdf(k) > b/G}
    rows = np.arange(256)[:, None]
    assert np.all(cdf[rows, lo] > bounds) and np.all(np.where(lo > 0, cdf[rows, np.maximum(lo - 1, 0)] <= bounds, True))


@pytest.mark.parametrize("vals", [1, 16, 256])
def test_poisson_counts_are_the_plain_inversion_of_each_uniform(vals):
    levels = np.random.default_rng(vals).integers(0, 256, (61, 67, 3)).astype(np.uint8)
    cdf, _, m = ref._poisson_tables(vals)
    u = np.random.default_rng(99).random(levels.size)
    expected = [np.searchsorted(cdf[lv * m:(lv + 1) * m], x, side="right") for lv, x in zip(levels.ravel().tolist(), u)]
    assert np.array_equal(ref.poisson_counts(levels, vals, seed=99).ravel(), expected)


@pytest.mark.parametrize("vals,levels", [(256, (0, 1, 3, 40, 128, 200, 255)), (4, (0, 17, 64, 255)), (1, (255,))])
def test_poisson_counts_follow_the_poisson_law_per_level(vals, levels):
    n = 40_000
    img = np.repeat(np.array(levels, np.uint8), n).reshape(len(levels), n)
    counts = ref.poisson_counts(img, vals, seed=11)
    assert counts.shape == img.shape and counts.dtype == np.int32
    for row, level in zip(counts, levels):
        lam = level * vals / 255
        if lam == 0:
            assert np.all(row == 0)
            continue
        assert abs(row.mean() - lam) < 5 * np.sqrt(lam / n)
        assert abs(row.var() - lam) < 5 * lam * np.sqrt(2 / n) + 5 * np.sqrt(lam / n)
        # chi-square over the central counts (expected >= 5 each), the tails pooled at both ends
        ks = np.arange(row.max() + 2)
        expected = stats.poisson.pmf(ks, lam) * n
        keep = expected >= 5
        lo, hi = ks[keep][0], ks[keep][-1]
        observed = np.bincount(np.clip(row, lo, hi) - lo, minlength=hi - lo + 1)
        probs = stats.poisson.pmf(np.arange(lo, hi + 1), lam)
        probs[0] = stats.poisson.cdf(lo, lam)
        probs[-1] = stats.poisson.sf(hi - 1, lam)
        assert stats.chisquare(observed, probs / probs.sum() * n).pvalue > 1e-4


def test_poisson_counts_depend_on_the_seed_alone():
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, (37, 41, 3)).astype(np.uint8)
    a = ref.poisson_counts(levels, 256, seed=2 ** 62 + 5)
    assert np.array_equal(a, ref.poisson_counts(levels.copy(), 256, seed=2 ** 62 + 5))
    assert not np.array_equal(a, ref.poisson_counts(levels, 256, seed=6))
    ref._poisson_tables.cache_clear()  # a fresh process builds the same tables
    assert np.array_equal(a, ref.poisson_counts(levels, 256, seed=2 ** 62 + 5))



@pytest.mark.parametrize("shape,ksize", [((256, 256, 3), 13), ((256, 256, 3), 21), ((300, 270, 3), 17),
                                         ((240, 512, 3), 19), ((256, 256, 1), 15), ((256, 256), 15)])
def test_tiled_large_kernel_blur_equals_one_filter2d_call(shape, ksize):
    ny, nx = (ref._dft_tiles(n, ksize) for n in shape[:2])
    assert ny * nx > 1  # these shapes do take the tiled path
    rng = np.random.default_rng(ksize)
    x = rng.random(shape).astype(np.float32)
    kernel = rng.random((ksize, ksize)).astype(np.float32)
    kernel /= kernel.sum()
    whole = cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    tiled = ref.blur(x, kernel)
    assert tiled.shape == whole.shape and tiled.dtype == np.float32
    ulp = np.spacing(np.maximum(np.abs(whole), np.abs(tiled)))
    assert np.all(np.abs(tiled - whole) <= ulp)
    assert np.mean(tiled == whole) > 0.999


def test_small_images_and_kernels_are_not_tiled():
    assert ref._dft_tiles(256, 11) == 1      # under 130 taps OpenCV filters directly
    assert ref._dft_tiles(200, 21) == 1      # one DFT block already
    assert ref._dft_tiles(256, 13) == 2
