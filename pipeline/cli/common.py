"""What the commands share: refusing to overwrite, and names spelled out so `--help` stays light."""
from __future__ import annotations

from pathlib import Path

# pipeline.degrade.config.PRESETS, spelled out so `--help` does not import the degradation engine
# (a test keeps the two equal)
PRESET_NAMES = ("realesrgan-x4plus", "realesrgan-x2plus", "bsrgan", "video", "camera", "web")
DEFAULT_TILE = 256  # pipeline.infer.DEFAULT_TILE, spelled out likewise (the same test keeps them equal)
FORCE_HELP = "replace OUT even if it exists and is not empty (default: refuse, touching nothing)"


def check_out_dir(out: str | Path, force: bool, inputs: tuple[str | Path, ...] = (), *,
                  recursive: bool = False) -> None:
    """Refuse, before anything is written, an OUT that would silently replace work: an existing
    non-empty folder or a file (unless `force`), or, even with `force`, a folder that is or holds one
    of `inputs` (replacing it would delete the input while it is read) or, when the inputs are read
    `recursive`ly, one inside an input folder (a second run would read the first one's PNGs).

    Raises:
        FileExistsError: `out` exists (and is not an empty folder) and `force` is off.
        ValueError: `out` is an input, contains one, or lies inside a recursively read one.
    """
    out = Path(out)
    target = out.resolve()
    for src in inputs:
        path = Path(src)
        if not path.exists():
            continue
        if path.resolve() == target or target in path.resolve().parents:
            raise ValueError(f"{out}: is or contains the input {src}; choose an OUT outside the inputs")
        if recursive and path.is_dir() and path.resolve() in target.parents:
            raise ValueError(f"{out}: inside the input folder {src}, which is read with its sub-folders; "
                             "choose an OUT outside it")
    if force or not (out.exists() or out.is_symlink()):
        return
    if not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder; pass --force to replace it")
    entries = sum(1 for _ in out.iterdir())
    if entries:
        raise FileExistsError(f"{out}: folder exists and is not empty ({entries} entries); "
                              "pass --force to replace it")


def check_out_file(out: str | Path, force: bool, folder_message: str) -> Path:
    """Refuse, before any work, a folder (`folder_message` says what OUT should name) or an existing
    file unless `force`. Returns OUT as a Path."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; {folder_message}")
    if out.exists() and not force:
        raise FileExistsError(f"{out}: exists; pass --force to replace it")
    return out
