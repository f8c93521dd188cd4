"""dvclive logging for the loop (rank 0 only): metrics with the training step, images named with it.

`Live(dir, dvcyaml=None, save_dvc_exp=False)`: metrics and plots are declared in dvc.yaml by hand
(DESIGN §6), and no experiment is saved from inside a stage. What it writes under `<out>/live/`:

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
from pathlib import Path

from dvclive import Live

IMAGE_RE = re.compile(r"^val_(\d+)\.png$")


def open_live(live_dir: Path, *, resume_step: int) -> Live:
    """A Live logger in `live_dir`; resume_step > 0 keeps (and trims) the history, 0 starts it empty."""
    if resume_step > 0:
        trim_history(live_dir, resume_step)
    return Live(str(live_dir), resume=resume_step > 0, dvcyaml=None, save_dvc_exp=False, report=None)


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
