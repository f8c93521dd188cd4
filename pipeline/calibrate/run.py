"""`realsynth calibrate`: fit a preset to a folder of real LR photos from the user's own HR, and
write what was found.

    summary = calibrate(Path("real_lr"), Path("my_hr"), tmp, preset="realesrgan-x4plus", budget=40)

`out` (wrap it in `atomic_dir`) receives `preset.yaml` (a full preset file for `--preset` /
`degrade.preset`), `fingerprints.json` (real, default, calibrated fingerprints, distances, the
knobs and every point the search measured), `report.md` and `gallery/*.png` (real LR, default
LR, calibrated LR, side by side).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io.images import encode_png

from .fingerprint import (SCALES, distance, fingerprint, format_table, image_features, json_ready, read_lr_images,
                          summarize)
from .search import knob_effects, search, synthesize, tuned_preset

GALLERY = 4  # rows of the report's gallery


def hr_crops(path: Path, *, n: int = 16, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    """`n` crops of `size` px from the HR images of `path` (a folder, recursive, or an HR shard
    set's `hr.png`), taken round-robin over the images in key order at positions drawn from `seed`.
    Images with a side under `size` are left out.
    Raises FileNotFoundError when no image is large enough, ValueError on n or size below 1."""
    if n < 1 or size < 1:
        raise ValueError(f"crops and crop size must be at least 1, got {n} and {size}")
    from pipeline.degrade.sources import open_source, read_source_hrs

    images = [img for img in read_source_hrs(open_source(Path(path))) if min(img.shape[:2]) >= size]
    if not images:
        raise FileNotFoundError(f"{path}: no HR image with both sides >= {size} px (lower --crop)")
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        img = images[k % len(images)]
        y = int(rng.integers(0, img.shape[0] - size + 1))
        x = int(rng.integers(0, img.shape[1] - size + 1))
        out.append(np.ascontiguousarray(img[y: y + size, x: x + size]))
    return out


def calibrate(real_lr: Path, hr: Path, out: Path, *, preset: str = "realesrgan-x4plus", budget: int = 40,
              seed: int = 0, crops: int = 16, crop_size: int = 256, variants: int = 1,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit `preset` to the real LR of `real_lr` from crops of `hr`, writing into `out` (module
    docstring). Returns {"distance_default", "distance_calibrated", "knobs", "seconds", "preset"}.

    Raises FileNotFoundError / ValueError on bad inputs, ParamsError on an unknown preset.
    """
    from pipeline.degrade.preset import dump_preset, load_preset

    start = time.perf_counter()
    real = read_lr_images(Path(real_lr))
    real_images = [img for _, img, _ in real]
    real_fp = summarize([image_features(img, jpeg) for _, img, jpeg in real])
    base = load_preset(preset)
    hrs = hr_crops(Path(hr), n=crops, size=crop_size, seed=seed)
    default_lrs = synthesize(base, hrs, seed=seed, variants=variants)
    default_fp = fingerprint(default_lrs)
    fit = search(base, hrs, real_fp, budget=budget, seed=seed, variants=variants, progress=progress)
    fitted = tuned_preset(base, fit.knobs, name=f"{base.name}-calibrated")
    calibrated_lrs = synthesize(fitted, hrs, seed=seed, variants=variants)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "preset.yaml").write_text(dump_preset(fitted))
    summary = {"preset": fitted.name, "base": preset, "seed": seed, "budget": budget, "crops": crops,
               "crop_size": crop_size, "variants": variants, "knobs": fit.knobs,
               "distance_default": distance(default_fp, real_fp), "distance_calibrated": fit.distance,
               "seconds": round(time.perf_counter() - start, 1)}
    fps = {"real": real_fp, "default": default_fp, "calibrated": fit.fingerprint}
    doc = {**summary, "fingerprints": {k: json_ready(v) for k, v in fps.items()},
           "scales": {k: {"scale": s, "log10": lg} for k, (s, lg) in SCALES.items()},
           "history": [{"knobs": x, "distance": d} for x, d in fit.history]}
    (out / "fingerprints.json").write_text(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n")
    rows = write_gallery(out / "gallery", real_images, default_lrs, calibrated_lrs)
    (out / "report.md").write_text(report_text(summary, fps, rows, str(real_lr), str(hr)))
    return summary


def _crop_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    y, x = max(0, (img.shape[0] - h) // 2), max(0, (img.shape[1] - w) // 2)
    return img[y: y + h, x: x + w]


def write_gallery(folder: Path, real: list[np.ndarray], default: list[np.ndarray],
                  calibrated: list[np.ndarray]) -> list[tuple[str, str, str]]:
    """GALLERY rows of PNGs: a real LR (its central crop, the synthetic LR's size), a default-preset
    LR and the calibrated LR of the same crop and recipe draw. Returns the rows' relative paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(min(GALLERY, len(default), len(calibrated))):
        h, w = default[i].shape[:2]
        names = (f"real_{i}.png", f"default_{i}.png", f"calibrated_{i}.png")
        imgs = (_crop_to(real[i % len(real)], h, w), default[i], calibrated[i])
        for name, img in zip(names, imgs):
            (folder / name).write_bytes(encode_png(np.ascontiguousarray(img)))
        rows.append(tuple(f"gallery/{n}" for n in names))
    return rows


def report_text(summary: dict[str, Any], fps: dict[str, dict[str, float]], rows: list[tuple[str, str, str]],
                real_lr: str, hr: str) -> str:
    """report.md: what was fitted, the fingerprints side by side, the gallery."""
    lines = [
        "# Calibration report", "",
        f"Real LR: `{real_lr}` ({int(fps['real']['images'])} images). HR: `{hr}` ({summary['crops']} crops of "
        f"{summary['crop_size']} px, {summary['variants']} variant(s) each, seed {summary['seed']}).",
        f"Base preset `{summary['base']}` → `preset.yaml` (`{summary['preset']}`), {summary['budget']} "
        f"fingerprints measured, {summary['seconds']} s.", "",
        f"Fingerprint distance to the real LR (RMS of feature differences over their scales, "
        f"`pipeline.calibrate.distance`): default **{summary['distance_default']:.3f}** → calibrated "
        f"**{summary['distance_calibrated']:.3f}**.", "",
        "Knobs (0 is the base preset):", "",
        *[f"- {line}" for line in knob_effects(summary["knobs"])], "",
        "## Fingerprints", "",
        format_table({"real LR": fps["real"], "default": fps["default"], "calibrated": fps["calibrated"]}), "",
        "Scales (one scale of difference counts 1): "
        + ", ".join(f"{k} {s:g}{' (log10)' if lg else ''}" for k, (s, lg) in SCALES.items()) + ".", "",
        "## Gallery", "",
        "Real LR (central crop) | default preset | calibrated preset (same HR crop and recipe draw)", "",
        "| real LR | default | calibrated |", "|---|---|---|",
        *[f"| ![real]({a}) | ![default]({b}) | ![calibrated]({c}) |" for a, b, c in rows], "",
    ]
    return "\n".join(lines)
