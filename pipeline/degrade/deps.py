"""What of `degrade:` lies outside the repo's code: the preset file and its user-op modules must lie in
`paths.presets`, the folder dvc.yaml makes `degrade` depend on.

DVC cannot take a dependency from a params value (`${degrade.preset}` would name the file, but a
built-in name is no file, and a user op's module is named only inside the preset). So, as ingest's
photos lie in `paths.photos`, degrade's own files lie in one tracked folder: editing, adding or
removing anything in it makes `degrade` stale. A user op's module is imported by its dotted path
from the repo root (DVC runs stages there): `presets/myops.py` is `presets.myops:fn`. The built-in
domain presets' ops live in `pipeline/degrade`, a dependency already.
"""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.config import within
from pipeline.params import ParamsError

from .preset import PRESETS, Preset
from .steps import LearnedStep
from .userops import UserStep, module_file

PACKAGE = Path(__file__).resolve().parent  # pipeline/degrade: a dependency of the stage already


def check_deps(preset: str, settings: Preset, presets: Path) -> None:
    """Raise ParamsError (one line, `degrade.preset: ...`) unless the preset is a built-in or a file
    inside `presets`, and every user op's module file lies inside `presets` or this package.
    `preset` is written as params.yaml gives it (relative to the repo, or both absolute)."""
    where = f"paths.presets ({str(presets)!r}), the folder DVC tracks for degrade"
    if preset not in PRESETS and not within(os.path.normpath(preset), presets):
        raise ParamsError(f"degrade.preset: expected one of {list(PRESETS)} or a preset file inside {where}, "
                          f"got {preset!r}")
    root = Path(presets).resolve()
    for step in user_steps(settings):
        path = module_file(step.op)
        if path is None or not (within(path.resolve(), root) or within(path.resolve(), PACKAGE)):
            raise ParamsError(f"degrade.preset: {preset}: {step.name}.op: expected a module inside {where} "
                              f"(presets/myops.py is presets.myops:fn), got {step.op!r} from {path or 'no file'}")
    for name, checkpoint in learned_checkpoints(settings):
        if not within(Path(checkpoint).resolve(), root):
            raise ParamsError(f"degrade.preset: {preset}: {name}.checkpoint: expected a degrader file inside {where}, "
                              f"got {checkpoint!r}")


def learned_checkpoints(settings: Preset) -> list[tuple[str, str]]:
    """(step name, checkpoint path) of the preset's `learned` steps (inside groups too)."""
    return [(s.name, s.checkpoint) for item in settings.items for s in getattr(item, "steps", (item,))
            if isinstance(s, LearnedStep)]


def user_steps(settings: Preset) -> list[UserStep]:
    """The preset's `module:function` steps, in order (inside groups too)."""
    return [s for item in settings.items for s in getattr(item, "steps", (item,)) if isinstance(s, UserStep)]
