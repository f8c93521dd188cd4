"""OUT/report.md of a learn-degradation run: the run, the selection curve, its losses, statistics of clean / learned / real
LR (`stats.py`) and OUT/samples.png, a grid of clean LR (top), the learned degrader's LR of the same
crops (middle) and real LR crops (bottom, other scenes: the domains are unpaired)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pipeline.io.atomic import atomic_write_bytes, atomic_write_text
from pipeline.io.images import encode_png

from .select import curve_lines
from .stats import STATS, set_stats
from .train import losses_of

SAMPLES = "samples.png"


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(size, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return img[y:y + s, x:x + s]


def degrade_all(net, images: list[np.ndarray], strength: float = 1.0, jpeg_quality: int = 0) -> list[np.ndarray]:
    """The learned LR of each (H, W, 3) uint8 image (`op.degrade_lr`, quantized; image i's noise from
    seed i), then JPEG at `jpeg_quality` when it is > 0, as the preset does."""
    from pipeline.degrade.spec import jpeg, quantize, to_float

    from .op import degrade_lr
    out = [degrade_lr(net, to_float(img), strength, np.random.default_rng(i)) for i, img in enumerate(images)]
    return [quantize(jpeg(lr, jpeg_quality) if jpeg_quality else lr) for lr in out]


def sample_grid(clean: list[np.ndarray], learned: list[np.ndarray], real: list[np.ndarray],
                n: int = 4, size: int = 96) -> np.ndarray:
    """Three rows of up to `n` centre crops of `size` px each (resized crops padded black)."""
    def row(images: list[np.ndarray]) -> np.ndarray:
        tiles = np.zeros((size, size * n, 3), np.uint8)
        for i, img in enumerate(images[:n]):
            c = center_crop(img, size)
            tiles[:c.shape[0], i * size:i * size + c.shape[1]] = c
        return tiles
    return np.concatenate([row(clean), row(learned), row(real)], axis=0)


def selection_lines(summary, cfg) -> list[str]:
    """What was selected and why, then the curve; one line with holdout 0."""
    if summary.selected is None:
        return ["No selection (holdout 0): `degrader.pth` is G at the last step."]
    head = (f"`degrader.pth` is G at step {summary.selected}, the step whose preset LR of the held-out HR bands "
            "comes closest to the held-out real LR bands (`pipeline.calibrate` fingerprint distance; a band of "
            f"{cfg.holdout:g} of every image along one edge, never in a training crop). ")
    head += ("No step beat step 0, where G is the identity: the learned G adds nothing here, and the preset "
             "is resize + codec in effect." if summary.selected == 0 else
             f"Step 0 (G = identity, resize + codec alone) scored {summary.curve[0][1]:.4f}.")
    return [head, ""] + curve_lines(summary.curve, summary.selected)


def write_report(out: Path, cfg, summary, net, *, real_lr: Path, hr: Path) -> None:
    """OUT/report.md and OUT/samples.png (atomic each)."""
    learned = degrade_all(net, summary.clean, jpeg_quality=cfg.jpeg_quality)
    atomic_write_bytes(out / SAMPLES, encode_png(sample_grid(summary.clean, learned, summary.real)))
    stats = {"clean LR (HR downscaled)": set_stats(summary.clean), "learned LR": set_stats(learned),
             "real LR": set_stats(summary.real)}
    lines = [f"# learn-degradation: {real_lr} (real LR) from {hr} (HR) at x{cfg.scale}", "",
             f"{summary.steps} steps" + (f" (resumed at {summary.resumed_from})" if summary.resumed_from else "")
             + "; degrader: `degrader.pth`; preset: `preset.yaml`.", "",
             "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in dataclasses.asdict(cfg).items()]
    lines += ["", "## Selection on the held-out bands (pipeline/learned/select.py)", ""] + selection_lines(summary, cfg)
    names = losses_of(cfg.method)
    lines += ["", "## Losses (step: value)", "", "| step | " + " | ".join(names) + " |",
              "|---" * (len(names) + 1) + "|"]
    every = max(1, len(summary.history) // 10)
    rows = summary.history[::every]
    for h in rows + ([summary.history[-1]] if summary.history and rows[-1] is not summary.history[-1] else []):
        lines.append(f"| {int(h[0]) + 1} | " + " | ".join(f"{v:.4f}" for v in h[1:]) + " |")
    lines += ["", "## LR statistics (pipeline/learned/stats.py)", "", "| set | " + " | ".join(STATS) + " |",
              "|---" * (len(STATS) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{s[k]:.4f}" for k in STATS) + " |" for name, s in stats.items()]
    lines += ["", f"![clean LR / learned LR / real LR]({SAMPLES})",
              "", "Rows: clean LR, the learned degrader on the same crops, real LR (other scenes).", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
