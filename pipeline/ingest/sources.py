"""Where HR photos come from: the bundled sample photos, folders, globs, or list files."""
from __future__ import annotations

import glob
import os
from pathlib import Path

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

# Real photographs that ship inside scikit-image's package data: the default corpus, so the demo
# runs offline. (Diagrams, tiny test patterns and the near-duplicate stereo twin are left out.)
SAMPLE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "retina.jpg", "rocket.jpg",
)


def sample_dir() -> Path:
    import skimage.data
    return Path(skimage.data.__file__).parent


def resolve_sources(sources: list[str] | tuple[str, ...], base: Path | None = None,
                    root: Path | None = None) -> list[Path]:
    """Expand sources into a sorted, de-duplicated list of candidate files.

    `sample` → the bundled photos; a folder → its image files, recursively (by extension, case
    insensitive); a glob → its matches (any extension: a bad file is rejected later, with a reason);
    `@list.txt` → one path per line (blank lines and `#` comments skipped); a file → itself.
    With `root` (the DVC stage passes `paths.photos`, the folder ingest depends on), every file but the
    sample's must lie inside it, so that DVC sees each photo ingest reads.

    Raises:
        FileNotFoundError: a folder, list file or plain path that does not exist, or a glob with no match.
        ValueError: with `root`, a file outside it.
    """
    base = base or Path.cwd()
    found: list[Path] = []
    for src in sources:
        files = _resolve_one(src, base)
        if root is not None and src != "sample":
            _check_inside(files, src, _abs(str(root), base))
        found += files
    # normpath: `lists/../shoot/a.png` and `shoot/a.png` are one file, not a duplicate to reject
    return sorted({Path(os.path.normpath(p.absolute())) for p in found})


def _resolve_one(src: str, base: Path) -> list[Path]:
    if src == "sample":
        d = sample_dir()
        return [d / name for name in SAMPLE_PHOTOS if (d / name).is_file()]
    if src.startswith("@"):
        listing = _abs(src[1:], base)
        if not listing.is_file():
            raise FileNotFoundError(f"{src}: list file not found")
        lines = (line.strip() for line in listing.read_text().splitlines())
        return [_abs(line, listing.parent) for line in lines if line and not line.startswith("#")]
    path = _abs(src, base)
    if path.is_dir():
        return [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS]
    if path.exists():
        return [path]
    if glob.has_magic(src):
        matches = [Path(p) for p in glob.glob(str(path), recursive=True) if os.path.isfile(p)]
        if not matches:
            raise FileNotFoundError(f"{src}: glob matched no files")
        return matches
    raise FileNotFoundError(f"{src}: no such file or folder")


def _check_inside(files: list[Path], src: str, root: Path) -> None:
    """Lexically (`..` collapsed, symlinks kept as named: DVC hashes what a link inside `root` points to)."""
    top = os.path.normpath(root)
    for f in files:
        if os.path.commonpath([top, os.path.normpath(f)]) != top:
            raise ValueError(f"{src}: {f} is outside paths.photos ({root}), the folder DVC tracks for ingest")


def _abs(p: str, base: Path) -> Path:
    path = Path(os.path.expanduser(p))
    return path if path.is_absolute() else base / path
