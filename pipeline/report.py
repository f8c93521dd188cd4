"""Small helpers for the human-readable reports beside each stage's output (Markdown, PNG sheets)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # only a type here; ingest's workers import this module and start faster without pandas
    import pandas as pd

from pipeline.io.images import decode_png, encode_png


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A DataFrame as a GitHub Markdown table (no extra dependency)."""
    cols = [str(c) for c in df.columns]
    def cell(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|")
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(rows)


def fit(img: np.ndarray, side: int, nearest: bool = False) -> np.ndarray:
    """Resize so the longer side is `side`, keeping the aspect ratio."""
    h, w = img.shape[:2]
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def grid(rows: Sequence[Sequence[np.ndarray]], cell: int = 192, pad: int = 4, nearest: bool = False) -> np.ndarray:
    """Images (HWC uint8 RGB) laid out in rows of cells of `cell` px, on white."""
    n_cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (cell + pad) + pad, n_cols * (cell + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            small = fit(img, cell, nearest=nearest)
            y, x = pad + i * (cell + pad), pad + j * (cell + pad)
            out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def contact_sheet(pngs: Sequence[bytes], path: Path, labels: Sequence[str] | None = None, cols: int = 4,
                  cell: int = 192) -> None:
    """Write a grid PNG of encoded tiles (at most `cols` per row)."""
    imgs = [decode_png(b) for b in pngs]
    if not imgs:
        imgs = [np.full((cell, cell, 3), 255, np.uint8)]
    rows = [imgs[i:i + cols] for i in range(0, len(imgs), cols)]
    Path(path).write_bytes(encode_png(grid(rows, cell=cell)))
