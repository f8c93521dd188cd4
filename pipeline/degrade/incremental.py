"""Incremental regeneration: take from a previous LR set every sample a new run would make byte for
byte the same, and compute only the others.

    reuse = plan_reuse(Path("data/lr"), ctx, jobs)      # which jobs the previous set already holds
    fresh = degrade_jobs(ctx, reuse.todo, ...)          # the rest, as usual
    results = merge_results(ctx, jobs, reuse, fresh)    # every job's Result, in job order → write_set

A sample is a pure function of its HR tile's bytes, its (seed, key, variant), the recipe settings and
scale, the backend and the code. The part every sample shares is the set's *fingerprint*
(`fingerprint`): the sha256 of the source files that decide a sample's bytes (`CODE`), the versions of
the libraries that decode, degrade and encode (OpenCV, NumPy, Pillow; DALI, the GPU model and driver
for a DALI backend), Python's minor version, the resolved backend, seed, scale, the complete settings
(preset + overrides) and the HR set's path (each sample's json names it). The part of one sample is the
sha256 of its HR tile's bytes (the HR set's `sha256` column, or the image file's). `write_manifest`
records both in `<set>/.degrade-reuse/` (MANIFEST: the fingerprint, its parts and the sha256 of the
set's index.parquet it describes; INPUTS: key → hr_sha256 per written sample).

A sample is carried over when the fingerprints are equal, the manifest describes the index actually
there, and the sample's key and HR digest are in it; its members (lr.png, json, the folder input's
hr.png) are copied as bytes and its index columns made again by `samples.sample_columns`, so
`write_set` packs the same shards and index a from-scratch run packs. `variants`, `workers`,
`batch_size`, `shard_bytes` and `examples` are not in the fingerprint: they decide which samples exist
and how they are packed, never a sample's bytes. Any other change (a recipe key, the seed, a line of
code in `CODE`, a library upgrade) carries nothing.

The manifest lives inside the set but outside DVC's view (`.dvcignore` lists REUSE_DIR): it holds a
code hash and library versions, which must not make the tracked output differ between two machines
or after an edit to a comment, and it is only ever a hint that is checked before use.
"""
from __future__ import annotations

import functools
from array import array
import hashlib
import json
import secrets
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io.digest import sha256_file
from pipeline.io.parquet_rows import ParquetRowWriter
from pipeline.io.shards import INDEX, Sample, ShardSet, iter_parquet_rows, json_bytes

from .draw import sample_recipe
from .samples import Result, sample_columns, sample_json
from .sources import Context, Job, JobPlan, output_key
from .userops import module_file

REUSE_DIR = ".degrade-reuse"
MANIFEST = "manifest.json"
INPUTS = "inputs.parquet"
VERSION = 1  # of the manifest's layout
# Source files, relative to the `pipeline` package, whose code decides a sample's members: the degrade
# package (recipes, both backends, the JPEG codec), PNG encode/decode, the json member's canonical
# form and the seed digests. The shard writer (pipeline/io/tar.py) is not here: shards are written anew.
CODE = ("degrade", "io/images.py", "io/shards.py", "seeding.py")


@dataclass
class Reuse:
    """Which jobs a previous set already holds: `carried`, the job numbers (increasing) read from
    `old`; the `todo` jobs to compute; and `why` in words (for the stage's line)."""
    old: ShardSet | None
    carried: np.ndarray
    todo: Sequence[Job]  # a JobPlan when the jobs were one
    why: str


def code_digest(root: Path | None = None) -> str:
    """sha256 over the relative path and bytes of every `.py` file in `CODE`, in sorted order.
    root: the `pipeline` package directory (the one running, by default)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    files: list[Path] = []
    for rel in CODE:
        path = root / rel
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _code_digest_once() -> str:
    return code_digest()


def library_versions(backend: str) -> dict[str, str]:
    """Versions of what turns an HR into LR bytes on `backend` (a resolved backend name)."""
    import cv2
    import numpy
    import PIL
    out = {"python": f"{sys.version_info[0]}.{sys.version_info[1]}", "numpy": numpy.__version__,
           "opencv": cv2.__version__, "pillow": PIL.__version__}
    if backend.startswith("dali"):
        import nvidia.dali
        out["dali"] = nvidia.dali.__version__
    if backend == "dali-gpu":
        out["gpu"] = _gpu_names()
    return out


def _gpu_names() -> str:
    """The visible GPUs' model names and the driver version, from NVML ('unknown' without it): CUDA
    kernels differ between GPU models."""
    import ctypes
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() != 0:
            return "unknown"
        count, names = ctypes.c_uint(0), set()
        driver = ctypes.create_string_buffer(96)
        nvml.nvmlSystemGetDriverVersion(driver, 96)
        nvml.nvmlDeviceGetCount_v2(ctypes.byref(count))
        for i in range(count.value):
            handle, name = ctypes.c_void_p(), ctypes.create_string_buffer(96)
            if nvml.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)) == 0:
                nvml.nvmlDeviceGetName(handle, name, 96)
                names.add(name.value.decode(errors="replace"))
        nvml.nvmlShutdown()
        return f"{', '.join(sorted(names))}; driver {driver.value.decode(errors='replace')}"
    except OSError:
        return "unknown"


def fingerprint(ctx: Context) -> dict[str, Any]:
    """What every sample of a set made with `ctx` depends on besides its HR bytes and (key, variant):
    {"digest": sha256 of the rest, "parts": {code, libraries, backend, seed, scale, settings, input}}."""
    settings = hashlib.sha256(json_bytes(ctx.settings.to_data())).hexdigest()
    parts = {"code": _code_digest_once(), "user_ops": _user_op_sources(ctx.settings), "libraries": library_versions(ctx.backend), "backend": ctx.backend,
             "seed": ctx.seed, "scale": ctx.scale, "settings": settings,
             "input": {"hr_set": str(ctx.source.path)} if ctx.source.is_set else "folder"}
    return {"digest": hashlib.sha256(json_bytes(parts)).hexdigest(), "parts": parts}


def _user_op_sources(settings: Any) -> dict[str, str]:
    """sha256 of each `module:function` step's sources: its module's file and, for a module inside a
    package (`presets.myops`), every `.py` beside it in that folder and below (helpers it imports;
    the folder DVC tracks, `deps.py`). Editing any of them must not reuse the samples the op made
    ('unknown' where the module has no file, which then never matches)."""
    out = {}
    for name in settings.names():
        step = settings.step(name)
        op = getattr(step, "op", "")
        if op == "learned":  # its weights file and the code that runs it
            from pipeline.learned.op import learned_sources
            out.update(learned_sources(step.checkpoint))
        if ":" not in op:
            continue
        path = module_file(op)
        if path is None:
            out[op] = f"unknown-{secrets.token_hex(8)}"
            continue
        files = sorted(path.parent.rglob("*.py")) if "." in op.partition(":")[0] else [path]
        h = hashlib.sha256()
        for file in files:
            h.update(f"{file.relative_to(path.parent).as_posix()}\0{sha256_file(file)}\0".encode())
        out[op] = h.hexdigest()
    return out


def inputs_writer(out: Path) -> ParquetRowWriter:
    """The writer of `out/REUSE_DIR/INPUTS`: add {"key", "hr_sha256"} of each sample as it is written
    (a row group at a time on disk, not a list of the corpus's keys in memory)."""
    def empty():
        import pandas as pd
        return pd.DataFrame({"key": pd.Series(dtype=str), "hr_sha256": pd.Series(dtype=object)})
    folder = Path(out) / REUSE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return ParquetRowWriter(folder / INPUTS, empty=empty)


def write_manifest(out: Path, ctx: Context) -> None:
    """Record in `out/REUSE_DIR` what the set just written to `out` was made from: the fingerprint
    and the sha256 of its index.parquet (INPUTS, written beside it by `inputs_writer`, has the
    (key, hr_sha256) of each written sample)."""
    folder = Path(out) / REUSE_DIR
    manifest = {"version": VERSION, **fingerprint(ctx), "index_sha256": sha256_file(Path(out) / INDEX)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_manifest(previous: Path) -> dict[str, Any] | None:
    """The manifest of the set at `previous`, or None when it has none (or one this code cannot read)."""
    try:
        manifest = json.loads((Path(previous) / REUSE_DIR / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("version") == VERSION else None


def plan_reuse(previous: Path | None, ctx: Context, jobs: list[Job]) -> Reuse:
    """Split `jobs` into those the LR set at `previous` holds with the same inputs (carried) and the
    rest (todo, in job order). Nothing is carried when `previous` is None or not a set with a
    manifest, when its index is not the one the manifest describes, or when the fingerprints differ.
    Raises nothing for a bad previous set: it is a cache, and a miss costs only time."""
    if previous is None or not (Path(previous) / INDEX).is_file():
        return Reuse(None, _NONE, jobs, "no previous set")
    previous = Path(previous)
    manifest = read_manifest(previous)
    if manifest is None:
        return Reuse(None, _NONE, jobs, f"no {REUSE_DIR}/{MANIFEST} in the previous set")
    if manifest.get("index_sha256") != sha256_file(previous / INDEX):
        return Reuse(None, _NONE, jobs, f"{REUSE_DIR}/{MANIFEST} describes another index")
    now = fingerprint(ctx)
    if manifest.get("digest") != now["digest"]:
        before = manifest.get("parts") or {}
        differs = sorted(k for k in now["parts"] if before.get(k) != now["parts"][k])
        return Reuse(None, _NONE, jobs, f"changed since the previous set: {', '.join(differs)}")
    carried, todo = array("q"), array("q")  # job numbers
    made_from = _made_from(previous / REUSE_DIR / INPUTS)  # the samples the set holds, in key order
    held, prev = next(made_from, None), None
    for i, job in enumerate(jobs):  # jobs in output-key order too: one merge walk, no table of keys
        key = output_key(job.hr_key, job.variant)
        if prev is not None and key <= prev:
            raise ValueError(f"jobs out of output-key order: {key!r} after {prev!r}")
        prev = key
        while held is not None and held[0] < key:
            held = next(made_from, None)
        same = job.hr_sha256 is not None and held is not None and held == (key, job.hr_sha256)
        (carried if same else todo).append(i)
    todo = jobs.take(todo) if isinstance(jobs, JobPlan) else [jobs[i] for i in todo]
    old = ShardSet(previous) if carried else None
    return Reuse(old, np.asarray(carried, np.int64), todo, f"{len(carried)} of {len(jobs)} carried over")


_NONE = np.zeros(0, np.int64)  # no job carried


def _made_from(path: Path) -> Iterator[tuple[str, str | None]]:
    """(key, hr_sha256) of each sample INPUTS lists, in its order (the set's key order), read a row
    group at a time. A missing or unreadable INPUTS lists nothing (a cache miss, not an error)."""
    try:
        yield from iter_parquet_rows(path, ["key", "hr_sha256"])
    except (OSError, ValueError, KeyError):
        return


def carry(ctx: Context, job: Job, old: ShardSet) -> Result:
    """The Result of `job` from the previous set `old`: its members as stored, its index columns
    made again. Raises ValueError when the stored json is not the one this run would write (a
    fingerprint that missed a change: nothing of such a set can be trusted)."""
    key = output_key(job.hr_key, job.variant)
    members = old.read(key)
    recipe = sample_recipe(ctx.settings, ctx.seed, job.hr_key, job.variant, scale=ctx.scale)
    meta = json.loads(members.get("json", b"{}"))
    res = Result(key, job.hr_key, job.variant, recipe, job.split, lr_png=members.get("lr.png"),
                 hr_png=members.get("hr.png"), lr_shape=tuple(meta.get("lr_shape", (0, 0))),
                 hr_shape=tuple(meta.get("hr_shape", (0, 0))), hr_sha256=job.hr_sha256)
    expected = {"lr.png", "json"} | (set() if ctx.source.is_set else {"hr.png"})
    if set(members) != expected or sample_json(ctx, res) != members["json"]:
        raise ValueError(f"{old.path}: sample {key!r} is not what this run would write although its "
                         f"{REUSE_DIR}/{MANIFEST} matches; rerun from scratch (remove {old.path} or "
                         f"pass --from-scratch)")
    res.sample = Sample(key, members, sample_columns(ctx, res))
    return res


def merge_results(ctx: Context, jobs: list[Job], reuse: Reuse, fresh: Iterable[Result]) -> Iterator[Result]:
    """Every job's Result in job order: carried ones read from `reuse.old` as their turn comes, the
    others taken from `fresh` (the results of `reuse.todo`, in that order)."""
    fresh, carried = iter(fresh), iter(reuse.carried.tolist())
    next_carried = next(carried, -1)
    for i, job in enumerate(jobs):
        key = output_key(job.hr_key, job.variant)
        if i == next_carried:
            yield carry(ctx, job, reuse.old)
            next_carried = next(carried, -1)
            continue
        res = next(fresh, None)
        if res is None or res.key != key:
            raise ValueError(f"expected the result of {key!r}, got {getattr(res, 'key', 'none')!r}")
        yield res
