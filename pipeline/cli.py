"""The `realsynth` command: the pipeline's library functions, outside DVC.

    realsynth --version
    realsynth ingest IN... OUT [--min-side N] [--crop C --step S] [--max-tiles-per-photo N]
                              [--val-fraction F] [--seed N] [--force]
    realsynth degrade IN OUT [--preset P] [--scale S] [--variants K] [--seed N] [--backend B] ... [--force]
    realsynth recipes OUT [--preset P] [--n N] [--seed S] [--force]
    realsynth inspect SET [--grid N] [--out GRID.png]
    realsynth replay SET KEY OUT.png
    realsynth upscale --checkpoint C IN OUT [--tile T --overlap O] [--weights W] [--force]
    realsynth recover [REPO]          # after a killed `dvc repro`: dead locks, half-written outputs

Errors in the input are one line on stderr (`realsynth: error: ...`) and exit status 1; a mistyped
flag gets the usage of its subcommand and exit status 2. A command that writes a folder refuses an
existing non-empty one (touching nothing) unless `--force`, and nothing lands in the current
directory unless asked.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from pipeline.params import ParamsError

# pipeline.degrade.config.PRESETS, spelled out so `--help` does not import the degradation engine
# (a test keeps the two equal)
PRESET_NAMES = ("realesrgan-x4plus", "realesrgan-x2plus", "bsrgan")
DEFAULT_TILE = 256  # pipeline.infer.DEFAULT_TILE, spelled out likewise (the same test keeps them equal)
FORCE_HELP = "replace OUT even if it exists and is not empty (default: refuse, touching nothing)"


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

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (ImportError, OSError, KeyError, ValueError):
        return "unknown"


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


def _ingest(args: argparse.Namespace) -> int:
    from pipeline.config import IngestConfig
    from pipeline.ingest import cap_summary, ingest
    from pipeline.io.atomic import atomic_dir
    from pipeline.params import build

    overrides = {k: v for k, v in dict(min_side=args.min_side, crop=args.crop, step=args.step,
                                        max_tiles_per_photo=args.max_tiles_per_photo,
                                        val_fraction=args.val_fraction, workers=args.workers,
                                        alpha=args.alpha).items() if v is not None}
    if args.scales:
        overrides["scales"] = [float(s) for s in args.scales.split(",")]
    cfg = build(IngestConfig, {**overrides, "sources": list(args.inputs)}, "ingest")
    check_out_dir(args.out, args.force, tuple(args.inputs), recursive=True)
    with atomic_dir(args.out) as tmp:
        stats = ingest(cfg.sources, tmp, cfg, seed=args.seed, scale=args.scale)
    print(f"{stats.accepted}/{stats.candidates} photos -> {stats.tiles} tiles (train {stats.train_tiles}, "
          f"val {stats.val_tiles}) in {stats.shards} shards -> {args.out}; {stats.rejected} rejected "
          f"(see {Path(args.out) / 'rejects.csv'}){cap_summary(stats)}")
    return 0


def _degrade_cfg(args: argparse.Namespace):
    from pipeline.degrade.config import DegradeConfig
    from pipeline.params import build

    data = {k: v for k, v in dict(preset=args.preset, variants=args.variants, backend=args.backend,
                                   batch_size=getattr(args, "batch_size", None),
                                   workers=getattr(args, "workers", None)).items() if v is not None}
    return build(DegradeConfig, data, "degrade")


def _scale(args: argparse.Namespace, cfg) -> int:
    """--scale, else the preset's own (2 for realesrgan-x2plus)."""
    return cfg.settings.scale if args.scale is None else args.scale


def _degrade(args: argparse.Namespace) -> int:
    from pipeline.degrade import run
    from pipeline.io.atomic import atomic_dir
    from pipeline.parallel import keep_freed_memory

    cfg = _degrade_cfg(args)
    check_out_dir(args.out, args.force, (args.input,), recursive=True)
    keep_freed_memory()  # a CLI process: reuse freed arrays instead of faulting in new ones
    with atomic_dir(args.out) as tmp:
        stats = run.degrade_set(Path(args.input), tmp, cfg, seed=args.seed, scale=_scale(args, cfg))
    print(f"degrade: {stats['samples']} LR samples ({cfg.preset}, {stats['backend']}) in {stats['shards']} "
          f"shards -> {args.out}; {stats['skipped']} skipped (see {Path(args.out) / 'skipped.csv'}); "
          f"report: {Path(args.out) / 'report.md'}")
    return 0


def _recipes(args: argparse.Namespace) -> int:
    from pipeline.degrade import run
    from pipeline.io.atomic import atomic_dir

    cfg = _degrade_cfg(args)
    check_out_dir(args.out, args.force)
    with atomic_dir(args.out) as tmp:
        run.draw_recipes(tmp, cfg, n=args.n, seed=args.seed, scale=_scale(args, cfg))
    print(f"recipes: {args.n} recipes -> {args.out}/recipes.parquet, kernels.npz, report.md")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from pipeline.degrade import run
    from pipeline.io.images import encode_png

    img, same = run.replay_sample(Path(args.set), args.key)
    Path(args.out).write_bytes(encode_png(img))
    print(f"replay: {args.key} -> {args.out}: {'identical to' if same else 'DIFFERS from'} the stored sample")
    return 0 if same else 1


def _inspect(args: argparse.Namespace) -> int:
    from pipeline.data.inspect import inspect_set

    print(inspect_set(Path(args.set), grid=args.grid, seed=args.seed, out=args.out))
    return 0


def _upscale(args: argparse.Namespace) -> int:
    from pipeline.infer import upscale_path
    from pipeline.io.atomic import atomic_dir

    kw = dict(tile=args.tile, overlap=args.overlap, device=args.device, weights=args.weights)
    inp, out = Path(args.input), Path(args.out)
    if inp.is_dir():  # a folder out: refused if it holds anything, else written whole or not at all
        check_out_dir(out, args.force, (inp,))
        with atomic_dir(out) as tmp:
            n = upscale_path(Path(args.checkpoint), inp, tmp, **kw)
    else:
        n = upscale_path(Path(args.checkpoint), inp, out, **kw)
    print(f"upscale: {n} image(s) -> {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="realsynth", description="Real-world SR corpora and GANs, reproducibly.")
    ap.add_argument("--version", action="version", version=f"realsynth {version()}")
    sub = ap.add_subparsers(dest="command", required=True)

    # Help texts name the params.yaml defaults (pipeline/config.py, pipeline/degrade/config.py);
    # an unset flag keeps the default, and the config, not argparse, validates every value.
    p = sub.add_parser("ingest", help="HR photos (files, folders, globs, @lists, 'sample') -> HR tile shard set")
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="image files, folders (recursive), globs, @list.txt files, or 'sample' (bundled photos)")
    p.add_argument("out", metavar="OUT", help="new HR shard set directory (written atomically)")
    p.add_argument("--min-side", type=int, metavar="N", help="reject photos whose shorter side is below N px (128)")
    p.add_argument("--crop", type=int, metavar="C", help="tile size in px (400)")
    p.add_argument("--step", type=int, metavar="S", help="tile stride in px (200)")
    p.add_argument("--scales", help="comma-separated multiscale variants, e.g. 1,0.75,0.5 (1)")
    p.add_argument("--max-tiles-per-photo", type=int, metavar="N",
                   help="keep a seeded subset of at most N tiles per photo, all scales together (0: no cap)")
    p.add_argument("--val-fraction", type=float, metavar="F", help="share of photos held out for validation (0.2)")
    p.add_argument("--alpha", choices=["composite", "reject"], help="photos with transparency (composite)")
    p.add_argument("--workers", type=int, metavar="W", help="processes (0: all cores)")
    p.add_argument("--seed", type=int, default=0, help="train/val split and tile cap seed (0)")
    p.add_argument("--scale", type=int, default=4, help="SR scale the tiles are meant for (4)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(fn=_ingest, parser=p)

    for name, fn, help_ in (("degrade", _degrade, "HR folder or shard set -> degraded LR shard set"),
                            ("recipes", _recipes, "draw degradation recipes without images")):
        p = sub.add_parser(name, help=help_)
        if name == "degrade":
            p.add_argument("input", metavar="IN", help="an HR shard set (from ingest) or a folder of images")
            p.add_argument("out", metavar="OUT", help="new LR shard set directory (written atomically)")
        else:
            p.add_argument("out", metavar="OUT",
                           help="new directory: recipes.parquet, kernels.npz, report.md (written atomically)")
        p.add_argument("--preset", metavar="P",
                       help=f"{' | '.join(PRESET_NAMES)} (realesrgan-x4plus); ranges and probabilities "
                            "come from the preset")
        p.add_argument("--scale", type=int, metavar="S",
                       help="SR factor: 1, 2, 3, 4 or 8 (the preset's: 2 for realesrgan-x2plus, else 4)")
        p.add_argument("--seed", type=int, default=0, metavar="N",
                       help="recipes depend only on (seed, sample key, variant) (0)")
        if name == "degrade":
            p.add_argument("--variants", type=int, metavar="K", help="LR variants per HR image (1)")
            p.add_argument("--backend", choices=["auto", "dali", "reference"],
                           help="auto: DALI on a GPU, otherwise reference workers (auto)")
            p.add_argument("--batch-size", type=int, metavar="B",
                           help="samples per DALI batch or worker task; output bytes do not depend on it (32)")
            p.add_argument("--workers", type=int, metavar="W",
                           help="reference-backend processes (0: all cores); output bytes do not depend on it")
        else:
            p.add_argument("--n", type=int, default=1000, metavar="N", help="recipes to draw (1000)")
            p.set_defaults(variants=None, backend=None)
        p.add_argument("--force", action="store_true", help=FORCE_HELP)
        p.set_defaults(fn=fn, parser=p)

    p = sub.add_parser("inspect", help="summary and a sample grid of a shard set")
    p.add_argument("set", metavar="SET", help="a shard set directory (HR, LR or pairs)")
    p.add_argument("--grid", type=int, default=16, help="samples in the grid PNG written with --out (16; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the grid's random picks (0)")
    p.add_argument("--out", type=Path, metavar="GRID.png",
                   help="write the sample grid here (a folder: <folder>/inspect-<set>.png); never inside a "
                        "shard set. Without --out: the summary only, no file")
    p.set_defaults(fn=_inspect, parser=p)

    p = sub.add_parser("replay", help="regenerate one degraded sample from its stored recipe")
    p.add_argument("set", metavar="SET", help="the LR shard set holding the sample")
    p.add_argument("key", metavar="KEY", help="the sample's key (index.parquet 'key' column)")
    p.add_argument("out", metavar="OUT.png", help="where to write the regenerated LR image")
    p.set_defaults(fn=_replay, parser=p)

    p = sub.add_parser("upscale", help="super-resolve a file or folder with a checkpoint (tiled, any size)")
    p.add_argument("--checkpoint", required=True, help="generator weights: models/*/generator.pth, or a public Real-ESRGAN / BasicSR .pth")
    p.add_argument("input", metavar="IN", help="an image file or a folder of images")
    p.add_argument("out", metavar="OUT", help="output file, or folder when IN is a folder")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"tile size in LR px: memory grows with the tile, not the image ({DEFAULT_TILE}; "
                        "0: the whole image at once)")
    p.add_argument("--overlap", type=int, default=16, help="tile overlap in LR px (16)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when visible")
    p.add_argument("--weights", choices=["params_ema", "params"], default="params_ema",
                   help="which generator weights of a training checkpoint (params_ema, else params when "
                        "the checkpoint has no EMA weights)")
    p.add_argument("--force", action="store_true", help="replace OUT if it is a non-empty folder (IN a folder)")
    p.set_defaults(fn=_upscale, parser=p)

    p = sub.add_parser("recover", help="after a killed run: release dead DVC locks, remove half-written outputs")
    p.add_argument("repo", nargs="?", default=".", help="the DVC project (default: the current folder)")
    p.set_defaults(fn=_recover, parser=p)
    return ap


def _recover(args: argparse.Namespace) -> int:
    from pipeline.recover import recover

    root = Path(args.repo).resolve()
    if not (root / ".dvc").is_dir():
        raise FileNotFoundError(f"{root}: not a DVC project (no .dvc/ folder)")
    from dvc.repo import Repo  # DVC knows every stage's outputs, templated paths resolved

    with Repo(str(root)) as repo:
        outputs = [Path(out.fs_path) for out in repo.index.outs]
    done = recover(root, outputs)
    for line in done["released"]:
        print(f"released the lock of dead {line}")
    for path in done["removed"]:
        print(f"removed {path}")
    for line in done["live"]:
        print(f"kept the lock of running {line}")
    if done["live"]:
        print("a dvc process is still running here: wait for it, or stop it, before `dvc repro`")
        return 1
    nothing = "" if done["released"] or done["removed"] else "nothing to recover; "
    print(f"recover: {nothing}ready for `dvc repro`")
    return 0


def _unrecognized(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """`unrecognized arguments: --tiel 64 (did you mean --tile?)`."""
    flags = [o for a in parser._actions for o in a.option_strings]
    hints = [m for e in extra if e.startswith("--")
             for m in difflib.get_close_matches(e.split("=")[0], flags, n=1)]
    return f"unrecognized arguments: {' '.join(extra)}" + (f" (did you mean {', '.join(hints)}?)" if hints else "")


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra:  # argparse would blame the top-level parser and print its usage, not the subcommand's
        args.parser.error(_unrecognized(args.parser, extra))
    try:
        return args.fn(args)
    except (ParamsError, ValueError, FileNotFoundError, FileExistsError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"realsynth: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
