"""The fast module (what the `reference` backend runs) against the spec, bit for bit.

- `fast.apply_recipe` equals `spec.apply_recipe` on many recipes: every preset, identity steps,
  odd sizes, and the variants of a tile sharing one sharpened HR;
- `unsharp_mask` (in place, uint8 mask): equal to the spec's formula;
- `poisson_counts` (guide tables): the spec's plain inversion of each uniform; the spec itself is
  checked by statistics against `scipy.stats.poisson` (per-level mean and variance within 5
  standard errors, a chi-square test of the frequencies at p > 1e-4) and for being a function of
  the seed alone;
- `blur` with a large kernel (OpenCV's DFT path) run on tiles: the same values as one
  `cv2.filter2D` call (both are float64 sums rounded to float32; at most one float32 ulp apart).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import stats

from pipeline.degrade import DegradeConfig, fast, sample_recipe, spec
from pipeline.degrade.kernels import gaussian_kernel, pulse_kernel, sinc_kernel
from pipeline.degrade.recipe import Blur, Jpeg, Noise, Recipe, Resize, Usm
from pipeline.params import build


@pytest.fixture(scope="module")
def photo(fixtures) -> np.ndarray:
    """A 300 x 280 px detailed photo: large enough for the tiled DFT blur at the HR size."""
    bgr = cv2.imread(str(fixtures / "pairs" / "gt" / "baboon.png"), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[90:390, 100:380, ::-1])


def _identity_recipe(scale: int, **steps) -> Recipe:
    """A Real-ESRGAN-shaped recipe whose steps are identities (kind none, scale 1) except `steps`."""
    out = [Usm("usm", 51, 0.5, 10.0)]
    for name in ("blur1", "resize1", "noise1", "jpeg1", "blur2", "resize2"):
        if name in steps:
            out.append(steps[name])
        elif name.startswith("blur"):
            out.append(Blur(name, "none", 1, pulse_kernel(1)))
        elif name.startswith("resize"):
            out.append(Resize(name, "keep", 1.0, "bilinear", "input"))
    out += [Resize("resize_final", "lr", 1.0, "bicubic", "lr"), Blur("sinc_final", "none", 1, pulse_kernel(1)),
            Jpeg("jpeg_final", 95)]
    return Recipe("realesrgan-x4plus", scale, "resize_sinc_jpeg", tuple(out))


_filter2d_tiled = fast._filter2d_tiled
IDENTITY_RECIPES = [
    _identity_recipe(4),
    _identity_recipe(2, blur1=Blur("blur1", "aniso", 21, gaussian_kernel(21, 3.0, 1.0, 0.4))),
    _identity_recipe(4, blur1=Blur("blur1", "sinc", 13, sinc_kernel(13, 1.0)),
                     noise1=Noise("noise1", "poisson", True, 2.5, 7)),
    _identity_recipe(3, blur1=Blur("blur1", "iso", 15, gaussian_kernel(15, 2.0)),
                     noise1=Noise("noise1", "poisson", False, 1.0, 8), jpeg1=Jpeg("jpeg1", 30)),
]


@pytest.mark.parametrize("preset", ["realesrgan-x4plus", "realesrgan-x2plus", "bsrgan"])
def test_fast_apply_recipe_equals_the_spec_bit_for_bit(photo, preset):
    cfg = build(DegradeConfig, {"preset": preset}, "degrade")
    shapes = [(300, 280), (257, 263), (131, 97), (64, 64)]
    for i in range(12):
        h, w = shapes[i % len(shapes)]
        hr = np.ascontiguousarray(photo[i % 7:i % 7 + h, :w])
        recipe = sample_recipe(cfg, i, f"k{i}", i % 3)
        out = fast.apply_recipe(hr, recipe)
        assert np.array_equal(out, spec.apply_recipe(hr, recipe)), (preset, i, recipe.to_dict())


@pytest.mark.parametrize("recipe", IDENTITY_RECIPES, ids=range(len(IDENTITY_RECIPES)))
def test_fast_equals_the_spec_with_identity_steps_and_odd_sizes(photo, recipe, monkeypatch):
    tiled = []
    monkeypatch.setattr(fast, "_filter2d_tiled", lambda *a: tiled.append(1) or _filter2d_tiled(*a))
    for h, w in ((300, 280), (97, 131), (53, 61)):
        hr = np.ascontiguousarray(photo[:h, :w])
        shared = fast.sharpen(hr, recipe)
        expected = spec.apply_recipe(hr, recipe)
        assert np.array_equal(fast.apply_recipe(hr, recipe), expected)
        assert np.array_equal(fast.apply_recipe(hr, recipe, sharpened=shared), expected)
    blur1 = recipe.step("blur1")
    assert bool(tiled) == (blur1.kind in ("aniso", "sinc"))  # the DFT tiles ran where they should


@pytest.mark.parametrize("shape", [(96, 96), (57, 83), (256, 256)])
@pytest.mark.parametrize("size,weight,threshold", [(51, 0.5, 10.0), (21, 0.8, 4.0), (7, 0.5, 10.0)])
def test_unsharp_mask_equals_the_spec_bit_for_bit(shape, size, weight, threshold):
    rng = np.random.default_rng(sum(shape) + size)
    x = cv2.GaussianBlur(rng.random((*shape, 3)).astype(np.float32), (5, 5), 1.0)
    before = x.copy()
    out = fast.unsharp_mask(x, size, weight, threshold)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.array_equal(out, spec.unsharp_mask(x, size, weight, threshold))
    assert np.array_equal(x, before)  # the input is not written to


@pytest.mark.parametrize("vals", [1, 2, 16, 256])
def test_poisson_tables_are_cdfs_and_guides(vals):
    cdf, cells, m = fast.poisson_tables(vals)
    cdf = cdf.reshape(256, m)
    assert np.array_equal(cdf, spec.poisson_cdf(vals))
    assert np.all(np.diff(cdf, axis=1) >= 0) and np.all(cdf[:, -1] == 1.0)
    lam = np.arange(256) * vals / 255
    ks = np.arange(m - 1)  # the last column is set to 1
    np.testing.assert_allclose(cdf[:, :-1], stats.poisson.cdf(ks[None, :], lam[:, None]), rtol=1e-12, atol=1e-300)
    assert np.all(stats.poisson.sf(m - 2, lam) < 1e-30)
    cells = cells.reshape(256, fast.POISSON_GUIDE)
    lo, hi = cells & 0xFFFF, (cells & 0xFFFF) + (cells >> 16)
    assert np.all(hi[:, :-1] == lo[:, 1:]) and hi.max() < m  # brackets tile each level's counts
    bounds = np.arange(fast.POISSON_GUIDE) / fast.POISSON_GUIDE  # lo = min{k : cdf(k) > b/G}
    rows = np.arange(256)[:, None]
    assert np.all(cdf[rows, lo] > bounds) and np.all(np.where(lo > 0, cdf[rows, np.maximum(lo - 1, 0)] <= bounds, True))


@pytest.mark.parametrize("vals", [1, 16, 256])
def test_poisson_counts_are_the_plain_inversion_of_each_uniform(vals):
    levels = np.random.default_rng(vals).integers(0, 256, (61, 67, 3)).astype(np.uint8)
    cdf = spec.poisson_cdf(vals)
    u = np.random.default_rng(99).random(levels.size)
    expected = [np.searchsorted(cdf[lv], x, side="right") for lv, x in zip(levels.ravel().tolist(), u)]
    counts = spec.poisson_counts(levels, vals, seed=99)
    assert counts.shape == levels.shape and np.array_equal(counts.ravel(), expected)
    assert np.array_equal(fast.poisson_counts(levels, vals, seed=99), counts)


@pytest.mark.parametrize("vals,levels", [(256, (0, 1, 3, 40, 128, 200, 255)), (4, (0, 17, 64, 255)), (1, (255,))])
def test_poisson_counts_follow_the_poisson_law_per_level(vals, levels):
    n = 40_000
    img = np.repeat(np.array(levels, np.uint8), n).reshape(len(levels), n)
    counts = fast.poisson_counts(img, vals, seed=11)
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
    a = fast.poisson_counts(levels, 256, seed=2 ** 62 + 5)
    assert np.array_equal(a, fast.poisson_counts(levels.copy(), 256, seed=2 ** 62 + 5))
    assert not np.array_equal(a, fast.poisson_counts(levels, 256, seed=6))
    fast.poisson_tables.cache_clear()  # a fresh process builds the same tables
    assert np.array_equal(a, fast.poisson_counts(levels, 256, seed=2 ** 62 + 5))


@pytest.mark.parametrize("shape,ksize", [((256, 256, 3), 13), ((256, 256, 3), 21), ((300, 270, 3), 17),
                                         ((240, 512, 3), 19), ((256, 256, 1), 15), ((256, 256), 15)])
def test_tiled_large_kernel_blur_equals_one_filter2d_call(shape, ksize):
    ny, nx = (fast.dft_tiles(n, ksize) for n in shape[:2])
    assert ny * nx > 1  # these shapes do take the tiled path
    rng = np.random.default_rng(ksize)
    x = rng.random(shape).astype(np.float32)
    kernel = rng.random((ksize, ksize)).astype(np.float32)
    kernel /= kernel.sum()
    whole = cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    tiled = fast.blur(x, kernel)
    assert tiled.shape == whole.shape and tiled.dtype == np.float32
    ulp = np.spacing(np.maximum(np.abs(whole), np.abs(tiled)))
    assert np.all(np.abs(tiled - whole) <= ulp)
    assert np.mean(tiled == whole) > 0.999


def test_small_images_and_kernels_are_not_tiled():
    assert fast.dft_tiles(256, 11) == 1      # under 130 taps OpenCV filters directly
    assert fast.dft_tiles(200, 21) == 1      # one DFT block already
    assert fast.dft_tiles(256, 13) == 2
