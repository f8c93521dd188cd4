"""How strong is the realesrgan-x4plus preset next to Real-ESRGAN's own pipeline, op by op?

    .venv/bin/python bench/strength.py [--seeds 3] [--tiles 48] [--rows all]

Strength = mean PSNR/SSIM (RGB, pipeline.metrics) of the x4 LR against the HR shrunk with
cv2.INTER_AREA; lower = harsher. HR: 256 px tiles cut from scikit-image's bundled photos (offline).

FOR MEASUREMENT ONLY. The `bsr_*` functions below are this project's own re-statement, in torch /
NumPy, of Real-ESRGAN's x4plus degradation as defined by its training code
(realesrgan/models/realesrgan_model.py `feed_data`, realesrgan/data/realesrgan_dataset.py, and
BasicSR's filter2D, USMSharp, random_add_{gaussian,poisson}_noise_pt, DiffJPEG,
options/train_realesrgan_x4plus.yml), written from reading it; it is not their code and not a
backend. What it restates:
- filter2D: reflect-101 pad of k//2, per-channel correlation (F.conv2d);
- resize: F.interpolate without antialias, align_corners=False; stage 1 by `scale_factor` (torch
  maps coordinates with that factor, not with the out/in size ratio), stage 2 and final by size;
  `area` is adaptive average pooling (whole pixels, no fractional weights);
- noise: σ/255·N(0, 1), one field for all channels when gray; Poisson from the 8-bit-rounded image
  (its BT.601 gray when gray) with vals = 2^ceil(log2(#distinct levels)); clip to [0, 1], no rounding;
- DiffJPEG (differentiable=False): RGB→YCbCr in float (no 8-bit rounding of its input), zero-pad to
  a multiple of 16, 2x2-mean chroma, exact 8x8 DCT, quantise with table·factor (unrounded, unclamped;
  the tables indexed transposed, as DiffJPEG defines them), nearest-neighbour (repeat) chroma
  upsampling, clip to [0, 255]; output stays float (no 8-bit rounding); quality a float in [30, 95];
- clamp/round points: clamp before each JPEG and after noise; one round, at the very end;
- draws per sample (Real-ESRGAN draws resize, noise type and final order per batch: same marginals).

Rows:
  ours                       pipeline.degrade.apply_recipe (reference backend), our recipes
  basicsr-like               BasicSR-style draws + every op as restated above
  ours + <op> as BasicSR     our recipe and ops, with that one op swapped for the restatement
  basicsr-like + <op> ours   the reverse swap
With paired recipes, "Δ" (row minus `ours`) has its own sd across seeds, much smaller than the rows'.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import fft

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.degrade import DegradeConfig, sample_recipe  # noqa: E402
from pipeline.degrade import spec as ref  # noqa: E402
from pipeline.degrade.kernels import KERNEL_KINDS, family_kernel, pulse_kernel, sinc_kernel  # noqa: E402
from pipeline.degrade.recipe import Blur, Jpeg, Noise, Recipe, Resize, Usm  # noqa: E402
from pipeline.metrics import psnr, ssim  # noqa: E402

TILE, SCALE = 256, 4
# JPEG standard (ITU T.81 Annex K) tables, row = vertical frequency.
LUMA = np.array([[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
                 [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
                 [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
                 [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], np.float64)
CHROMA = np.full((8, 8), 99.0)
CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
RGB2YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
YCC2RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])


def hr_tiles(n: int) -> list[np.ndarray]:
    """Up to `n` non-overlapping 256 px tiles with some texture (std > 12) from skimage.data."""
    import skimage.data as d
    photos = [d.astronaut(), d.coffee(), d.chelsea(), d.rocket(), d.immunohistochemistry(),
              d.hubble_deep_field(), d.colorwheel(), *d.stereo_motorcycle()[:2], d.retina()]
    tiles = []
    for photo in photos:
        for y in range(0, photo.shape[0] - TILE + 1, TILE):
            for x in range(0, photo.shape[1] - TILE + 1, TILE):
                t = np.ascontiguousarray(photo[y:y + TILE, x:x + TILE, :3])
                if t.std() > 12:
                    tiles.append(t)
    return tiles[:n]


# ---- BasicSR restatement: ops on (H, W, 3) float32 [0, 1] -----------------------------------------

def _t(img):
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]


def _n(x):
    return x[0].permute(1, 2, 0).contiguous().numpy()


def bsr_filter2d(img, kernel):
    k = kernel.shape[0]
    x = F.pad(_t(img), (k // 2,) * 4, mode="reflect")
    w = torch.from_numpy(kernel.astype(np.float32))[None, None].repeat(3, 1, 1, 1)
    return _n(F.conv2d(x, w, groups=3))


def bsr_usm(img, weight=0.5, threshold=10):
    g = cv2.getGaussianKernel(51, 0)
    kernel = (g @ g.T).astype(np.float32)
    residual = img - bsr_filter2d(img, kernel)
    mask = (np.abs(residual) * 255 > threshold).astype(np.float32)
    soft = bsr_filter2d(mask, kernel)
    sharp = np.clip(img + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * img


def bsr_resize(img, step: Resize, hr_shape, interps=("area", "bilinear", "bicubic"), by_size=False):
    """Real-ESRGAN's F.interpolate for a resize step; interps outside `interps` go to OpenCV.
    by_size: stage 1 by its output size too (coordinates mapped by the size ratio, as OpenCV)."""
    shape = ref.resize_shape(step, img.shape[:2], hr_shape, SCALE)
    if step.interp not in interps:
        return ref.resize(img, shape, step.interp)
    if step.relative_to == "input" and not by_size:  # stage 1: scale_factor
        return _n(F.interpolate(_t(img), scale_factor=step.scale, mode=step.interp))
    return _n(F.interpolate(_t(img), size=shape, mode=step.interp))


def bsr_noise(img, step: Noise):
    g = torch.Generator().manual_seed(step.seed)
    x = _t(img)
    if step.kind == "gaussian":
        shape = (1, 1) + x.shape[2:] if step.gray else x.shape
        out = x + torch.randn(shape, generator=g) * (step.level / 255.0)
    else:
        base = (x * torch.tensor([0.2989, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True) \
            if step.gray else x
        base = torch.clamp((base * 255).round(), 0, 255) / 255
        vals = 2 ** math.ceil(math.log2(len(torch.unique(base))))
        out = x + (torch.poisson(base * vals, generator=g) / vals - base) * step.level
    return _n(torch.clamp(out, 0, 1))


def _blocks(plane):
    h, w = plane.shape
    return plane.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)


def _unblocks(b):
    n, m = b.shape[:2]
    return b.transpose(0, 2, 1, 3).reshape(n * 8, m * 8)


def _codec(plane, table):
    coef = fft.dctn(_blocks(plane - 128.0), axes=(2, 3), norm="ortho")
    coef = np.round(coef / table) * table
    return _unblocks(fft.idctn(coef, axes=(2, 3), norm="ortho")) + 128.0


def bsr_jpeg(img, quality: float, *, zero_pad=True, nearest=True, tables="diffjpeg"):
    """DiffJPEG as restated in the module docstring (float in, float out)."""
    h, w = img.shape[:2]
    ph, pw = -h % 16, -w % 16
    x = np.pad(img.astype(np.float64) * 255, ((0, ph), (0, pw), (0, 0)), mode="constant" if zero_pad else "edge")
    ycc = x @ RGB2YCC.T + [0, 128, 128]
    q = float(quality)
    factor = (5000.0 / q if q < 50 else 200.0 - 2 * q) / 100.0
    if tables == "diffjpeg":
        ty, tc = LUMA.T * factor, CHROMA.T * factor
    else:  # libjpeg: integer quality, rounded and clamped entries, row = vertical frequency
        pct = 5000 // int(q) if q < 50 else 200 - 2 * int(q)
        ty, tc = (np.clip((t * pct + 50) // 100, 1, 255) for t in (LUMA, CHROMA))
    planes = [_codec(ycc[..., 0], ty)]
    for c in (1, 2):
        sub = ycc[..., c].reshape(ycc.shape[0] // 2, 2, ycc.shape[1] // 2, 2).mean(axis=(1, 3))
        dec = _codec(sub, tc)
        planes.append(np.repeat(np.repeat(dec, 2, 0), 2, 1) if nearest else
                      cv2.resize(dec, (dec.shape[1] * 2, dec.shape[0] * 2), interpolation=cv2.INTER_LINEAR))
    rgb = (np.stack(planes, -1) - [0, 128, 128]) @ YCC2RGB.T
    return (np.clip(rgb, 0, 255) / 255)[:h, :w].astype(np.float32)


def libjpeg_nearest(img, quality: int) -> np.ndarray:
    """libjpeg 4:2:0 round trip decoded with nearest-neighbour chroma (candidate fix): luma of a
    normal decode, chroma planes of a half-scale decode (libjpeg decodes them at their own size
    there), repeated 2x2; YCbCr → RGB in float, rounded to 8 bits."""
    import io

    from PIL import Image
    bgr = cv2.cvtColor(ref.quantize(img), cv2.COLOR_RGB2BGR)
    ok, enc = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    h, w = img.shape[:2]
    full = Image.open(io.BytesIO(enc.tobytes()))
    full.draft("YCbCr", None)
    half = Image.open(io.BytesIO(enc.tobytes()))
    half.draft("YCbCr", (max(1, w // 2), max(1, h // 2)))  # draft keeps scale >= the asked one
    assert half.size == ((w + 1) // 2, (h + 1) // 2), (half.size, w, h)
    y = np.asarray(full, np.float64)[..., 0]
    c = np.asarray(half, np.float64)[..., 1:]
    c = np.repeat(np.repeat(c, 2, 0), 2, 1)[:h, :w]
    rgb = (np.concatenate([y[..., None], c], -1) - [0, 128, 128]) @ YCC2RGB.T
    return ref.to_float(ref.quantize(rgb.astype(np.float32) / 255))


# ---- one recipe, each op from either side --------------------------------------------------------

SWAPS = ("usm", "blur", "resize_area", "resize_linear_cubic", "resize_linear_cubic_by_size", "noise", "jpeg", "jpeg_chroma_nearest",
         "jpeg_restated", "jpeg_restated_nearest", "jpeg_restated_no_round", "jpeg_restated_zero_pad",
         "jpeg_restated_tables")


def _jpeg_op(img, quality, swaps):
    if "jpeg" in swaps:
        return bsr_jpeg(np.clip(img, 0, 1), quality)
    restated = [s for s in swaps if s.startswith("jpeg_restated")]
    if restated:  # libjpeg restated (8-bit in/out, edge pad, libjpeg tables, smooth chroma), one DiffJPEG trait on
        trait = restated[0]
        x = np.clip(img, 0, 1) if trait.endswith("no_round") else ref.to_float(ref.quantize(img))
        out = bsr_jpeg(x, int(quality), zero_pad=trait.endswith("zero_pad"), nearest=trait.endswith("nearest"),
                       tables="diffjpeg" if trait.endswith("tables") else "libjpeg")
        return out if trait.endswith("no_round") else ref.to_float(ref.quantize(out))
    if "jpeg_chroma_nearest" in swaps:
        return libjpeg_nearest(img, int(quality))
    return ref.jpeg(img, int(round(quality)))


def run(hr: np.ndarray, recipe: Recipe, swaps: frozenset, qualities: dict | None = None) -> np.ndarray:
    """Apply `recipe` with our ops, except those named in `swaps` (BasicSR restatement).
    qualities: float JPEG qualities by step name (BasicSR draws); else the recipe's integers."""
    img = ref.to_float(ref.crop_to_scale(hr, SCALE))
    hr_shape = img.shape[:2]
    interps = (("area",) if "resize_area" in swaps else ()) + \
        (("bilinear", "bicubic") if swaps & {"resize_linear_cubic", "resize_linear_cubic_by_size"} else ())
    by_size = "resize_linear_cubic_by_size" in swaps
    for step in recipe.steps:
        if isinstance(step, Usm):
            img = bsr_usm(img) if "usm" in swaps else ref.unsharp_mask(img, step.size, step.weight, step.threshold)
        elif isinstance(step, Blur):
            if step.kind != "none":
                img = bsr_filter2d(img, step.kernel) if "blur" in swaps else ref.blur(img, step.kernel)
        elif isinstance(step, Resize):
            img = bsr_resize(img, step, hr_shape, interps, by_size) if interps else \
                ref.apply_step(img, step, hr_shape, SCALE)
        elif isinstance(step, Noise):
            img = bsr_noise(img, step) if "noise" in swaps else ref.apply_step(img, step, hr_shape, SCALE)
        elif isinstance(step, Jpeg):
            img = _jpeg_op(img, (qualities or {}).get(step.name, step.quality), swaps)
    return ref.quantize(img)


# ---- BasicSR-style draws, as a Recipe (+ float JPEG qualities) -----------------------------------

def _bsr_kernel(r: random.Random, g: np.random.Generator, sigma_range, name):
    size = r.choice(range(7, 22, 2))
    if g.uniform() < 0.1:
        omega = g.uniform(math.pi / 3, math.pi) if size < 13 else g.uniform(math.pi / 5, math.pi)
        return Blur(name, "sinc", size, sinc_kernel(size, omega), omega=omega)
    kind = r.choices(KERNEL_KINDS, [0.45, 0.25, 0.12, 0.03, 0.12, 0.03])[0]
    sx = g.uniform(*sigma_range)
    sy, theta = (g.uniform(*sigma_range), g.uniform(-math.pi, math.pi)) if kind.endswith("aniso") else (sx, 0.0)
    beta = 1.0
    if kind.startswith(("generalized", "plateau")):
        hi = 4.0 if kind.startswith("generalized") else 2.0
        lo = 0.5 if kind.startswith("generalized") else 1.0
        beta = g.uniform(lo, 1) if g.uniform() < 0.5 else g.uniform(1, hi)
    return Blur(name, kind, size, family_kernel(kind, size, sx, sy, theta, beta))


def _bsr_resize(r, g, probs, rng_range, name, relative_to):
    mode = r.choices(["up", "down", "keep"], probs)[0]
    s = g.uniform(1, rng_range[1]) if mode == "up" else g.uniform(rng_range[0], 1) if mode == "down" else 1.0
    return Resize(name, mode, float(s), r.choice(["area", "bilinear", "bicubic"]), relative_to)


def _bsr_noise(g, sigma_range, poisson_range, name):
    gaussian = g.uniform() < 0.5
    level = g.uniform(*(sigma_range if gaussian else poisson_range))
    return Noise(name, "gaussian" if gaussian else "poisson", bool(g.uniform() < 0.4), float(level),
                 int(g.integers(2 ** 62)))


def bsr_recipe(seed: int, index: int) -> tuple[Recipe, dict]:
    """Real-ESRGAN x4plus draws for one sample, in its order (dataset kernels, then feed_data)."""
    r, g = random.Random(seed * 100003 + index), np.random.default_rng([seed, index, 7])
    k1, k2 = _bsr_kernel(r, g, (0.2, 3.0), "blur1"), _bsr_kernel(r, g, (0.2, 1.5), "blur2")
    sinc = Blur("sinc_final", "none", 1, pulse_kernel(1))
    if g.uniform() < 0.8:
        size, omega = r.choice(range(7, 22, 2)), g.uniform(math.pi / 3, math.pi)
        sinc = Blur("sinc_final", "sinc", size, sinc_kernel(size, omega), omega=omega)
    q = {n: float(g.uniform(30, 95)) for n in ("jpeg1", "jpeg_final")}
    steps = [Usm("usm", 51, 0.5, 10.0), k1,
             _bsr_resize(r, g, [0.2, 0.7, 0.1], (0.15, 1.5), "resize1", "input"),
             _bsr_noise(g, (1, 30), (0.05, 3), "noise1"), Jpeg("jpeg1", int(round(q["jpeg1"])))]
    if g.uniform() < 0.8:
        steps.append(k2)
    steps += [_bsr_resize(r, g, [0.3, 0.4, 0.3], (0.3, 1.2), "resize2", "lr"),
              _bsr_noise(g, (1, 25), (0.05, 2.5), "noise2")]
    resize = Resize("resize_final", "lr", 1.0, r.choice(["area", "bilinear", "bicubic"]), "lr")
    jpeg = Jpeg("jpeg_final", int(round(q["jpeg_final"])))
    first = g.uniform() < 0.5
    steps += [resize, sinc, jpeg] if first else [jpeg, resize, sinc]
    return Recipe("realesrgan-x4plus", SCALE, "resize_sinc_jpeg" if first else "jpeg_resize_sinc", tuple(steps)), q


# ---- the study -----------------------------------------------------------------------------------

BSR_OPS = frozenset({"usm", "blur", "resize_area", "resize_linear_cubic", "noise", "jpeg"})


def rows() -> dict[str, tuple[str, frozenset]]:
    """name → (draws: 'ours' | 'bsr', swapped ops)."""
    out = {"ours (apply_recipe)": ("ours", frozenset())}
    out.update({f"ours + {s} as BasicSR": ("ours", frozenset({s})) for s in SWAPS})
    out["ours draws + every BasicSR op"] = ("ours", BSR_OPS)
    out["basicsr-like (draws + ops)"] = ("bsr", BSR_OPS)
    out["basicsr-like draws + our ops"] = ("bsr", frozenset())
    for s in ("jpeg", "resize_area", "resize_linear_cubic"):
        out[f"basicsr-like + {s} ours"] = ("bsr", BSR_OPS - {s})
    out["basicsr-like + jpeg as libjpeg-nearest"] = ("bsr", BSR_OPS - {"jpeg"} | {"jpeg_chroma_nearest"})
    return out


def measure(tiles, seeds, selected) -> dict[str, np.ndarray]:
    """(seeds, 2) per-seed mean (PSNR, SSIM) of each selected row."""
    cfg = DegradeConfig()
    targets = [cv2.resize(t, (TILE // SCALE, TILE // SCALE), interpolation=cv2.INTER_AREA) for t in tiles]
    table = rows()
    out = {name: np.zeros((len(seeds), 2)) for name in selected}
    for si, seed in enumerate(seeds):
        ours = [sample_recipe(cfg, seed, f"t{i:03d}") for i in range(len(tiles))]
        bsr = [bsr_recipe(seed, i) for i in range(len(tiles))]
        for name in selected:
            draws, swaps = table[name]
            scores = []
            for i, (hr, target) in enumerate(zip(tiles, targets)):
                if name.startswith("ours (apply"):
                    lr = ref.apply_recipe(hr, ours[i])
                elif draws == "ours":
                    lr = run(hr, ours[i], swaps)
                else:
                    lr = run(hr, bsr[i][0], swaps, bsr[i][1])
                scores.append((psnr(lr, target), ssim(lr, target)))
            out[name][si] = np.mean(scores, axis=0)
    return out


def markdown(res: dict[str, np.ndarray], base: str) -> str:
    lines = ["| variant | PSNR dB (sd) | Δ PSNR vs ours (sd) | SSIM (sd) | Δ SSIM |", "|---|---|---|---|---|"]
    for name, v in res.items():
        d = v - res[base] if base in res else v * np.nan
        lines.append(f"| {name} | {v[:, 0].mean():.2f} ({v[:, 0].std(ddof=1):.2f}) | "
                     f"{d[:, 0].mean():+.2f} ({d[:, 0].std(ddof=1):.2f}) | "
                     f"{v[:, 1].mean():.3f} ({v[:, 1].std(ddof=1):.3f}) | {d[:, 1].mean():+.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tiles", type=int, default=48)
    ap.add_argument("--rows", default="all", help="comma-separated substrings of row names, or 'all'")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    tiles = hr_tiles(args.tiles)
    names = list(rows())
    if args.rows != "all":
        keys = args.rows.split(",")
        names = [n for n in names if n == names[0] or any(k in n for k in keys)]
    t0 = time.perf_counter()
    hr0, r0 = tiles[0], sample_recipe(DegradeConfig(), 0, "t000")
    assert np.array_equal(run(hr0, r0, frozenset()), ref.apply_recipe(hr0, r0)), "run() is not apply_recipe"
    res = measure(tiles, list(range(args.seeds)), names)
    print(f"{len(tiles)} tiles x {args.seeds} seeds, {time.perf_counter() - t0:.0f} s; "
          f"sd = across seeds of the per-seed mean")
    print(markdown(res, names[0]))


if __name__ == "__main__":
    main()
