"""The JPEG step's codec: a libjpeg round trip of an 8-bit image, decoded the way Real-ESRGAN's
DiffJPEG reconstructs (chroma repeated 2x2, not smoothly upsampled).

Shared by the spec (and so its fast path) and by the DALI CPU graph, which runs it through
`fn.python_function`: no DALI operator decodes chroma this way.
"""
from __future__ import annotations

import io

import cv2
import numpy as np


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode with OpenCV's libjpeg (4:2:0) at `quality`, decode with nearest chroma upsampling.

    libjpeg's own decoder upsamples chroma smoothly ("fancy" upsampling), which leaves a milder
    image than DiffJPEG's 2x2 repeat. The decode here stays libjpeg's (quantisation, IDCT): the
    luma plane comes from a grayscale decode (libjpeg outputs the Y component as it is) and the
    chroma planes from a half-size YCbCr decode (Pillow), where libjpeg decodes 4:2:0 chroma at
    its own resolution, neither scaled nor upsampled; those are repeated 2x2 and converted to RGB
    by OpenCV's YCrCb → RGB (full-range JFIF, coefficients rounded to 3 decimals: within a level).

    img: (H, W, 3) uint8 RGB. Returns (H, W, 3) uint8 RGB.

    Raises:
        ValueError: quality outside [1, 100], or libjpeg failed to encode or to decode at half size.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    h, w = img.shape[:2]
    # A side of 1 px has no half-size decode; libjpeg fills a block by repeating the edge, so
    # repeating it once more beforehand encodes the same blocks.
    img = np.pad(img, ((0, max(0, 2 - h)), (0, max(0, 2 - w)), (0, 0)), mode="edge")
    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    luma = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)
    half = _decode_half_ycbcr(enc, img.shape[:2])
    crcb = cv2.resize(half[:, :, [2, 1]], (2 * half.shape[1], 2 * half.shape[0]), interpolation=cv2.INTER_NEAREST)
    ycrcb = np.dstack([luma, crcb[: luma.shape[0], : luma.shape[1]]])[:h, :w]
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def _decode_half_ycbcr(enc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """libjpeg (Pillow) 1/2-scale decode of `enc`, a JPEG of `shape` = (h, w) >= 2, to YCbCr uint8
    of ((h + 1) // 2, (w + 1) // 2). Raises ValueError if libjpeg returns another size."""
    from PIL import Image
    h, w = shape
    with Image.open(io.BytesIO(enc.tobytes())) as im:
        im.draft("YCbCr", (w // 2, h // 2))  # draft picks the largest reduction that stays >= the size
        out = np.asarray(im)
    if out.shape != ((h + 1) // 2, (w + 1) // 2, 3):
        raise ValueError(f"JPEG half-size decode of a {w}x{h} image: expected {(w + 1) // 2}x{(h + 1) // 2} "
                         f"YCbCr, got {out.shape[1]}x{out.shape[0]} {im.mode}")
    return out
