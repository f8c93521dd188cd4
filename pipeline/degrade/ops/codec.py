"""Video codec artefacts from a real encoder: FFmpeg's libraries through PyAV's codec contexts.

The still image becomes a short clip of shifted crops (small random motion), so the encoder codes
most frames by motion-compensated prediction (P/B frames) and their artefacts appear: blocking along
prediction blocks, ringing, smeared fine texture, chroma bleeding from 4:2:0. The clip is encoded and
decoded in memory (no ffmpeg process, no temporary file), one thread each so the bytes are a function
of the params alone.

Which frame is kept: the middle one, `frames // 2`, and the clip's motion is anchored there (its
crop has offset (0, 0), so the kept frame is aligned with the input). The first frame is always an
I-frame (intra only, JPEG-like) and the last is often coded as a P-frame at the flush; a middle
frame is what most frames of a real stream are: a B-frame when the encoder uses them, otherwise P,
and normally an I-frame only when the drawn GOP puts a keyframe there (`(frames // 2) % gop == 0`),
about as often as in a stream with short GOPs. Making a clip from one image follows VCISR (Wang et
al., video-compression synthetic data for SR); the choice of frame is this module's.

Colour: RGB → YUV and back by swscale with FFmpeg's defaults (BT.601, limited range), as a player
given an untagged stream would.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import cv2
import numpy as np

from ..spec import quantize, to_float
from .params import (check_choice, check_img, check_keys, check_range, draw_choice, draw_float, draw_int,
                     draw_seed)

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr per encoder unless told errors only

# common name → (encoder, decoder) in FFmpeg's naming
CODECS = {
    "h264": ("libx264", "h264"),
    "hevc": ("libx265", "hevc"),
    "mpeg2": ("mpeg2video", "mpeg2video"),
    "mpeg4": ("mpeg4", "mpeg4"),
    "vp9": ("libvpx-vp9", "vp9"),
    "av1": ("libsvtav1", "libdav1d"),
}
RATE_CONTROLS = ("crf", "bitrate")
FPS = 25
MIN_SIDE = 16

# Default ranges (plain data). `crf` is the codec's own constant-quality scale: x264/x265 CRF (0-51),
# libvpx/SVT-AV1 CRF (0-63), and for MPEG-2/MPEG-4 Part 2, which have no CRF, the fixed quantiser
# (qscale, 1-31). `bpp`: bits per pixel per frame of the bitrate mode (bit_rate = bpp·W·H·FPS).
# `preset`: x264/x265 presets, the libvpx `cpu-used` speed, the SVT-AV1 preset, and for MPEG-2/4 the
# macroblock decision mode (`mbd`), their nearest thing to a speed/quality preset.
RANGES: dict[str, Any] = {
    # hevc is available by name but not drawn by default: libx265 (PyAV 18.1, FFmpeg 8.1) corrupted the
    # heap on runs of small (40-48 px) frames, taking the worker process down (README, "Degradation")
    "codec": ["h264", "mpeg2", "mpeg4", "vp9", "av1"],
    "rate_control": ["crf", "bitrate"],
    "crf": {"h264": [20, 38], "hevc": [22, 40], "mpeg2": [3, 14], "mpeg4": [3, 14], "vp9": [35, 60],
            "av1": [35, 60]},
    "bpp": [0.03, 0.3],
    "preset": {"h264": ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"],
               "hevc": ["ultrafast", "superfast", "veryfast", "faster", "fast"],
               "mpeg2": ["simple", "bits", "rd"], "mpeg4": ["simple", "bits", "rd"],
               "vp9": ["5", "6", "7", "8"], "av1": ["8", "9", "10", "11", "12"]},
    "pix_fmt": ["yuv420p"],
    "gop": [2, 12],       # keyframe interval in frames
    "b_frames": [0, 3],   # most B-frames in a row (x264, x265, MPEG-2/4; VP9/AV1 use their own)
    "frames": [4, 8],     # clip length; the kept frame is frames // 2
    "motion": [0, 3],     # most shift per frame and axis, px
}


def encoder_name(codec: str) -> str:
    """FFmpeg's encoder for a common codec name (`h264` → `libx264`).

    Raises ValueError on an unknown name, or one this PyAV wheel's FFmpeg was built without.
    """
    import av
    check_choice("codec", codec, list(CODECS))
    encoder, decoder = CODECS[codec]
    for name, mode in ((encoder, "w"), (decoder, "r")):
        try:
            av.codec.Codec(name, mode)
        except av.codec.codec.UnknownCodecError:
            kind = "encoder" if mode == "w" else "decoder"
            raise ValueError(f"codec {codec!r}: this PyAV build's FFmpeg has no {kind} {name!r}") from None
    return encoder


def sample_codec(rng: np.random.Generator, ranges: Mapping[str, Any] = RANGES) -> dict[str, Any]:
    """Draw one clip's encoding: codec, rate control (CRF or bitrate), preset, pixel format, GOP,
    B-frames, clip length, motion and its seed. The unused one of `crf` / `bpp` is None."""
    codec = draw_choice(rng, ranges, "codec")
    rate_control = draw_choice(rng, ranges, "rate_control")
    crf = draw_int(rng, ranges["crf"], codec) if rate_control == "crf" else None
    bpp = draw_float(rng, ranges, "bpp") if rate_control == "bitrate" else None
    return {"codec": codec, "rate_control": rate_control, "crf": crf, "bpp": bpp,
            "preset": draw_choice(rng, ranges["preset"], codec), "pix_fmt": draw_choice(rng, ranges, "pix_fmt"),
            "gop": draw_int(rng, ranges, "gop"), "b_frames": draw_int(rng, ranges, "b_frames"),
            "frames": draw_int(rng, ranges, "frames"), "motion": draw_int(rng, ranges, "motion"),
            "seed": draw_seed(rng)}


def clip_offsets(frames: int, motion: int, seed: int) -> np.ndarray:
    """(frames, 2) int (dy, dx) crop offsets: a random walk of steps in [-motion, motion] per axis
    from PCG64(seed), shifted so frame frames // 2 sits at (0, 0)."""
    steps = np.random.default_rng(seed).integers(-motion, motion + 1, size=(frames, 2))
    steps[0] = 0
    walk = np.cumsum(steps, axis=0)
    return walk - walk[frames // 2]


def make_clip(img_u8: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Shifted crops of `img_u8` ((H, W, 3) uint8, H and W even), each (H, W, 3), reflect-101 beyond
    the border: frame t is the window at offsets[t]."""
    h, w = img_u8.shape[:2]
    m = int(np.abs(offsets).max()) if offsets.size else 0
    padded = cv2.copyMakeBorder(img_u8, m, m, m, m, cv2.BORDER_REFLECT_101) if m else img_u8
    return [np.ascontiguousarray(padded[m + dy: m + dy + h, m + dx: m + dx + w]) for dy, dx in offsets]


def _encoder_options(codec: str, params: Mapping[str, Any], bit_rate: int) -> dict[str, str]:
    """The encoder's options for the drawn preset and its quality: the CRF, or for MPEG-2/4 at a
    bitrate a one-second VBV buffer (maxrate = bufsize = bit_rate: without it their rate control
    starts at the finest quantiser and has not moved within a clip of a few frames)."""
    crf = params["crf"]
    preset = str(params["preset"])
    opts: dict[str, str] = {}
    if codec in ("h264", "hevc"):
        opts["preset"] = preset
        if codec == "hevc":
            opts["x265-params"] = "log-level=none:pools=none:frame-threads=1"  # no thread pool: runs in this thread
    elif codec == "vp9":
        opts.update({"deadline": "realtime", "cpu-used": preset, "row-mt": "0"})
    elif codec == "av1":
        opts.update({"preset": preset, "svtav1-params": "lp=1"})
    else:
        opts["mbd"] = preset
    if params["rate_control"] == "bitrate" and codec in ("mpeg2", "mpeg4"):
        opts.update({"maxrate": str(bit_rate), "bufsize": str(bit_rate)})
    if params["rate_control"] == "crf" and codec not in ("mpeg2", "mpeg4"):
        opts["crf"] = str(int(crf))
        if codec == "vp9":
            opts["b"] = "0"  # constant quality: no bitrate cap
    return opts


def _check_codec_params(params: Mapping[str, Any]) -> None:
    """Raise ValueError on a missing key or a value outside what the encoders accept."""
    check_keys("codec", params, ("codec", "rate_control", "crf", "bpp", "preset", "pix_fmt", "gop", "b_frames",
                                 "frames", "motion", "seed"))
    check_choice("rate_control", params["rate_control"], RATE_CONTROLS)
    if params["rate_control"] == "crf":
        check_range("crf", params["crf"], 1, 31 if params["codec"] in ("mpeg2", "mpeg4") else 63)
    else:
        check_range("bpp", params["bpp"], 1e-3, 24.0)
    check_range("gop", params["gop"], 1, 1000)
    check_range("b_frames", params["b_frames"], 0, 16)
    check_range("frames", params["frames"], 1, 250)
    check_range("motion", params["motion"], 0, 64)


def open_encoder(params: Mapping[str, Any], shape: tuple[int, int]) -> Any:
    """A PyAV encoder context for `params`, frames of `shape` = (h, w), one thread.

    Raises ValueError when the codec is missing or does not take the pixel format.
    """
    import av
    codec = params["codec"]
    name = encoder_name(codec)
    formats = [f.name for f in av.codec.Codec(name, "w").video_formats or []]
    check_choice(f"pix_fmt (for {codec})", params["pix_fmt"], formats)
    ctx = av.CodecContext.create(name, "w")
    ctx.height, ctx.width = shape
    ctx.pix_fmt = params["pix_fmt"]
    ctx.time_base = Fraction(1, FPS)
    ctx.framerate = Fraction(FPS, 1)
    ctx.gop_size = int(params["gop"])
    ctx.max_b_frames = int(params["b_frames"])
    ctx.thread_count = 1
    bit_rate = int(round(params["bpp"] * shape[0] * shape[1] * FPS)) if params["rate_control"] == "bitrate" else 0
    if bit_rate:
        ctx.bit_rate = bit_rate
    elif codec in ("mpeg2", "mpeg4"):
        ctx.qmin = ctx.qmax = int(params["crf"])  # a fixed quantiser, as -q:v
    ctx.options = _encoder_options(codec, params, bit_rate)
    return ctx


def encode_decode(clip: list[np.ndarray], params: Mapping[str, Any]) -> list[np.ndarray]:
    """Encode `clip` ((H, W, 3) uint8 RGB frames, H and W even) with `params`, decode it, and return
    the decoded (H, W, 3) uint8 RGB frames in display order. Raises ValueError if frames go missing."""
    import av
    ctx = open_encoder(params, clip[0].shape[:2])
    packets = []
    for t, frame in enumerate(clip):
        yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=params["pix_fmt"])
        yuv.pts = t
        packets += ctx.encode(yuv)
    packets += ctx.encode(None)
    dec = av.CodecContext.create(CODECS[params["codec"]][1], "r")
    dec.thread_count = 1
    if ctx.extradata:
        dec.extradata = ctx.extradata
    decoded = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
    if len(decoded) != len(clip):
        raise ValueError(f"codec {params['codec']!r}: encoded {len(clip)} frames, decoded {len(decoded)}")
    return [f.to_ndarray(format="rgb24") for f in decoded]


def apply_codec(img: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Video-compress `img` as the middle frame of a short moving clip (module docstring).

    img: (H, W, 3) float32 RGB in [0, 1], H, W >= 16. params: as `sample_codec` draws them.
    Returns (H, W, 3) float32 in [0, 1] (8-bit levels: the decoded frame / 255). Deterministic:
    the motion comes from params["seed"], encoder and decoder run single-threaded.

    Raises:
        ValueError: bad image, a missing or bad param, or a codec this PyAV build lacks (one line
        naming the codec and FFmpeg's encoder or decoder).
    """
    check_img(img, min_side=MIN_SIDE)
    _check_codec_params(params)
    h, w = img.shape[:2]
    img_u8 = quantize(img)
    img_u8 = np.pad(img_u8, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # 4:2:0 wants even sides
    offsets = clip_offsets(int(params["frames"]), int(params["motion"]), int(params["seed"]))
    decoded = encode_decode(make_clip(img_u8, offsets), params)
    return to_float(decoded[int(params["frames"]) // 2][:h, :w])
