"""Degrade on several ranks launched by `torchrun`; the merged LR set is byte-identical to one process's.

    torchrun --nproc_per_node=1 --nnodes=4 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 -m stages.degrade
    stats = degrade_ranks(Path("data/hr"), Path("data/lr"), cfg, seed=0, scale=4)   # None on ranks > 0

Every rank lists the same sorted jobs (HR key × variant; the ranks check that they agree), drops those
a previous set at `out` already holds when `reuse` is on (`incremental.plan_reuse`: the same on every
rank, checked too) and takes the contiguous slice `rank_slice(n, rank, world)` of the rest. It runs them with its own workers (`workers: 0` =
this machine's cores, divided among the ranks started on it; on the GPU its DALI graphs run on GPU
LOCAL_RANK mod the visible GPUs, `gpu_device_id`) and writes its results, in job order,
to `.<out>.parts/rank-<r>.pkl` beside the output, atomically. After a barrier rank 0 reads the parts
in rank order, which is job order, merges in the carried samples (`incremental.merge_results`) and
hands them to `write_set` inside `atomic_dir(out)`, exactly as `degrade_set` hands over the results of
its worker pool: the same samples in the same order give the
same shards, index.parquet, skipped.csv and report. Then it removes the parts, and every rank returns
after a last barrier.

The ranks must share a filesystem: they read the same HR set and rank 0 reads the others' parts
(the usual case for a DVC repo on shared storage). Part files hold pickled `Result`s, the objects
the worker pool already pickles between processes, so every index value (int or float, None or NaN)
reaches `write_shard_set` unchanged; they are scratch between the ranks of one run, never an output.

A rank that dies breaks the others' collectives at once (gloo sees the closed connection; torchrun
also stops the rest); one that hangs is given up on after `timeout`. Rank 0 writes the output only
through `atomic_dir`, so a failed run leaves the previous `out` (or none), and the parts dir goes.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.io.atomic import atomic_dir, atomic_write
from pipeline.parallel import resolve_workers

from .config import DegradeConfig
from .incremental import merge_results, plan_reuse
from .run import degrade_set
from .samples import Result
from .schedule import degrade_jobs
from .sources import Job, output_key, plan_set
from .write import write_set

INIT_TIMEOUT = timedelta(minutes=10)  # every rank must join the process group within this
TIMEOUT = timedelta(hours=6)          # longest wait at a barrier: the slowest rank's slice, or the merge


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_size: int = 1  # ranks on this machine


def world_from_env(env: Mapping[str, str] = os.environ) -> World:
    """Rank and world size as torchrun sets them (RANK, WORLD_SIZE, LOCAL_WORLD_SIZE); one rank
    when WORLD_SIZE is unset or 1. Raises ValueError when WORLD_SIZE > 1 without RANK,
    MASTER_ADDR and MASTER_PORT, or with a rank out of range."""
    size = _int_env(env, "WORLD_SIZE", 1)
    if size <= 1:
        return World(0, 1, 1)
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
    if missing:
        raise ValueError(f"WORLD_SIZE={size} but {', '.join(missing)} not set; launch the ranks with torchrun")
    rank, local = _int_env(env, "RANK", 0), _int_env(env, "LOCAL_WORLD_SIZE", 1)
    if not 0 <= rank < size:
        raise ValueError(f"RANK must be in [0, {size}) for WORLD_SIZE={size}, got {rank}")
    return World(rank, size, max(1, local))


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name) or str(default)
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def rank_slice(n: int, rank: int, world: int) -> slice:
    """Rank `rank`'s share of `n` jobs: contiguous, sizes differing by at most one, in rank order."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}) and world >= 1, got rank {rank} of {world}")
    return slice(n * rank // world, n * (rank + 1) // world)


def degrade_ranks(inp: Path, out: Path, cfg: DegradeConfig, *, seed: int, scale: int, progress: bool = True,
                  reuse: bool = False, init_timeout: timedelta = INIT_TIMEOUT,
                  timeout: timedelta = TIMEOUT) -> dict[str, Any] | None:
    """`degrade_set(inp, <out>, ...)` written atomically to `out`, split over the ranks of the
    `torchrun` launch in the environment (a plain call: one process, the same bytes).
    reuse: take the samples the set already at `out` holds with the same inputs, params and code
    from it (`incremental`); every rank plans the same carry-over and the ranks split the rest.

    Returns the stats of `degrade_set` (plus "ranks") on rank 0, None on the other ranks.
    Raises ValueError on a bad launch environment, a process group not formed within
    `init_timeout`, or ranks that see different jobs; whatever `degrade_set` raises.
    """
    world = world_from_env()
    out = Path(out)
    if world.size == 1:
        with atomic_dir(out) as tmp:
            return degrade_set(inp, tmp, cfg, seed=seed, scale=scale, progress=progress,
                               previous=out if reuse else None)
    import torch.distributed as dist
    try:
        dist.init_process_group("gloo", timeout=init_timeout)  # env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
    except Exception as err:  # noqa: BLE001 - DistStoreError, RuntimeError, ... : say what was expected
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"rank {world.rank} of {world.size}: no process group at {os.environ['MASTER_ADDR']}:"
                         f"{os.environ['MASTER_PORT']} within {init_timeout} ({first})") from None
    try:
        group = dist.new_group(backend="gloo", timeout=timeout)
        return _run_rank(inp, out, cfg, world, group, seed=seed, scale=scale, progress=progress, reuse=reuse)
    finally:
        dist.destroy_process_group()


def _run_rank(inp: Path, out: Path, cfg: DegradeConfig, world: World, group: Any, *, seed: int, scale: int,
              progress: bool, reuse: bool) -> dict[str, Any] | None:
    import torch.distributed as dist
    start = time.perf_counter()
    parts = out.parent / f".{out.name}.parts"
    part = _part(parts, world.rank)
    try:
        if world.rank == 0:  # before the first collective: no rank writes a part until then
            shutil.rmtree(parts, ignore_errors=True)
            parts.mkdir(parents=True)
        ctx, jobs = plan_set(inp, cfg, seed=seed, scale=scale)
        carry = plan_reuse(out if reuse else None, ctx, jobs)
        todo = carry.todo
        views: list[Any] = [None] * world.size
        with _collective(world, "listing the jobs"):
            dist.all_gather_object(views, (ctx.backend, len(jobs), _digest(jobs), len(todo), _digest(todo)),
                                   group=group)
        for r, view in enumerate(views):
            if view[:3] != views[0][:3]:
                raise ValueError(f"rank {r} sees {view[1]} jobs on backend {view[0]}, rank 0 {views[0][1]} on "
                                 f"{views[0][0]}: every rank must read the same {inp} (a shared filesystem) "
                                 f"and resolve the same backend")
            if view != views[0]:
                raise ValueError(f"rank {r} would compute {view[3]} of the jobs, rank 0 {views[0][3]}: every "
                                 f"rank must read the same previous set {out} (a shared filesystem)")
        mine = todo[rank_slice(len(todo), world.rank, world.size)]
        workers = resolve_workers(cfg.workers) if cfg.workers else max(1, resolve_workers(0) // world.local_size)
        results = degrade_jobs(ctx, mine, batch_size=cfg.batch_size, workers=workers)
        atomic_write(part, lambda f: _dump(f, results, len(mine), progress and world.rank == 0,
                                           f"degrade (rank 0 of {world.size})"))
        with _collective(world, "writing its part"):
            dist.barrier(group=group)  # every part is complete
        stats = None
        if world.rank == 0:
            with atomic_dir(out) as tmp:
                results = merge_results(ctx, jobs, carry, _read_parts(parts, todo, world.size))
                stats = write_set(tmp, ctx, cfg, results, len(jobs), start=start, progress=progress)
            stats.update(ranks=world.size, reused=len(carry.carried), reuse=carry.why)
            shutil.rmtree(parts, ignore_errors=True)
        with _collective(world, "rank 0 merged the parts"):
            dist.barrier(group=group)  # the set is in place
        return stats
    except BaseException:
        if world.rank == 0:
            shutil.rmtree(parts, ignore_errors=True)
        else:  # the dir is rank 0's to remove
            with contextlib.suppress(OSError):
                part.unlink()
        raise


@contextlib.contextmanager
def _collective(world: World, what: str) -> Iterator[None]:
    """Name the step when a collective fails: gloo's own error says only that a peer went away."""
    try:
        yield
    except RuntimeError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise RuntimeError(f"rank {world.rank} of {world.size}: another rank failed or timed out before "
                           f"{what} ({first}); see that rank's log") from err


def _part(parts: Path, rank: int) -> Path:
    return parts / f"rank-{rank:05d}.pkl"


def _digest(jobs: list[Job]) -> str:
    h = hashlib.sha256()
    for job in jobs:
        h.update(f"{output_key(job.hr_key, job.variant)}\n".encode())
    return h.hexdigest()


def _dump(f: BinaryIO, results: Iterable[Result], total: int, progress: bool, desc: str) -> None:
    from tqdm import tqdm
    for res in tqdm(results, total=total, desc=desc, unit="tile", disable=not progress):
        pickle.dump(res, f, protocol=pickle.HIGHEST_PROTOCOL)


def _read_parts(parts: Path, jobs: list[Job], world: int) -> Iterator[Result]:
    """Every rank's results in rank order, checked against the jobs it was given."""
    for rank in range(world):
        path = _part(parts, rank)
        given = jobs[rank_slice(len(jobs), rank, world)]
        with open(path, "rb") as f:
            for job in given:
                key = output_key(job.hr_key, job.variant)
                try:
                    res = pickle.load(f)
                except EOFError:
                    raise ValueError(f"{path}: ends before sample {key!r}") from None
                if not isinstance(res, Result) or res.key != key:
                    raise ValueError(f"{path}: expected sample {key!r}, found {getattr(res, 'key', res)!r}")
                yield res
            if f.read(1):
                raise ValueError(f"{path}: more results than the {len(given)} jobs of rank {rank}")
