"""PNG settings for our own tiles: size, decode and encode time per libpng row-filter choice.

    .venv/bin/python bench/png.py [--reps 3]

Every 256 px tile of ten bundled sample photos (HR), and the x4 LR of each through a
realesrgan-x4plus recipe (LR 64 px): mean PNG size, then decode (cv2.imdecode, as `decode_png`) and
encode time per tile, best of `--reps`, OpenCV on one thread, all settings in one run. The first row
is what `encode_png` writes (zlib level 1, `PNG_FILTERS`); every setting must decode to the same
pixels (checked).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.degrade import DegradeConfig, sample_recipe  # noqa: E402
from pipeline.degrade.fast import apply_recipe  # noqa: E402
from pipeline.io.images import PNG_FILTERS, PNG_LEVEL  # noqa: E402
from pipeline.parallel import keep_freed_memory  # noqa: E402
from pipeline.params import build  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "colorwheel", "brick", "gravel")
LEVEL = [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL]
SETTINGS = {
    "encode_png (level 1, none/sub/up)": LEVEL + [cv2.IMWRITE_PNG_FILTER, PNG_FILTERS],
    "level 1, all five filters (before)": LEVEL,
    "level 1, none/sub/up, RLE strategy": LEVEL + [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FAST_FILTERS,
                                                   cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE],
    "level 1, up only, RLE strategy": LEVEL + [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
                                               cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE],
    "level 1, no filter": LEVEL + [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE],
}


def tiles() -> list[np.ndarray]:
    """Every whole 256 px tile of the sample photos, as BGR uint8 (what cv2.imencode takes)."""
    import skimage.data
    out = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        photo = np.stack([photo] * 3, -1) if photo.ndim == 2 else photo[..., :3]
        h, w = photo.shape[:2]
        out += [np.ascontiguousarray(photo[y:y + 256, x:x + 256, ::-1])
                for y in range(0, h - 255, 256) for x in range(0, w - 255, 256)]
    return out


def best_ms(fn, items, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter() - start) / len(items))
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    keep_freed_memory()  # as the stage's processes do
    hr = tiles()
    settings = build(DegradeConfig, {}, "degrade").settings
    lr = [apply_recipe(t, sample_recipe(settings, 0, f"t{i}", 0, scale=4)) for i, t in enumerate(hr)]

    def decode(data: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    print(f"{len(hr)} HR 256 px tiles of {len(PHOTOS)} sample photos, their x4 LR; best of {args.reps}")
    print("| tiles | setting | mean KB | decode ms | encode ms |")
    print("|---|---|---|---|---|")
    for label, images in (("HR 256", hr), ("LR 64", lr)):
        for name, params in SETTINGS.items():
            encoded = [cv2.imencode(".png", img, params)[1].tobytes() for img in images]
            if not all(np.array_equal(decode(e), img) for e, img in zip(encoded, images)):
                raise AssertionError(f"{name}: PNG round trip changed pixels")
            kb = sum(map(len, encoded)) / len(encoded) / 1e3
            print(f"| {label} | {name} | {kb:.1f} | {best_ms(decode, encoded, args.reps):.2f} | "
                  f"{best_ms(lambda img: cv2.imencode('.png', img, params), images, args.reps):.2f} |")


if __name__ == "__main__":
    main()
