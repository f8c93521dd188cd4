"""`realsynth recover`: the DVC project after a killed run (pipeline.recover)."""
from __future__ import annotations

import argparse
from pathlib import Path


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


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recover", help="after a killed run: release dead DVC locks, remove half-written outputs")
    p.add_argument("repo", nargs="?", default=".", help="the DVC project (default: the current folder)")
    p.set_defaults(fn=_recover, parser=p)
