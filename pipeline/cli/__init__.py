"""The `realsynth` command: the pipeline's library functions, outside DVC.

    realsynth --version
    realsynth ingest IN... OUT [--min-side N] [--crop C --step S] [--max-tiles-per-photo N]
                              [--val-fraction F] [--seed N] [--force]
    realsynth degrade IN OUT [--preset P] [--scale S] [--variants K] [--seed N] [--backend B] ... [--force]
    realsynth recipes OUT [--preset P] [--n N] [--seed S] [--force]
    realsynth inspect SET [--grid N] [--out GRID.png]
    realsynth replay SET KEY OUT.png
    realsynth pairs GT_DIR LQ_DIR OUT [--scale S] [--max-shift PX] [--max-residual PX] [--val-fraction F] [--force]
    realsynth upscale --checkpoint C IN OUT [--tile T --overlap O] [--weights W] [--force]
    realsynth benchmark HR OUT [--preset P] [--seed S] [--scale S] [--split all|train|val] [--force]
    realsynth score SET --checkpoint C [--checkpoint C2 ...] --out scores.json [--device D] [--tile T] [--force]
    realsynth export --checkpoint C OUT.onnx [--opset N] [--fp16] [--weights W] [--force]
    realsynth fingerprint SET_OR_FOLDER [--out F.json]
    realsynth calibrate REAL_LR OUT --hr HR [--preset P] [--budget N] [--seed S] [--force]
    realsynth preview PHOTO OUT.png [--preset P] [--n K] [--seed S]
    realsynth learn-degradation REAL_LR OUT --hr HR [--scale S] [--steps N] [--seed S] [--crop C] [--force]
    realsynth recover [REPO]          # after a killed `dvc repro`: dead locks, half-written outputs

Errors in the input are one line on stderr (`realsynth: error: ...`) and exit status 1; a mistyped
flag gets the usage of its subcommand and exit status 2. A command that writes a folder refuses an
existing non-empty one (touching nothing) unless `--force`, and nothing lands in the current
directory unless asked.
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

from pipeline.cli import calibrate, data, learned, models, pairs, repo, score
from pipeline.cli.common import DEFAULT_TILE, PRESET_NAMES, check_out_dir

__all__ = ["DEFAULT_TILE", "PRESET_NAMES", "build_parser", "check_out_dir", "main", "version"]
COMMANDS = (data, pairs, models, score, calibrate, learned, repo)  # each adds its subcommands, in this order, to `realsynth --help`


def version() -> str:
    """The installed package's version; in a source tree that was never installed, the version in
    the pyproject.toml beside the package; else 'unknown'."""
    from importlib import metadata

    try:
        return metadata.version("realsynth")
    except metadata.PackageNotFoundError:
        pass
    try:
        import tomllib

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (ImportError, OSError, KeyError, ValueError):
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="realsynth", description="Real-world SR corpora and GANs, reproducibly.")
    ap.add_argument("--version", action="version", version=f"realsynth {version()}")
    sub = ap.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_commands(sub)
    return ap


def _unrecognized(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """`unrecognized arguments: --tiel 64 (did you mean --tile?)`."""
    flags = [o for a in parser._actions for o in a.option_strings]
    hints = [m for e in extra if e.startswith("--")
             for m in difflib.get_close_matches(e.split("=")[0], flags, n=1)]
    return f"unrecognized arguments: {' '.join(extra)}" + (f" (did you mean {', '.join(hints)}?)" if hints else "")


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if "" not in sys.path and os.getcwd() not in sys.path:
        # As under `python -m` and DVC: a preset's user ops (`presets.myops:fn`) import from the working directory.
        sys.path.insert(0, os.getcwd())
    if extra:  # argparse would blame the top-level parser and print its usage, not the subcommand's
        args.parser.error(_unrecognized(args.parser, extra))
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as err:  # ParamsError is a ValueError
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"realsynth: error: {msg}", file=sys.stderr)
        return 1
