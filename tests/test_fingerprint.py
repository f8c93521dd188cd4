"""The degradation fingerprint: each estimator tracks the degradation it measures on real photos,
the set reader takes folders and shard sets, and `distance` means what its docstring says."""
from __future__ import annotations

import io
import json
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.calibrate import distance, fingerprint
from pipeline.calibrate import estimators as est
from pipeline.calibrate.fingerprint import SCALES, image_features, json_ready


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    import skimage.data
    return [np.ascontiguousarray(f()[:256, :256]) for f in (skimage.data.astronaut, skimage.data.coffee,
                                                            skimage.data.chelsea, skimage.data.rocket)]


def _jpeg(img: np.ndarray, quality: int, subsampling: str = "4:2:0") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling=subsampling)
    return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("sigma", [3.0, 6.0, 12.0, 20.0])
def test_noise_estimate_tracks_added_gaussian_sigma(photos, sigma):
    """Gray noise (the same in R, G, B, so luma carries all of it) of σ on real photos: the
    estimate is within 15% + 1 level of σ, content notwithstanding."""
    rng = np.random.default_rng(0)
    for img in photos:
        noisy = np.clip(img + rng.normal(0, sigma, img.shape[:2])[:, :, None], 0, 255).round().astype(np.uint8)
        got = est.noise_sigma(est.ycbcr(noisy)[:, :, 0])
        assert abs(got - sigma) <= 0.15 * sigma + 1.0, (sigma, got)


def test_noise_estimate_is_small_on_clean_photos(photos):
    for img in photos:
        assert est.noise_sigma(est.ycbcr(img)[:, :, 0]) < 2.0


@pytest.mark.parametrize("quality", [10, 25, 35, 50, 70, 85, 95])
def test_jpeg_quality_from_quantisation_tables_within_3(photos, tmp_path, quality):
    """JPEG files from Pillow and OpenCV (both libjpeg, IJG tables): the folder's fingerprint reads
    the quality from the stored tables."""
    img = photos[0]
    (tmp_path / "pil.jpg").write_bytes(_jpeg(img, quality))
    cv2.imwrite(str(tmp_path / "cv.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    fp = fingerprint(tmp_path)
    assert fp["images"] == 2 and fp["jpeg_files"] == 1.0
    assert abs(fp["jpeg_quality"] - quality) <= 3 and fp["jpeg_quality_std"] <= 3


@pytest.mark.parametrize("quality", [20, 35, 50, 75])
def test_jpeg_quality_from_decoded_pixels(photos, quality):
    """No file, only pixels (as a degraded PNG holds them): the DCT coefficients' quantisation steps
    give the quality within 5; an image never JPEG-compressed shows no grid."""
    for img in photos[:3]:
        feats = image_features(_decode(_jpeg(img, quality)))
        assert feats["jpeg_grid_share"] == 1.0 and abs(feats["jpeg_quality"] - quality) <= 5, feats["jpeg_quality"]
        assert feats["blockiness"] > 0.1
    clean = image_features(photos[0])
    assert clean["jpeg_grid_share"] == 0.0 and math.isnan(clean["jpeg_quality"]) and abs(clean["blockiness"]) < 0.1


def test_blockiness_grows_as_quality_falls(photos):
    vals = [est.blockiness(est.ycbcr(_decode(_jpeg(photos[1], q)))[:, :, 0]) for q in (90, 60, 35, 15)]
    assert all(a < b for a, b in zip(vals, vals[1:])), vals


def test_blur_estimates_are_monotone_in_sigma(photos):
    """More Gaussian blur: less energy above 0.125 and 0.25 cycles/px, a steeper spectrum."""
    for img in photos:
        rows = [image_features(cv2.GaussianBlur(img, (0, 0), s) if s else img) for s in (0, 0.7, 1.4, 2.1)]
        for key in ("mid_share", "hf_share", "spectral_slope"):
            vals = [r[key] for r in rows]
            assert all(a > b for a, b in zip(vals, vals[1:])), (key, vals)


def test_chroma_420_detected(photos, tmp_path):
    """4:2:0 leaves chroma under half of luma's high-frequency share relative to 4:4:4 at the same
    quality, from the pixels; a JPEG file's own sampling factors are reported too."""
    for i, img in enumerate(photos):
        r444 = image_features(_decode(_jpeg(img, 95, "4:4:4")))["chroma_hf_ratio"]
        r420 = image_features(_decode(_jpeg(img, 95, "4:2:0")))["chroma_hf_ratio"]
        assert r420 < 0.5 * r444 and r420 < 0.25, (r420, r444)
        (tmp_path / f"{i}_420.jpg").write_bytes(_jpeg(img, 90, "4:2:0"))
    assert fingerprint(tmp_path)["subsampled_420"] == 1.0
    for p in tmp_path.iterdir():
        p.unlink()
    (tmp_path / "a.jpg").write_bytes(_jpeg(photos[0], 90, "4:4:4"))
    assert fingerprint(tmp_path)["subsampled_420"] == 0.0


def test_shard_set_lr_members_give_the_arrays_fingerprint(photos, tmp_path):
    from pipeline.io.images import encode_png
    from pipeline.io.shards import Sample, write_shard_set

    lrs = [_decode(_jpeg(img[:128, :128], 40)) for img in photos]
    samples = [Sample(f"k{i}", {"lr.png": encode_png(lr), "json": b"{}"}) for i, lr in enumerate(lrs)]
    write_shard_set(tmp_path / "set", samples, set_name="lr")
    assert fingerprint(tmp_path / "set") == fingerprint(lrs)


def test_distance_semantics(photos):
    a = fingerprint(photos[:2])
    assert distance(a, a) == 0.0
    b = dict(a, noise_sigma=a["noise_sigma"] + SCALES["noise_sigma"][0])  # one scale off in one feature
    n = sum(1 for k in SCALES if math.isfinite(a[k]))
    assert distance(a, b) == pytest.approx(math.sqrt(1 / n)) and distance(b, a) == distance(a, b)
    assert math.isnan(distance({}, a))
    ready = json.loads(json.dumps(json_ready(a), allow_nan=False))  # strict JSON: NaN as null
    assert distance(ready, a) == 0.0 and ready["subsampled_420"] is None


def test_errors_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images"):
        fingerprint(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png"):
        fingerprint(tmp_path)
    with pytest.raises(ValueError, match="no images to measure"):
        fingerprint([])
