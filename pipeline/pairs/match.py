"""Which HR file goes with which LR file, and at what scale.

Files pair by their path below their folder without the extension and the usual role or scale
suffixes (`0001.png` ~ `0001x4.png` (DIV2K), `Canon_001_HR.png` ~ `Canon_001_LR4.png` (RealSR),
`a_x1.png` ~ `a_x4.png` (DRealSR), `b_GT.png` ~ `b_LQ.jpg`), case-insensitively.
"""
from __future__ import annotations

import re
from pathlib import Path

from pipeline.config import SCALES
from pipeline.ingest.sources import EXTENSIONS

# one trailing role/scale suffix: `_x4`, `-LR`, `_lr4`, `.HR`, `_GT`, `_LQ`, or `x4` right after a digit
_SUFFIX = re.compile(r"(?:[_\-. ](?:x\d+|lr\d*|hr\d*|gt|lq)|(?<=\d)x\d+)$", re.IGNORECASE)


def pair_stem(rel: str | Path) -> str:
    """`shoot/Canon_001_LR4.png` → `shoot/Canon_001`: the name a file pairs by (suffixes stripped
    repeatedly, never down to nothing)."""
    stem = Path(rel).with_suffix("").as_posix()
    while (shorter := _SUFFIX.sub("", stem)) not in (stem, ""):
        stem = shorter
    return stem


def list_images(root: Path) -> dict[str, list[Path]]:
    """Image files below `root` (recursively, by extension) grouped by `pair_stem` of their relative path."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in EXTENSIONS:
            found.setdefault(pair_stem(path.relative_to(root)), []).append(path.relative_to(root))
    return found


def match_files(hr_dir: Path, lr_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[tuple[Path, str]]]:
    """(stem, HR file, LR file) for every stem found once on each side, sorted by stem; and
    (file, reason) for the rest: no partner, or several files claiming one stem. Paths are
    `hr_dir / relative` and `lr_dir / relative`, as given."""
    if hr_dir.resolve() == lr_dir.resolve():
        raise ValueError(f"{lr_dir}: the HR and LR folders are the same; give each its own folder")
    hrs, lrs = list_images(hr_dir), list_images(lr_dir)
    pairs, rejects = [], []
    for stem in sorted(set(hrs) | set(lrs)):
        hr, lr = hrs.get(stem, []), lrs.get(stem, [])
        for side, files, other, where in (("HR", hr, lr, lr_dir), ("LR", lr, hr, hr_dir)):
            root = hr_dir if side == "HR" else lr_dir
            if len(files) > 1:
                names = ", ".join(f.name for f in files)
                rejects += [(root / f, f"ambiguous: {len(files)} {side} files pair as {stem!r} ({names})")
                            for f in files]
            elif files and not other:
                rejects.append((root / files[0], f"no {'LR' if side == 'HR' else 'HR'} partner "
                                                 f"(nothing in {where} pairs as {stem!r})"))
        if len(hr) == 1 and len(lr) == 1:
            pairs.append((stem, hr_dir / hr[0], lr_dir / lr[0]))
    return pairs, rejects


def scale_of(hr_hw: tuple[int, int], lr_hw: tuple[int, int], scale: int | None, slack: float) -> int | str:
    """The integer scale of an HR/LR pair: `scale` if the sizes agree with it, else the one they
    show, within `slack` LR px per side (captured pairs are often cropped a little differently).
    Returns the scale, or the reason the sizes rule the pair out."""
    (hh, hw), (lh, lw) = hr_hw, lr_hw
    ratio = (hh / lh, hw / lw)
    found = round(sum(ratio) / 2)
    fits = found in SCALES and all(abs(big - found * small) <= found * slack for big, small in ((hh, lh), (hw, lw)))
    sizes = f"HR {hw}x{hh} is x{ratio[1]:.3g} by x{ratio[0]:.3g} of LR {lw}x{lh}"
    if not fits:
        return f"no integer scale: {sizes}; expected one of {list(SCALES)} (within {slack} LR px a side)"
    if scale is not None and found != scale:
        return f"wrong scale: {sizes}, expected x{scale}"
    return found
