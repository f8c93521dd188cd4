"""Domain ops (pipeline/degrade/ops): determinism, effect sizes on a real photo, the library calls
behind them, and their errors."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.degrade.ops import OPS, get_op, step
from pipeline.degrade.ops import chroma, codec, isp, web

ROOT = Path(__file__).resolve().parents[1]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """skimage's astronaut (512 px), area-resized to 256 px: (256, 256, 3) float32 in [0, 1]."""
    from skimage import data
    return cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def smooth_image(h: int = 96, w: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.dstack([0.5 + 0.3 * np.sin(xx / 13 + yy / 17), 0.5 + 0.3 * np.cos(xx / 11 - yy / 19),
                      0.4 + 0.3 * np.sin((xx + yy) / 23)]).astype(np.float32)


def available(name: str) -> None:
    """Skip, naming the codec, where the PyAV wheel lacks its encoder or decoder."""
    try:
        codec.encoder_name(name)
    except ValueError as e:
        pytest.skip(str(e))


def codec_params(name: str, **kw) -> dict:
    p = {"codec": name, "rate_control": "crf", "crf": codec.RANGES["crf"][name][1], "bpp": None,
         "preset": codec.RANGES["preset"][name][0], "pix_fmt": "yuv420p", "gop": 8, "b_frames": 2,
         "frames": 5, "motion": 2, "seed": 7}
    return {**p, **kw}


# ---------------------------------------------------------------- the registry and the samplers

@pytest.mark.parametrize("name", sorted(OPS))
def test_sample_is_json_and_replays(name):
    op = get_op(name)
    a = op.sample(np.random.default_rng(3), op.ranges)
    assert json.loads(json.dumps(a)) == a
    assert op.sample(np.random.default_rng(3), op.ranges) == a
    assert all(v is None or isinstance(v, (int, float, str)) for v in a.values())


def test_unknown_op_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown domain op 'jpeg2000'; choose from \['chroma', 'codec'"):
        get_op("jpeg2000")


def test_step_adapter_applies_the_drawn_params(photo):
    params = chroma.sample_chroma(np.random.default_rng(0))
    out = step("chroma")(photo, params, np.random.default_rng(99))
    assert np.array_equal(out, chroma.apply_chroma(photo, params))


# ---------------------------------------------------------------- codec

@pytest.mark.parametrize("name, encoder", [("h264", "libx264"), ("hevc", "libx265"), ("mpeg2", "mpeg2video"),
                                           ("mpeg4", "mpeg4"), ("vp9", "libvpx-vp9"), ("av1", "libsvtav1")])
def test_codec_names_map_to_real_encoders(name, encoder):
    import av
    available(name)
    assert codec.encoder_name(name) == encoder
    assert av.codec.Codec(encoder, "w").type == "video"


def test_missing_codec_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(codec.CODECS, "h266", ("libvvenc-not-built", "vvc"))
    msg = r"^codec 'h266': this PyAV build's FFmpeg has no encoder 'libvvenc-not-built'$"
    with pytest.raises(ValueError, match=msg):
        codec.apply_codec(np.zeros((32, 32, 3), np.float32), codec_params("h264", codec="h266"))


@pytest.mark.parametrize("name", sorted(codec.CODECS))
def test_codec_degrades_but_does_not_destroy(photo, name):
    available(name)
    rng = np.random.default_rng(11)
    ranges = {**codec.RANGES, "codec": [name]}
    for _ in range(2):
        params = codec.sample_codec(rng, ranges)
        out = codec.apply_codec(photo, params)
        assert out.shape == photo.shape and out.dtype == np.float32
        assert 22.0 <= psnr(out, photo) <= 38.0, params


def test_codec_kept_frame_is_aligned_with_the_input(photo):
    """At a fine quantiser the middle frame of a moving clip matches the input: its crop is at (0, 0).
    (4:2:0 and limited-range YUV cap it near 36 dB; one pixel off costs far more.)"""
    out = codec.apply_codec(photo, codec_params("h264", crf=8, motion=3))
    assert psnr(out, photo) > 34.0
    assert psnr(out[:, 1:], photo[:, :-1]) < psnr(out, photo) - 8.0


def test_codec_motion_changes_the_result(photo):
    still = codec.apply_codec(photo, codec_params("h264", motion=0))
    moving = codec.apply_codec(photo, codec_params("h264", motion=3))
    assert not np.array_equal(still, moving)


def test_codec_odd_sides_keep_the_shape(photo):
    out = codec.apply_codec(photo[:77, :51], codec_params("mpeg4", crf=5))
    assert out.shape == (77, 51, 3)


def test_codec_is_deterministic_in_a_fresh_process(photo):
    names = [n for n in sorted(codec.CODECS) if n in codec.RANGES["codec"]]
    here = {}
    for name in names:
        try:
            codec.encoder_name(name)
        except ValueError:
            continue
        a = codec.apply_codec(photo, codec_params(name))
        assert np.array_equal(a, codec.apply_codec(photo, codec_params(name)))
        here[name] = hashlib.sha256(a.tobytes()).hexdigest()
    script = (
        "import hashlib, json, sys, cv2, numpy as np\n"
        "from skimage import data\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_degrade_domain_ops import codec_params\n"
        "from pipeline.degrade.ops import codec\n"
        "img = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32) / 255\n"
        "names = json.loads(sys.argv[1])\n"
        "print(json.dumps({n: hashlib.sha256(codec.apply_codec(img, codec_params(n)).tobytes()).hexdigest()"
        " for n in names}))\n")
    res = subprocess.run([sys.executable, "-c", script, json.dumps(sorted(here))], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert json.loads(res.stdout.strip().splitlines()[-1]) == here


def test_codec_bad_params_are_named():
    img = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(ValueError, match=r"codec must be one of \['h264'.*got 'divx'"):
        codec.apply_codec(img, codec_params("h264", codec="divx"))
    with pytest.raises(ValueError, match=r"codec params: missing key 'seed'"):
        codec.apply_codec(img, {k: v for k, v in codec_params("h264").items() if k != "seed"})
    with pytest.raises(ValueError, match=r"pix_fmt \(for mpeg4\) must be one of \['yuv420p'\], got 'yuv444p'"):
        codec.apply_codec(img, codec_params("mpeg4", pix_fmt="yuv444p"))
    with pytest.raises(ValueError, match=r"img must be at least 16x16 px, got 8x32"):
        codec.apply_codec(np.zeros((32, 8, 3), np.float32), codec_params("h264"))


# ---------------------------------------------------------------- chroma

@pytest.mark.parametrize("sub", ["420", "422"])
@pytest.mark.parametrize("down", chroma.DOWN)
@pytest.mark.parametrize("up", list(chroma.UP))
def test_chroma_keeps_luma_and_blurs_chroma(photo, sub, down, up):
    params = {"subsampling": sub, "down": down, "up": up, "matrix": "bt601"}
    out = chroma.apply_chroma(photo, params)
    y_in, y_out = chroma.to_ycbcr(photo, "bt601"), chroma.to_ycbcr(out, "bt601")
    unclipped = ((out > 0) & (out < 1)).all(axis=2)  # the photo has black and white areas of its own
    assert unclipped.mean() > 0.8
    # luma within float32 rounding wherever the new colour stayed inside the RGB cube
    assert np.abs(y_out[..., 0] - y_in[..., 0])[unclipped].max() < 1e-5
    # chroma detail: the energy of the horizontal difference of Cb and Cr drops
    detail = [np.abs(np.diff(y[..., 1:], axis=1)).mean() for y in (y_in, y_out)]
    assert detail[1] < 0.9 * detail[0]
    assert not np.array_equal(out, photo)
    assert 30.0 <= psnr(out, photo) <= 45.0


def test_chroma_box_is_cv2_area_and_nearest_is_decimation():
    rng = np.random.default_rng(0)
    c = rng.random((8, 10, 2), dtype=np.float32)
    box = chroma.downsample(c, (2, 2), "box")
    np.testing.assert_allclose(box, cv2.resize(c, (5, 4), interpolation=cv2.INTER_AREA), atol=0)
    np.testing.assert_allclose(box, c.reshape(4, 2, 5, 2, 2).mean(axis=(1, 3)), atol=1e-6)
    assert np.array_equal(chroma.downsample(c, (1, 2), "nearest"), c[:, ::2])
    tent = chroma.downsample(c, (1, 2), "bilinear")
    p = np.pad(c, ((0, 0), (1, 1), (0, 0)), mode="edge")
    np.testing.assert_allclose(tent[:, 2], (p[:, 4] + 3 * p[:, 5] + 3 * p[:, 6] + p[:, 7]) / 8, atol=1e-6)


def test_chroma_ycbcr_round_trip_and_odd_sides(photo):
    np.testing.assert_allclose(chroma.from_ycbcr(chroma.to_ycbcr(photo, "bt709"), "bt709"), photo, atol=1e-6)
    out = chroma.apply_chroma(photo[:75, :33], {"subsampling": "420", "down": "bilinear", "up": "bicubic",
                                               "matrix": "bt709"})
    assert out.shape == (75, 33, 3)


def test_chroma_bad_params_are_named(photo):
    with pytest.raises(ValueError, match=r"subsampling must be one of \['420', '422'\], got '411'"):
        chroma.apply_chroma(photo, {"subsampling": "411", "down": "box", "up": "nearest", "matrix": "bt601"})
    with pytest.raises(ValueError, match=r"img must be \(H, W, 3\) float32 RGB in \[0, 1\], got \(4, 4, 3\) uint8"):
        chroma.apply_chroma(np.zeros((4, 4, 3), np.uint8), chroma.sample_chroma(np.random.default_rng(0)))


# ---------------------------------------------------------------- camera ISP

def test_isp_inverse_then_forward_is_identity_without_noise(photo):
    """develop(WB(unprocess(x))) = x to float rounding (|d| < 1e-4 on 99 % of pixels); the rest are
    highlights (Brooks' highlight-preserving inverse) and colours outside the camera's cube, which
    clipping moves by at most 3 levels."""
    for seed in range(3):
        params = isp.sample_isp(np.random.default_rng(seed))
        back = isp.develop(np.clip(isp.unprocess(photo, params) * isp.wb_gains(params), 0.0, 1.0), params)
        err = np.abs(back - photo).max(axis=2)
        assert np.mean(err < 1e-4) > 0.99
        assert err.max() <= 3 / 255


@pytest.mark.parametrize("bayer", list(isp.BAYER))
@pytest.mark.parametrize("method", list(isp.DEMOSAIC))
def test_demosaic_of_a_smooth_mosaic_is_the_image(bayer, method):
    """OpenCV's demosaicing of our mosaic recovers a smooth image: > 45 dB away from a 4 px border
    (a wrong layout swaps channels and falls far below)."""
    img = smooth_image()
    out = isp.demosaic(isp.mosaic(img, bayer), bayer, method)
    assert psnr(out[4:-4, 4:-4], img[4:-4, 4:-4]) > 45.0


def test_isp_degrades_but_does_not_destroy_and_replays(photo):
    rng = np.random.default_rng(5)
    for _ in range(4):
        params = isp.sample_isp(rng)
        out = isp.apply_isp(photo, params)
        assert out.shape == photo.shape and out.dtype == np.float32
        assert 20.0 <= psnr(out, photo) <= 38.0, params
        assert np.array_equal(out, isp.apply_isp(photo, params))
    assert not np.array_equal(out, isp.apply_isp(photo, {**params, "seed": params["seed"] + 1}))


def test_isp_bad_params_are_named(photo):
    params = isp.sample_isp(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"demosaic must be one of \['bilinear', 'ea', 'vng'\], got 'ahd'"):
        isp.apply_isp(photo, {**params, "demosaic": "ahd"})
    with pytest.raises(ValueError, match=r"ranges.shot: expected \[lo, hi\] with lo <= hi, got \[0.01, 0.001\]"):
        isp.sample_isp(np.random.default_rng(0), {**isp.RANGES, "shot": [0.01, 0.001]})


# ---------------------------------------------------------------- web

def test_web_one_jpeg_generation_is_pillow(photo):
    from PIL import Image
    import io
    params = {"generations": 1, "gen1_format": "jpeg", "gen1_quality": 70, "gen1_subsampling": "4:2:2",
              "gen1_scale": 1.0, "gen1_resample": "lanczos"}
    u8 = np.asarray(Image.fromarray((photo * 255 + 0.5).astype(np.uint8)))
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=70, subsampling="4:2:2")  # Pillow 10+
    expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert np.array_equal(np.rint(web.apply_web(photo, params) * 255).astype(np.uint8), expected)


@pytest.mark.parametrize("fmt", list(web.FORMATS))
def test_web_chains_degrade_but_do_not_destroy(photo, fmt):
    if fmt == "avif" and "avif" not in web.RANGES["format"]:
        pytest.skip("format 'avif': this Pillow build has no AVIF support (libavif)")
    rng = np.random.default_rng(2)
    ranges = {**web.RANGES, "format": [fmt]}
    for _ in range(3):
        params = web.sample_web(rng, ranges)
        out = web.apply_web(photo, params)
        assert out.shape == photo.shape
        assert 20.0 <= psnr(out, photo) <= 38.0, params
        assert np.array_equal(out, web.apply_web(photo, params))


def test_web_more_generations_degrade_more(photo):
    gen = {"format": "jpeg", "quality": 60, "subsampling": "4:2:0", "scale": 0.7, "resample": "bicubic"}
    params = {"generations": 4, **{f"gen{i}_{k}": v for i in range(1, 5) for k, v in gen.items()}}
    one = web.apply_web(photo, {**params, "generations": 1})
    four = web.apply_web(photo, params)
    assert psnr(four, photo) < psnr(one, photo)


def test_web_bad_params_are_named(photo):
    params = {"generations": 1, "gen1_format": "webp", "gen1_quality": 70, "gen1_subsampling": "4:4:4",
              "gen1_scale": 1.0, "gen1_resample": "box"}
    with pytest.raises(ValueError, match=r"subsampling \(for webp\) must be one of \['4:2:0'\], got '4:4:4'"):
        web.apply_web(photo, params)
    with pytest.raises(ValueError, match=r"web params: missing key 'gen2_format'"):
        web.apply_web(photo, {**params, "generations": 2, "gen1_subsampling": "4:2:0"})
    with pytest.raises(ValueError, match=r"generations must be in \[1, 4\], got 5"):
        web.apply_web(photo, {**params, "generations": 5})
