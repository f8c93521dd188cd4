"""Safe image decoding for photos of unknown provenance, and deterministic PNG coding.

`decode_image` turns the bytes of any supported photo into an HWC uint8 RGB array, or raises
`ImageError` whose message is the one-line reason that ingest writes into `rejects.csv`.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "TIFF", "BMP")
DEFAULT_MAX_PIXELS = 100_000_000
PNG_LEVEL = 1  # zlib level for our own PNGs: lossless at any level, and the fastest to write
# Row filters libpng may choose from: none/sub/up, not avg/paeth, whose undoing is the slow part of
# reading a PNG; on photo tiles the files stay the same size (bench/png.py; bench/README.md, "PNG row filters").
PNG_FILTERS = cv2.IMWRITE_PNG_FAST_FILTERS

ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(ValueError):
    """A photo that cannot be used; str(err) is the reason (`truncated image file`, ...)."""


def read_image(path: str | Path, **kwargs) -> np.ndarray:
    """`decode_image` of a file's bytes."""
    return decode_image(Path(path).read_bytes(), **kwargs)


def decode_image(data: bytes, *, alpha: str = "composite", background: tuple[int, int, int] = (255, 255, 255),
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a photo to (H, W, 3) uint8 RGB.

    EXIF orientation is applied; gray and CMYK become RGB; 16-bit samples are rounded to 8 bits;
    an alpha channel that is not fully opaque is composited over `background` (`alpha="composite"`)
    or rejected (`alpha="reject"`). The pixel count is checked from the header, before decoding,
    so a decompression bomb never allocates.

    Raises:
        ImageError: zero bytes, unrecognised or unsupported format, too many pixels, truncated or
            corrupt data, or transparency with `alpha="reject"`.
    """
    if alpha not in ("composite", "reject"):
        raise ValueError(f"alpha must be 'composite' or 'reject', got {alpha!r}")
    if len(data) == 0:
        raise ImageError("zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("too many pixels (decompression bomb)") from None
    except Exception as err:  # noqa: BLE001 - any decoder failure is a reject reason
        raise ImageError(f"corrupt header: {_short(err)}") from None
    if im.format not in FORMATS:
        raise ImageError(f"unsupported format {im.format}; expected one of {list(FORMATS)}")
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(f"too many pixels ({w}x{h} > {max_pixels})")
    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is not worth rejecting the photo
        orientation = 1
    try:
        if im.format == "PNG":
            Image.open(io.BytesIO(data)).verify()  # chunk CRCs: damaged PNGs can decode into silent garbage
        im.load()
    except OSError as err:
        msg = str(err)
        raise ImageError("truncated image file" if "truncated" in msg else f"corrupt: {_short(err)}") from None
    except Exception as err:  # noqa: BLE001
        raise ImageError(f"corrupt: {_short(err)}") from None

    img = _to_array(im, data)
    img = _flatten_alpha(img, alpha, background)
    return np.ascontiguousarray(_orient(img, orientation))


def _to_array(im: Image.Image, data: bytes) -> np.ndarray:
    """HWC uint8 with 3 (RGB) or 4 (RGBA) channels."""
    if im.format in ("PNG", "TIFF"):
        deep = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if deep is not None and deep.dtype == np.uint16:
            # Pillow keeps only the high byte of 16-bit colour PNGs; OpenCV gives all 16 bits.
            img8 = np.round(deep.astype(np.float32) / 257.0).astype(np.uint8)
            if img8.ndim == 2:
                return np.repeat(img8[..., None], 3, axis=2)
            if img8.shape[2] == 4:
                return cv2.cvtColor(img8, cv2.COLOR_BGRA2RGBA)
            return cv2.cvtColor(img8, cv2.COLOR_BGR2RGB)
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if arr.max() > 255 or mode.startswith("I;16") else 1.0
        img8 = np.clip(np.round(arr / scale), 0, 255).astype(np.uint8)
        return np.repeat(img8[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info)
    return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))


def _flatten_alpha(img: np.ndarray, alpha: str, background: tuple[int, int, int]) -> np.ndarray:
    if img.shape[2] == 3:
        return img
    a = img[..., 3:4]
    if a.min() == 255:
        return img[..., :3]
    if alpha == "reject":
        raise ImageError("has transparency (alpha: reject)")
    a = a.astype(np.float32) / 255.0
    bg = np.asarray(background, np.float32).reshape(1, 1, 3)
    out = img[..., :3].astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1..8 (what the camera meant by 'this side up'), as Pillow's exif_transpose."""
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1]
    if orientation == 5:
        return img.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(img, -1)
    if orientation == 7:
        return img[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(img, 1)
    return img


def encode_png(img: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """(H, W, 3) uint8 RGB → PNG bytes; the same array gives the same bytes."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"encode_png expects (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    params = [cv2.IMWRITE_PNG_COMPRESSION, level, cv2.IMWRITE_PNG_FILTER, PNG_FILTERS]
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes written by `encode_png` → (H, W, 3) uint8 RGB. Raises ImageError if undecodable."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise ImageError("PNG failed to decode")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def _short(err: Exception) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__
