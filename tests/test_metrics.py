"""pipeline.metrics: PSNR/SSIM (BasicSR conventions), MATLAB imresize, NIQE, LPIPS from local files."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import stats
from skimage.metrics import structural_similarity

from pipeline.io.images import read_image
from pipeline.metrics import lpips, lpips_available, niqe, niqe_available, psnr, rgb_to_y, ssim
from pipeline.metrics.lpips import lpips_files
from pipeline.metrics.niqe import fit_aggd, gaussian_window, load_niqe_params, luma, mscn
from pipeline.metrics.resize import imresize, imresize_float32

from conftest import FIXTURES

NIQE_PARAMS = FIXTURES / "niqe" / "niqe_pris_params.npz"
BABOON = FIXTURES / "pairs" / "gt" / "baboon.png"
needs_fixtures = pytest.mark.skipif(not (NIQE_PARAMS.is_file() and BABOON.is_file()),
                                    reason=f"fixtures missing under {FIXTURES}")


def _pair(shape=(37, 41, 3), noise=30, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, shape), 0, 255).astype(np.uint8)
    return a, b


@pytest.fixture(scope="module")
def baboon() -> np.ndarray:
    if not BABOON.is_file():
        pytest.skip(f"fixture missing: {BABOON}")
    return read_image(BABOON)


# --- colour -------------------------------------------------------------------------------------

def test_rgb_to_y_known_pixels():
    img = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]],
                    [[0, 255, 0], [0, 0, 255], [128, 64, 32]]], dtype=np.uint8)
    expected = [[235.0, 16.0, 16 + 65.481],
                [16 + 128.553, 16 + 24.966, 16 + (65.481 * 128 + 128.553 * 64 + 24.966 * 32) / 255]]
    np.testing.assert_allclose(rgb_to_y(img), expected, rtol=0, atol=1e-12)
    assert rgb_to_y(img).dtype == np.float64


def test_rgb_to_y_rejects_bad_input():
    with pytest.raises(ValueError, match="must be uint8, got float32"):
        rgb_to_y(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) RGB, got shape \(2, 2\)"):
        rgb_to_y(np.zeros((2, 2), np.uint8))


# --- PSNR ---------------------------------------------------------------------------------------

def test_psnr_constant_offset_of_one_is_20_log10_255():
    a = np.random.default_rng(1).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-12)
    assert psnr(a + 1, a) == pytest.approx(20 * math.log10(255), abs=1e-12)


def test_psnr_hand_computed_and_identical():
    a = np.zeros((2, 2), np.uint8)
    b = a.copy()
    b[0, 0] = 255  # MSE = 255² / 4 -> PSNR = 10 log10(4)
    assert psnr(a, b) == pytest.approx(10 * math.log10(4), abs=1e-12)
    assert psnr(a, a) == float("inf")


def test_psnr_y_channel_uses_matlab_luma():
    a = np.random.default_rng(2).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    # +1 on every channel moves Y by (65.481 + 128.553 + 24.966) / 255 = 219 / 255 everywhere.
    assert psnr(a, a + 1, y_channel=True) == pytest.approx(20 * math.log10(255 / (219 / 255)), abs=1e-9)
    # +1 on red only moves Y by 65.481 / 255.
    b = a.copy()
    b[..., 0] += 1
    assert psnr(a, b, y_channel=True) == pytest.approx(20 * math.log10(255 / (65.481 / 255)), abs=1e-9)


def test_psnr_crop_border_ignores_the_ring():
    a, _ = _pair((12, 10, 3))
    b = a.copy()
    b[0, :] = 255 - b[0, :]
    b[:, -2] = 0
    assert math.isfinite(psnr(a, b))
    assert psnr(a, b, crop_border=2) == float("inf")
    assert math.isfinite(psnr(a, b, crop_border=1))


def test_channel_order_matters_for_y_but_not_for_rgb():
    a, b = _pair((16, 16, 3), noise=40)
    a_bgr, b_bgr = a[..., ::-1], b[..., ::-1]
    assert psnr(a_bgr, b_bgr) == pytest.approx(psnr(a, b), abs=1e-12)
    assert ssim(a_bgr, b_bgr) == pytest.approx(ssim(a, b), abs=1e-12)
    assert abs(psnr(a_bgr, b_bgr, y_channel=True) - psnr(a, b, y_channel=True)) > 0.01
    assert abs(ssim(a_bgr, b_bgr, y_channel=True) - ssim(a, b, y_channel=True)) > 1e-4


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_pair_validation(metric):
    a, b = _pair((20, 24, 3))
    with pytest.raises(ValueError, match="a must be uint8 .*got float32"):
        metric(a.astype(np.float32), b)
    with pytest.raises(ValueError, match="b must be uint8 .*got uint16"):
        metric(a, b.astype(np.uint16))
    with pytest.raises(ValueError, match=r"same shape, got \(20, 24, 3\) and \(20, 23, 3\)"):
        metric(a, b[:, :-1])
    with pytest.raises(ValueError, match=r"got shape \(20, 24, 4\)"):
        metric(np.zeros((20, 24, 4), np.uint8), np.zeros((20, 24, 4), np.uint8))
    with pytest.raises(ValueError, match="crop_border=10 leaves 0x4 of a 20x24 image"):
        metric(a, b, crop_border=10)
    with pytest.raises(ValueError, match="crop_border must be a non-negative int, got -1"):
        metric(a, b, crop_border=-1)
    with pytest.raises(ValueError, match="y_channel=True needs 3-channel RGB images, got 1 channel"):
        metric(a[..., :1], b[..., :1], y_channel=True)


# --- SSIM ---------------------------------------------------------------------------------------
# skimage pads (reflect) before filtering but then averages the map over the interior 5 px in from
# each side — exactly the windows that lie inside the image, i.e. BasicSR's 'valid' map. The
# remaining differences are the kernel construction (scipy truncate=3.5 -> 11 taps, vs
# cv2.getGaussianKernel(11, 1.5)) and float64 summation order: 1e-9 is generous for that.
_SKIMAGE = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


@pytest.mark.parametrize("shape", [(37, 41, 3), (11, 11, 3), (30, 25, 1)])
def test_ssim_rgb_matches_skimage(shape):
    a, b = _pair(shape)
    expected = structural_similarity(a, b, channel_axis=2, **_SKIMAGE)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_ssim_y_and_crop_match_skimage(baboon):
    a = baboon[:64, :80]
    b = np.clip(a.astype(int) + np.random.default_rng(3).integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    ya, yb = rgb_to_y(a[4:-4, 4:-4]), rgb_to_y(b[4:-4, 4:-4])
    expected = structural_similarity(ya, yb, **_SKIMAGE)
    assert ssim(a, b, crop_border=4, y_channel=True) == pytest.approx(expected, abs=1e-9)
    assert 0.3 < expected < 0.99  # a real comparison, not a degenerate one


def test_ssim_identical_and_too_small():
    a, _ = _pair((16, 16, 3))
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="crop_border=3 leaves 10x10 of a 16x16 image; need at least 11x11"):
        ssim(a, a, crop_border=3)


# --- MATLAB imresize ----------------------------------------------------------------------------
# PIL's float ('F') bicubic uses the same Keys kernel (a = -0.5), pixel-centre mapping and
# antialiasing stretch as MATLAB, but clips taps at the border where MATLAB mirrors. Padding the
# input symmetrically (np.pad 'symmetric' == MATLAB's mirror) and cropping PIL's output gives the
# MATLAB result everywhere, up to PIL's float32 arithmetic.

@pytest.mark.parametrize("shape", [(40, 52), (41, 37)])
def test_imresize_half_matches_pil_on_mirrored_input(shape):
    x = np.random.default_rng(4).random(shape) * 255
    pad = [(8, 8 + n % 2) for n in shape]  # keep the scale exactly 2 for odd sizes
    xp = np.pad(x, pad, mode="symmetric")
    pil = Image.fromarray(xp.astype(np.float32), mode="F").resize(
        (xp.shape[1] // 2, xp.shape[0] // 2), Image.BICUBIC, reducing_gap=None)
    expected = np.asarray(pil, dtype=np.float64)[4:4 + math.ceil(shape[0] / 2), 4:4 + math.ceil(shape[1] / 2)]
    out = imresize(x, 0.5)
    assert out.shape == (math.ceil(shape[0] / 2), math.ceil(shape[1] / 2))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-3)


def test_imresize_upscale_matches_pil_on_mirrored_input():
    x = np.random.default_rng(5).random((13, 17, 3)) * 255
    xp = np.pad(x[..., 0], 4, mode="symmetric")
    pil = Image.fromarray(xp.astype(np.float32), mode="F").resize((xp.shape[1] * 2, xp.shape[0] * 2), Image.BICUBIC)
    out = imresize(x, 2.0)
    assert out.shape == (26, 34, 3)
    np.testing.assert_allclose(out[..., 0], np.asarray(pil, dtype=np.float64)[8:-8, 8:-8], rtol=0, atol=1e-3)


@pytest.mark.parametrize("shape", [(40, 52), (41, 37, 2)])
def test_imresize_float32_is_imresize_to_float32_rounding(shape):
    x = np.random.default_rng(8).random(shape).astype(np.float32)
    out = imresize_float32(x, 0.5)
    assert out.dtype == np.float32 and out.shape == imresize(x, 0.5).shape
    np.testing.assert_allclose(out, imresize(x, 0.5), rtol=0, atol=4e-7)  # a few float32 ulps on [0, 1]
    flat = imresize_float32(np.full(shape, 0.7, np.float32), 0.5)  # weights sum exactly to 1 at 0.5
    assert np.all(flat == np.float32(0.7))


def test_imresize_rejects_bad_scale():
    with pytest.raises(ValueError, match="scale must be a positive finite number, got 0"):
        imresize(np.zeros((4, 4)), 0)


# --- NIQE ---------------------------------------------------------------------------------------

@needs_fixtures
def test_niqe_baboon_matches_matlab(baboon):
    # MATLAB's niqe release (via BasicSR's calculate_niqe docs) gives 5.72957 for this image.
    assert niqe(baboon, crop_border=0, params=NIQE_PARAMS) == pytest.approx(5.7296, abs=1e-3)


NIQE_BASICSR = FIXTURES / "niqe" / "basicsr_niqe.json"
FIRST_Y_DIFFS = [(0, 204, 68), (4, 194, 109), (5, 65, 25), (6, 34, 182), (8, 184, 150)]  # (R, G, B)


@pytest.mark.skipif(not NIQE_BASICSR.is_file(), reason=f"fixture missing: {NIQE_BASICSR}")
def test_niqe_matches_basicsr_on_every_fixture():
    # BasicSR 1.4.2's calculate_niqe on cv2.imread's BGR; ours takes the same pixels as RGB.
    entries = json.loads(NIQE_BASICSR.read_text())["values"]
    assert len(entries) >= 6
    diffs = []
    for entry in entries:
        bgr = cv2.imread(str(FIXTURES.parent / entry["file"]), cv2.IMREAD_COLOR)
        assert bgr is not None and list(bgr.shape) == entry["shape"], entry["file"]
        score = niqe(np.ascontiguousarray(bgr[..., ::-1]), crop_border=entry["crop_border"], params=NIQE_PARAMS)
        diffs.append((abs(score - entry["niqe"]), entry["file"], entry["crop_border"]))
    assert max(diffs)[0] < 1e-4, max(diffs)


def test_luma_is_basicsr_y_on_every_colour():
    # Every 24-bit colour once. BasicSR: float32 RGB / 255 → Y in float64 → float32 → × 255 → round.
    # Frozen from basicsr.metrics.metric_util.to_y_channel(...).round() (BasicSR 1.4.2, NumPy 2.4):
    # it agrees with MATLAB's rounded Y except on 163 colours, 5 of them listed here.
    rgb = np.stack(np.meshgrid(*[np.arange(256)] * 3, indexing="ij"), -1).reshape(4096, 4096, 3).astype(np.uint8)
    y = luma(rgb)
    assert y.dtype == np.float32
    matlab = np.floor(rgb_to_y(rgb) + 0.5)
    assert int((y != matlab).sum()) == 163
    assert int(np.abs(y - matlab).max()) == 1
    r, g, b = np.nonzero((y != matlab).reshape(256, 256, 256))
    assert list(zip(r[:5].tolist(), g[:5].tolist(), b[:5].tolist())) == FIRST_Y_DIFFS


@needs_fixtures
def test_niqe_crop_border_and_luma_input(baboon):
    img = baboon[:250, :220]
    cropped = niqe(img, crop_border=7, params=NIQE_PARAMS)
    assert cropped == pytest.approx(niqe(img[7:-7, 7:-7], params=NIQE_PARAMS), abs=1e-12)
    assert cropped != pytest.approx(niqe(img, params=NIQE_PARAMS), abs=1e-3)
    y = luma(img).astype(np.uint8)  # a gray image is taken as the luma itself
    assert niqe(y, params=NIQE_PARAMS) == pytest.approx(niqe(img, params=NIQE_PARAMS), abs=1e-12)


@needs_fixtures
def test_niqe_params_sources(baboon, tmp_path, monkeypatch):
    img = baboon[:96, :192]
    ref = niqe(img, params=NIQE_PARAMS)
    with np.load(NIQE_PARAMS) as data:
        as_dict = {"mu_pris_param": data["mu_pris_param"], "cov_pris_param": data["cov_pris_param"]}
        np.testing.assert_allclose(data["gaussian_window"], gaussian_window(), rtol=0, atol=1e-15)
    assert niqe(img, params=as_dict) == pytest.approx(ref, abs=1e-12)  # window rebuilt when absent
    monkeypatch.setenv("REALSYNTH_NIQE_PARAMS", str(NIQE_PARAMS))
    assert niqe(img) == pytest.approx(ref, abs=1e-12)
    monkeypatch.delenv("REALSYNTH_NIQE_PARAMS")
    monkeypatch.chdir(tmp_path)
    ok, reason = niqe_available()
    assert not ok and "models/weights/niqe_pris_params.npz" in reason and "REALSYNTH_NIQE_PARAMS" in reason
    with pytest.raises(FileNotFoundError, match="NIQE pristine model not found: models/weights/niqe_pris_params.npz"):
        niqe(img)
    (tmp_path / "models" / "weights").mkdir(parents=True)
    shutil.copy(NIQE_PARAMS, tmp_path / "models" / "weights" / "niqe_pris_params.npz")
    assert niqe_available() == (True, "")
    assert niqe(img) == pytest.approx(ref, abs=1e-12)


def test_niqe_bad_params_and_inputs(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu=np.zeros(36))
    ok, reason = niqe_available(bad)
    assert not ok and "missing array 'mu_pris_param'" in reason
    with pytest.raises(ValueError, match=r"cov_pris_param \(36, 36\), got \(36,\) and \(3, 3\)"):
        load_niqe_params({"mu_pris_param": np.zeros(36), "cov_pris_param": np.eye(3)})
    params = {"mu_pris_param": np.zeros(36), "cov_pris_param": np.eye(36)}
    with pytest.raises(ValueError, match="at least 96x96 pixels after crop_border=10, got 80x100 from 100x120"):
        niqe(np.zeros((100, 120, 3), np.uint8), crop_border=10, params=params)
    with pytest.raises(ValueError, match="must be a uint8 numpy array, got float64"):
        niqe(np.zeros((100, 120, 3)), params=params)
    with pytest.raises(ValueError, match="none of its 1 blocks gives finite features"):
        niqe(np.full((96, 96, 3), 128, np.uint8), params=params)


def test_fit_aggd_recovers_generalized_gaussian():
    rng = np.random.default_rng(6)
    for shape, scale in ((2.0, 0.5), (1.0, 1.2), (0.6, 0.3)):
        x = stats.gennorm.rvs(shape, scale=scale, size=200_000, random_state=rng)
        alpha, beta_l, beta_r = fit_aggd(x)
        assert alpha == pytest.approx(shape, rel=0.05)
        assert beta_l == pytest.approx(scale, rel=0.05) and beta_r == pytest.approx(scale, rel=0.05)
    assert all(math.isnan(v) for v in fit_aggd(np.abs(rng.normal(size=100))))  # no negative side


def test_mscn_is_zero_on_flat_and_scale_free_on_contrast():
    window = gaussian_window()
    np.testing.assert_allclose(mscn(np.full((20, 20), 77.0), window), 0, rtol=0, atol=1e-12)
    y = np.random.default_rng(7).random((30, 30)) * 200
    # (y - mu) / (sigma + 1) with sigma >> 1 is nearly invariant to a contrast gain.
    np.testing.assert_allclose(mscn(3 * y, window), mscn(y, window), rtol=0, atol=0.05)


# --- LPIPS --------------------------------------------------------------------------------------

def test_lpips_skipped_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ok, reason = lpips_available()
    assert not ok
    assert str(tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth") in reason
    a, b = _pair((32, 32, 3))
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        lpips(a, b)
    assert list(tmp_path.iterdir()) == []  # nothing was fetched
    with pytest.raises(ValueError, match=r"unknown LPIPS net 'vgg19'; choose from \['alex', 'squeeze', 'vgg'\]"):
        lpips(a, b, net="vgg19")
    with pytest.raises(ValueError, match=r"H, W >= 32, got shape \(16, 16, 3\)"):
        lpips(a[:16, :16], b[:16, :16])


def test_lpips_equals_torchmetrics_with_local_backbone(tmp_path, monkeypatch):
    # Real ImageNet weights are not shipped anywhere installed; a randomly initialised torchvision
    # squeezenet1_1 checkpoint (5 MB) put where torchvision looks lets torchmetrics' own class build
    # without a download, so both paths can be compared on the same weights.
    import torch
    import torchvision
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    backbone, _ = lpips_files("squeeze")
    backbone.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), backbone)
    assert lpips_available(net="squeeze") == (True, "")
    a, b = _pair((48, 40, 3), noise=20)
    reference = LearnedPerceptualImagePatchSimilarity(net_type="squeeze", normalize=True)
    to_x = lambda img: torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    expected = reference(to_x(a), to_x(b)).item()
    assert lpips(a, b, net="squeeze") == pytest.approx(expected, rel=1e-5)
    assert lpips(a, a, net="squeeze") == 0.0


def test_lpips_alex_reads_backbone_from_weights_dir(tmp_path):
    # A features-only AlexNet file (10 MB) is enough for LPIPS; rewriting it must change the score,
    # which shows the file's weights are the ones used (and the cache notices the new file).
    import torch
    import torchvision

    path = tmp_path / "alexnet-owt-7be5be79.pth"
    a, b = _pair((40, 36, 3), noise=20)
    scores = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        features = torchvision.models.alexnet(weights=None).features.state_dict()
        torch.save({f"features.{k}": v for k, v in features.items()}, path)
        assert lpips_available(tmp_path) == (True, "")
        scores.append(lpips(a, b, weights_dir=tmp_path))
        assert lpips(a, a, weights_dir=tmp_path) == 0.0
        assert lpips(b, a, weights_dir=tmp_path) == pytest.approx(scores[-1], rel=1e-5)
    assert scores[0] > 0 and scores[1] > 0
    assert scores[0] != pytest.approx(scores[1], rel=1e-3)


def test_lpips_real_weights():
    ok, reason = lpips_available()
    if not ok:
        pytest.skip(f"real LPIPS weights not installed (torchmetrics ships only the linear layers): {reason}")
    a, b = _pair((64, 64, 3), noise=20)
    assert lpips(a, a) == 0.0
    assert 0.0 < lpips(a, b) < 1.0
