"""dvclive logging for the loop (rank 0 only): metrics with the training step, images named with it.

The loop calls `TrainLog`: loss averages every `log_every` steps, validations, the final one.
`Live(dir, dvcyaml=None, save_dvc_exp=False)`: metrics and plots are declared in dvc.yaml by hand,
and no experiment is saved from inside a stage. What it writes under `<out>/live/`:

    metrics.json                         latest value of every metric + "step"
    plots/metrics/train/<name>.tsv       step-indexed history (loss_pix, lr_g, d_real, ...)
    plots/metrics/val/<name>.tsv         psnr_y, psnr_y_bicubic
    plots/images/val_<step:06d>.png      rows of [bicubic | net | HR] on val patches

On resume the history past the checkpoint's step (logged between that checkpoint and the kill) is
cut away, so the curves hold each step once.
"""
from __future__ import annotations

import csv
import io
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from dvclive import Live

from pipeline.train.validate import bicubic_psnr_y, psnr_y, sample_grid, to_images

IMAGE_RE = re.compile(r"^val_(\d+)\.png$")


def open_live(live_dir: Path, *, resume_step: int) -> Live:
    """A Live logger in `live_dir`; resume_step > 0 keeps (and trims) the history, 0 starts it empty."""
    if resume_step > 0:
        trim_history(live_dir, resume_step)
    try:
        return Live(str(live_dir), resume=resume_step > 0, dvcyaml=None, save_dvc_exp=False, report=None)
    except Exception as err:  # noqa: BLE001 - scmrepo's SCMError; dvclive reads the git HEAD it logs against
        if "Empty git repo" not in str(err):
            raise
        raise ValueError("dvclive needs a first git commit in this repository to log against; "
                         "commit (`git add -A && git commit -m init`), then run again") from None


def trim_history(live_dir: Path, step: int) -> None:
    """Drop metric rows and step images logged after `step` (they are about to be logged again)."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        rows = _rows(tsv)
        if not rows:
            continue
        fields = list(rows[0])
        kept = [r for r in rows if int(r["step"]) <= step]
        if len(kept) != len(rows):
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fields, delimiter="\t", lineterminator=os.linesep)
            writer.writeheader()
            writer.writerows(kept)
            tsv.write_text(buf.getvalue(), encoding="utf-8")
    images = live_dir / "plots" / "images"
    if images.is_dir():
        for img in images.iterdir():
            m = IMAGE_RE.match(img.name)
            if m and int(m.group(1)) > step:
                img.unlink()


def logged_value(live_dir: Path, name: str, step: int) -> float | None:
    """The value of metric `name` ("val/psnr_y") logged at `step` in `live_dir`'s history, or None."""
    tsv = live_dir / "plots" / "metrics" / f"{name}.tsv"
    if not tsv.is_file():
        return None
    return next((float(r[name.rsplit("/", 1)[-1]]) for r in _rows(tsv) if int(r["step"]) == step), None)


def _rows(tsv: Path) -> list[dict[str, str]]:
    """The rows of a dvclive metric history (`step<TAB>name` header)."""
    with open(tsv, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def log_metrics(live: Live, step: int, values: dict[str, float]) -> None:
    """Log `values` ({"train/loss_pix": 0.03, ...}) at `step` and rewrite metrics.json."""
    live.step = step
    for name, value in values.items():
        live.log_metric(name, value)
    live.make_summary()


class TrainLog:
    """Rank 0's record of a run, in `live_dir` (dvclive) and on the console: the step losses averaged
    over each logging window with the lrs and skipped steps, and validations of the generator.

    val: the fixed val batches ([] = no validation). upscale: val batches → SR uint8 images (the EMA
    generator's). The bicubic baseline is scored once, here.
    """

    def __init__(self, live_dir: Path, *, resume_step: int, val: Sequence[dict], scale: int,
                 upscale: Callable[[Sequence[dict]], list[np.ndarray]], tag: str, iterations: int) -> None:
        self.live_dir, self.val, self.scale, self.upscale, self.tag = live_dir, val, scale, upscale, tag
        self.iterations = iterations
        self.live = open_live(live_dir, resume_step=resume_step)
        self.psnr_bicubic = bicubic_psnr_y(val, scale) if val else float("nan")
        self.psnr_last, self.val_step = float("nan"), -1
        self.window = LossWindow()

    def add(self, losses: Mapping[str, Any]) -> None:
        """Count one step and its losses (none for a skipped step) in the current window."""
        self.window.add(losses)

    def log_window(self, step: int, *, lr_g: float, lr_d: float | None, skipped: int) -> None:
        """Log the window's loss means, the lrs (lr_d None: no D) and the skipped steps; start a new window."""
        values = {**self.window.means(), "train/lr_g": lr_g, "train/skipped_steps": float(skipped)}
        if lr_d is not None:
            values["train/lr_d"] = lr_d
        log_metrics(self.live, step, values)
        shown = ", ".join(f"{k.removeprefix('train/')} {v:.4g}" for k, v in values.items()
                          if k != "train/skipped_steps")
        print(f"{self.tag}: step {step}/{self.iterations}: {shown}; {self.window.seconds_per_step():.2f} s/step")
        self.window = LossWindow()

    def validate(self, step: int) -> float:
        """PSNR-Y of `upscale` on the val batches; logs it, the bicubic baseline and a sample grid at `step`."""
        srs = self.upscale(self.val)
        hrs = [img for b in self.val for img in to_images(b["hr"])]
        value = psnr_y(srs, hrs, self.scale)
        log_metrics(self.live, step, {"val/psnr_y": value, "val/psnr_y_bicubic": self.psnr_bicubic})
        n = min(4, len(srs))
        lrs = to_images(self.val[0]["lr"])[:n]
        self.live.log_image(f"val_{step:06d}.png", sample_grid(lrs, srs[:n], hrs[:n], self.scale))
        print(f"{self.tag}: step {step}: val PSNR-Y {value:.2f} dB (bicubic {self.psnr_bicubic:.2f} dB)")
        self.psnr_last, self.val_step = value, step
        return value

    def finish(self, start: int) -> None:
        """Validate at the last step unless that was done, and close the dvclive run. A run that started
        (resumed) at its last step validated there before: the logged value is reused, not logged twice."""
        if self.val and self.val_step != self.iterations:
            before = logged_value(self.live_dir, "val/psnr_y", self.iterations) if start == self.iterations else None
            if before is None:
                self.validate(self.iterations)
            else:
                self.psnr_last = before
        self.live.end()


class LossWindow:
    """The step losses since the last log (name → (sum, steps)), and the time those steps took."""

    def __init__(self) -> None:
        self.sums: dict[str, tuple[Any, int]] = {}
        self.steps = 0
        self.t0 = time.time()

    def add(self, losses: Mapping[str, Any]) -> None:
        """Count one step with its losses (detached scalar tensors; a skipped step has none)."""
        for k, v in losses.items():
            total, count = self.sums.get(k, (0.0, 0))
            self.sums[k] = (total + v, count + 1)
        self.steps += 1

    def means(self) -> dict[str, float]:
        """{"train/<name>": mean over the steps that logged it}."""
        return {f"train/{k}": float(total) / count for k, (total, count) in self.sums.items()}

    def seconds_per_step(self) -> float:
        return (time.time() - self.t0) / self.steps
