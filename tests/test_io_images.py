import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from pipeline.io.images import ImageError, decode_image, decode_png, encode_png, read_image


def _png(arr, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", **kw)
    return buf.getvalue()


def _jpeg(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_exif_transpose(orientation):
    arr = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    data = _png(arr, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    got = decode_image(data)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_gray_becomes_rgb_with_equal_channels():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    img = decode_image(_png(gray))
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[..., 0], gray)
    np.testing.assert_array_equal(img[..., 2], gray)


def test_16bit_png_is_rounded_not_truncated():
    # 16-bit values just below a byte boundary: truncation (v >> 8) and rounding (v / 257) differ.
    vals = np.array([[0, 257 * 10 + 200, 65535]], np.uint16)
    rgb16 = np.repeat(vals[..., None], 3, axis=2)
    ok, buf = cv2.imencode(".png", rgb16)
    assert ok
    img = decode_image(buf.tobytes())
    np.testing.assert_array_equal(img[0, :, 0], [0, 11, 255])  # (2770 / 257) = 10.78 -> 11; 2770 >> 8 = 10


def test_alpha_is_composited_on_background_or_rejected():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128  # half transparent red over white
    img = decode_image(_png(rgba), background=(255, 255, 255))
    expected = np.round(200 * 128 / 255 + 255 * (1 - 128 / 255))
    assert img[0, 0, 0] == expected and img[0, 0, 1] == np.round(255 * (1 - 128 / 255))
    with pytest.raises(ImageError, match="transparency"):
        decode_image(_png(rgba), alpha="reject")
    rgba[..., 3] = 255  # an opaque alpha channel is simply dropped, even with alpha="reject"
    assert decode_image(_png(rgba), alpha="reject").shape == (2, 2, 3)


def test_cmyk_jpeg_becomes_rgb():
    im = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    img = decode_image(_jpeg(im, quality=95))
    assert img.shape == (16, 16, 3)
    assert img[..., 0].mean() > 200 and img[..., 1].mean() < 60 and img[..., 2].mean() < 60


@pytest.mark.parametrize("data,reason", [
    (b"", "zero bytes"),
    (b"hello, I am text pretending to be a PNG", "not an image"),
])
def test_rejects_non_images(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data)


def test_truncated_jpeg_is_reported_as_truncated():
    arr = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _jpeg(Image.fromarray(arr), quality=90)
    with pytest.raises(ImageError, match="truncated"):
        decode_image(data[: len(data) // 2])


def test_too_many_pixels_is_checked_before_decoding():
    data = _png(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageError, match="too many pixels"):
        decode_image(data, max_pixels=9_999)


def test_png_roundtrip_is_lossless_and_deterministic():
    img = np.random.default_rng(1).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    a, b = encode_png(img), encode_png(img.copy())
    assert a == b
    np.testing.assert_array_equal(decode_png(a), img)
    with pytest.raises(ValueError, match="uint8 RGB"):
        encode_png(img.astype(np.float32))


def _png_row_filters(data: bytes) -> set[int]:
    """The filter type byte of every row of an 8-bit RGB PNG."""
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width = struct.unpack(">I", body[:4])[0]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    rows = zlib.decompress(idat)
    return set(rows[::1 + 3 * width])


def test_png_rows_use_only_the_filters_that_decode_fast():
    import skimage.data
    img = np.ascontiguousarray(skimage.data.astronaut()[:128, :128])  # a photo: libpng picks per row
    filters = _png_row_filters(encode_png(img))
    assert filters <= {0, 1, 2} and len(filters) > 1  # none/sub/up, never avg (3) or paeth (4)


def test_real_world_fixtures_decode(fixtures):
    shapes = {p.name: read_image(p).shape for p in sorted((fixtures / "realworld").iterdir())}
    assert shapes["wolf_gray.jpg"] == (236, 236, 3)
    assert shapes["tree_alpha_16bit.png"] == (256, 342, 3)
    assert shapes["children-alpha.png"] == (350, 566, 3)
