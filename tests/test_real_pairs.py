"""`realsynth pairs`: captured HR/LR pairs paired by name, scale-checked, registered, cropped or
refused with a reason; and the shard stage mixing the real-pair set into training."""
import json

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data

from pipeline.io.images import decode_png
from pipeline.io.shards import ShardSet
from pipeline.pairs import Limits, align_pair, import_pairs, pair_stem, scale_of

S = 4
HR_SIDE = (320, 384)  # GT crop (h, w): LR 80x96, enough for the 3x3 local check


def _photo(name):
    img = getattr(skimage.data, name)()
    return np.ascontiguousarray(np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img[..., :3])


def _area(img, s=S):
    return cv2.resize(img, (img.shape[1] // s, img.shape[0] // s), interpolation=cv2.INTER_AREA)


def _crop(img, dy=0, dx=0, y=40, x=40):
    h, w = HR_SIDE
    return np.ascontiguousarray(img[y + dy:y + dy + h, x + dx:x + dx + w])


def _write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def _rotated(img, degrees):
    h, w = img.shape[:2]
    return cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1), (w, h))


def make_capture(root):
    """GT/ and LQ/ folders made from real photos: GT = a photo crop, LQ = INTER_AREA / 4 of a crop that
    is where GT is (good), or shifted, rotated, of another photo, at another scale; plus files without
    a partner and a corrupt one. Returns (gt, lq, {stem: HR shift of the LQ crop}) of the good pairs."""
    gt, lq = root / "GT", root / "LQ"
    astro, coffee, rocket, camera, brick = (_photo(n) for n in ("astronaut", "coffee", "rocket", "camera", "brick"))
    good = {"astro": (astro, 0, 0), "coffee": (coffee, 8, 0), "0003": (rocket, 9, -5), "shoot/cam": (camera, -6, 3)}
    lq_names = {"astro": "astro_x4", "coffee": "coffee_LR", "0003": "0003x4", "shoot/cam": "shoot/cam_LR4"}
    gt_names = {"coffee": "coffee_HR", "shoot/cam": "shoot/cam_HR"}
    for stem, (img, dy, dx) in good.items():
        _write(gt / f"{gt_names.get(stem, stem)}.png", _crop(img))
        _write(lq / f"{lq_names[stem]}.png", _area(_crop(img, dy, dx)))
    _write(gt / "far.png", _crop(coffee, x=100))                       # shifted 12 LR px: refused
    _write(lq / "far_x4.png", _area(_crop(coffee, 0, 48, x=100)))
    _write(gt / "tilt.png", _crop(astro))                              # rotated 2 degrees: refused
    _write(lq / "tilt_x4.png", _area(_crop(_rotated(astro, 2))))
    _write(gt / "other.png", _crop(brick))                             # another photo: refused
    _write(lq / "other_x4.png", _area(_crop(rocket)))
    _write(gt / "half.png", _crop(rocket))                             # made at x2: wrong scale
    _write(lq / "half_x4.png", _area(_crop(rocket), 2))
    _write(gt / "lonely.png", _crop(camera))                           # no LQ partner
    _write(lq / "stray_x4.png", _area(_crop(astro)))                   # no GT partner
    _write(gt / "broken.png", _crop(astro))                            # corrupt GT: truncated PNG
    (gt / "broken.png").write_bytes((gt / "broken.png").read_bytes()[:5000])
    _write(lq / "broken_x4.png", _area(_crop(astro)))
    return gt, lq, {stem: (dy, dx) for stem, (_, dy, dx) in good.items()}
