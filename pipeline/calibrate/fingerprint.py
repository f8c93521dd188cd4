"""A degradation fingerprint of a set of LR images: named scalars from no-reference estimators
(`estimators.py`), averaged over the set, and a distance between two fingerprints.

    fp = fingerprint("photos/real_lr")         # a folder of images or a shard set (`<key>.lr.png`)
    fp = fingerprint([img1, img2])             # or (H, W, 3) uint8 RGB arrays
    d = distance(fp, other)                    # RMS of the feature differences over their SCALES

Per image (then the set's mean under the name, and its spread under `<name>_std`):
- `noise_sigma`, `noise_chroma`: Gaussian noise σ of the luma and of the Cb/Cr planes, 8-bit units
  (noise drawn per RGB channel shows in luma at about 0.67 σ: luma averages the channels);
- `hf_share`, `mid_share`: share of the luma energy above 0.25 and 0.125 cycles/px (of that above
  0.04): less with blur or a lower effective resolution, more with noise;
- `spectral_slope`: log-log slope of the luma spectrum, 0.04-0.3 cycles/px (about -2 when sharp);
- `blockiness`: 8x8 grid steps over the steps elsewhere, minus 1 (0: no JPEG grid);
- `jpeg_quality`: IJG quality of a JPEG file's quantisation tables; for decoded pixels, the one
  fitting the quantisation steps of its DCT coefficients; the set's mean is over the images where
  a quantisation grid shows (a JPEG file, or quantised coefficients on the 8x8 grid);
- `jpeg_grid_share`: the share of images where it shows (a resize or blur after the JPEG hides it);
- `chroma_hf_ratio`: chroma's high-frequency share over luma's (about 0.1 after 4:2:0 subsampling,
  0.4-0.9 with full chroma);
and, reported but not in `distance`: `jpeg_files` (share of JPEG files), `subsampled_420` (share
of JPEG files with 4:2:0 chroma), `height`, `width`, `images`.
"""
from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from . import estimators as est

NAN = float("nan")
MAX_SIDE = 1024    # a larger image is measured on its central crop (offset on the 8 px grid)
MAX_IMAGES = 256   # a larger set is measured on this many images, evenly spaced in key order
# feature → (scale, log10 first): a difference of one scale counts 1 in `distance`
SCALES: dict[str, tuple[float, bool]] = {
    "noise_sigma": (1.0, False),       # σ, 8-bit units
    "noise_chroma": (1.0, False),
    "hf_share": (0.25, True),          # a factor of 10^0.25 ≈ 1.8
    "mid_share": (0.25, True),
    "spectral_slope": (1.0, False),
    "blockiness": (0.1, False),
    "jpeg_quality": (10.0, False),     # IJG quality points
    "jpeg_grid_share": (0.2, False),
    "chroma_hf_ratio": (1.0, True),    # a factor of 10: light, as realsynth's JPEG repeats chroma 2x2 (not smooth)
}
SPREAD = ("noise_sigma", "hf_share", "spectral_slope", "blockiness", "jpeg_quality")
REPORTED = ("jpeg_files", "subsampled_420", "height", "width")


def image_features(img: np.ndarray, jpeg: Mapping | None = None) -> dict[str, float]:
    """The per-image features (module docstring) of (H, W, 3) uint8 RGB. jpeg: for a JPEG file,
    {"tables": Pillow's `quantization`, "sampling": Pillow's `get_sampling`} (else None).
    Raises ValueError on a bad image."""
    h, w = img.shape[:2]
    ycc = est.ycbcr(_central_crop(img))
    y, cb, cr = ycc[:, :, 0], ycc[:, :, 1], ycc[:, :, 2]
    power = est.power_spectrum(y)
    quality = est.table_quality(jpeg["tables"]) if jpeg else est.dct_quality(y)
    grid = 1.0 if jpeg or quality < 100 else 0.0 if math.isfinite(quality) else NAN
    return {
        "noise_sigma": est.noise_sigma(y),
        "noise_chroma": float(np.nanmean([est.noise_sigma(cb), est.noise_sigma(cr)])),
        "hf_share": est.hf_share(power, cut=0.25),
        "mid_share": est.hf_share(power, cut=0.125),
        "spectral_slope": est.spectral_slope(power),
        "blockiness": est.blockiness(y),
        "jpeg_quality": quality if grid == 1.0 else NAN,
        "jpeg_grid_share": grid,
        "chroma_hf_ratio": est.chroma_hf_ratio(y, cb, cr),
        "jpeg_files": 1.0 if jpeg else 0.0,
        "subsampled_420": (1.0 if jpeg.get("sampling") == 2 else 0.0) if jpeg else NAN,
        "height": float(h), "width": float(w),
    }


def _central_crop(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    y0, x0 = max(0, (h - MAX_SIDE) // 2) // 8 * 8, max(0, (w - MAX_SIDE) // 2) // 8 * 8
    return img[y0: y0 + MAX_SIDE, x0: x0 + MAX_SIDE]


def summarize(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The set's fingerprint from per-image features: each mean (NaN-skipping), SPREAD's std, `images`."""
    if not rows:
        raise ValueError("fingerprint: no images to measure")
    out: dict[str, float] = {"images": float(len(rows))}
    for name in list(SCALES) + list(REPORTED):
        vals = np.array([r[name] for r in rows], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out[name] = float(vals.mean()) if vals.size else NAN
        if name in SPREAD:
            out[f"{name}_std"] = float(vals.std()) if vals.size else NAN
    return out


def fingerprint(source: str | Path | Iterable[np.ndarray], *, limit: int = MAX_IMAGES) -> dict[str, float]:
    """The fingerprint (module docstring) of a folder of images, a shard set's `<key>.lr.png`
    members, or an iterable of (H, W, 3) uint8 RGB arrays.

    Raises FileNotFoundError for a missing path or one without images, ValueError for an
    undecodable image (naming it) or an empty iterable.
    """
    if isinstance(source, (str, Path)):
        return summarize([image_features(img, jpeg) for _, img, jpeg in read_lr_images(Path(source), limit=limit)])
    return summarize([image_features(img) for img in source])


def read_lr_images(path: Path, *, limit: int = MAX_IMAGES) -> list[tuple[str, np.ndarray, dict | None]]:
    """(key, image, JPEG info or None) of up to `limit` images of `path`, evenly spaced in key
    order: a shard set's `lr.png` members, else the images in a folder (recursive).
    Raises FileNotFoundError, or ValueError naming the file that does not decode."""
    from pipeline.io.images import ImageError, decode_image
    from pipeline.io.shards import INDEX, ShardSet, is_shard_set

    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a directory (expected a folder of images or a shard set)")
    if is_shard_set(path):
        shards = ShardSet(path, need=("lr.png",))
        rows = [i for i, k in enumerate(shards.keys) if "lr_png" in shards.members_of(k)]
        if not rows:
            raise FileNotFoundError(f"{path}: no lr.png members")
        return [(str(shards.keys[i]), shards.image_at(i, "lr.png"), None) for i in _spaced(rows, limit)]
    from pipeline.degrade.sources import IMAGE_EXTENSIONS
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) and no {INDEX}")
    out = []
    for f in _spaced(files, limit):
        data = f.read_bytes()
        try:
            out.append((f.relative_to(path).as_posix(), decode_image(data), jpeg_info(data)))
        except ImageError as err:
            raise ValueError(f"{f}: {err}") from None
    return out


def _spaced(items: list, limit: int) -> list:
    if len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def jpeg_info(data: bytes) -> dict | None:
    """{"tables", "sampling"} of a JPEG file's bytes (Pillow), None for any other format."""
    from PIL import Image, JpegImagePlugin
    with Image.open(io.BytesIO(data)) as im:
        if im.format not in ("JPEG", "MPO"):
            return None
        return {"tables": dict(getattr(im, "quantization", {}) or {}), "sampling": JpegImagePlugin.get_sampling(im)}


def json_ready(fp: Mapping[str, float]) -> dict[str, float | None]:
    """`fp` for strict JSON: NaN (nothing measured) as None; `distance` reads either form."""
    return {k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in fp.items()}


def feature_value(fp: Mapping[str, float | None], name: str) -> float:
    """The value `distance` compares: the mean, log10 for the shares (floored at 1e-6); NaN when absent."""
    v = fp.get(name)
    v = NAN if v is None else float(v)
    return math.log10(max(v, 1e-6)) if SCALES[name][1] and math.isfinite(v) else v


def feature_terms(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """Each feature's difference in units of its scale, for the features finite in both."""
    out = {}
    for name, (scale, _) in SCALES.items():
        va, vb = feature_value(a, name), feature_value(b, name)
        if math.isfinite(va) and math.isfinite(vb):
            out[name] = (va - vb) / scale
    return out


def distance(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """RMS over the features of SCALES (finite in both) of their difference over the feature's
    scale; NaN when no feature is comparable. Symmetric, 0 for equal fingerprints."""
    terms = feature_terms(a, b)
    return math.sqrt(sum(t * t for t in terms.values()) / len(terms)) if terms else NAN


def format_table(columns: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table: one row per feature, one column per named fingerprint."""
    names = list(columns)
    keys = [k for k in next(iter(columns.values())) if any(k in c for c in columns.values())]
    lines = ["| feature | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(_fmt(columns[n].get(k, NAN)) for n in names) + " |")
    return "\n".join(lines)


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    return f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}"
