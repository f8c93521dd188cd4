"""Which process or thread runs which jobs, results back in job order.

    results = degrade_jobs(ctx, jobs, batch_size=32, workers=8)   # Iterator[Result]

Jobs are cut into tasks of consecutive jobs (`tasks`), run in spawned worker processes (reference
backend) or in batches through DALI graphs. A sample depends only on (HR, seed, key, variant,
params), so the results do not depend on `workers` or `batch_size`; the Ray engine
(`ray_engine.py`) runs `samples.degrade_task` / `samples.degrade_batch` on the same `tasks`.
"""
from __future__ import annotations

import itertools
from array import array
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline.parallel import worker_pool

from .samples import Result, degrade_batch, degrade_task, finish_batch, prepare_batch
from .sources import Context, Job, for_workers

# The per-sample Python around a GPU graph (recipe sampling, its JSON, shard I/O) holds the GIL,
# so one process cannot keep a GPU graph busy: the GPU path runs one graph per this many cores,
# each in its own spawned process (measurements in bench/README.md).
GPU_CORES_PER_PROCESS = 4

_WORKER: dict[str, Any] = {}  # a worker process's Context (and DALI graph), set by its initializer


def tasks(jobs: Sequence[Job], size: int) -> Tasks:
    """`jobs` cut into consecutive tasks of at most `size`, each HR tile's variants kept in one task
    (they share its decode and USM only there); a tile with more than `size` variants is split.
    Only the cuts are held; a task's jobs are made when it is taken (`Tasks`)."""
    bounds, start, end = array("q"), 0, 0  # (start, end) of each task, in job numbers
    for _, group in itertools.groupby(jobs, key=lambda job: job.hr_key):
        count = sum(1 for _ in group)
        if end - start + count > size and end > start:
            bounds.extend((start, end))
            start = end
        while end - start + count > size:  # more variants than a task holds
            bounds.extend((start, start + size))
            count -= size - (end - start)
            start = end = start + size
        end += count
    if end > start:
        bounds.extend((start, end))
    return Tasks(jobs, bounds)


class Tasks(Sequence):
    """The tasks `tasks` cut: task i is `list(jobs[start:end])`, made when asked for."""

    def __init__(self, jobs: Sequence[Job], bounds: array) -> None:
        self.jobs, self.bounds = jobs, bounds

    def __len__(self) -> int:
        return len(self.bounds) // 2

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"task {i} of {len(self)}")
        i %= len(self)
        return list(self.jobs[self.bounds[2 * i]:self.bounds[2 * i + 1]])


def init_worker(ctx: Context) -> None:
    """A reference worker's initializer: OpenCV on one thread (one process per core already)."""
    import cv2
    cv2.setNumThreads(1)
    _WORKER["ctx"] = ctx


def run_task(jobs: list[Job]) -> list[Result]:
    """`degrade_task` with the Context `init_worker` gave this process."""
    return degrade_task(_WORKER["ctx"], jobs)


def _results_reference(ctx: Context, jobs: list[Job], workers: int, batch_size: int) -> Iterator[Result]:
    todo = tasks(jobs, batch_size)
    if workers <= 1 or len(todo) <= 1:
        import cv2
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            for task in todo:
                yield from degrade_task(ctx, task)
        finally:
            cv2.setNumThreads(threads)
        return
    with worker_pool(workers, initializer=init_worker, initargs=(for_workers(ctx),), reuse_memory=True) as pmap:
        for results in pmap(run_task, todo):
            yield from results


def dali_device(backend: str) -> str:
    """DaliDegrader's device for a resolved backend (`dali-gpu` or `dali-cpu`)."""
    return "gpu" if backend == "dali-gpu" else "cpu"


def _init_dali_worker(ctx: Context, batch_size: int, threads: int) -> None:
    from .dali_backend import DaliDegrader
    _WORKER["ctx"] = ctx
    _WORKER["dali"] = DaliDegrader(batch_size, dali_device(ctx.backend), threads)
    _WORKER["pool"] = ThreadPoolExecutor(threads, thread_name_prefix="degrade")


def _run_dali_task(task: list[Job]) -> list[Result]:
    return degrade_batch(_WORKER["ctx"], task, _WORKER["dali"], _WORKER["pool"])


def _results_dali(ctx: Context, jobs: list[Job], batch_size: int, threads: int) -> Iterator[Result]:
    """DALI graphs over batches of jobs. On the CPU: one graph in this process, on `threads`
    threads, the next batch decoded and prepared while the graph runs the current one. On the GPU:
    one graph per GPU_CORES_PER_PROCESS cores, each in a spawned process (DALI never starts in this
    one, so nothing forks after it), results in job order. A sample's output depends only on its
    HR and recipe, never on which graph or batch ran it."""
    todo = tasks(jobs, batch_size)
    processes = min(len(todo), threads // GPU_CORES_PER_PROCESS) if ctx.backend == "dali-gpu" else 1
    if processes > 1:
        per = max(1, threads // processes)
        with worker_pool(processes, initializer=_init_dali_worker, initargs=(for_workers(ctx), batch_size, per),
                         reuse_memory=True) as pmap:
            for results in pmap(_run_dali_task, todo):
                yield from results
        return
    from .dali_backend import DaliDegrader
    degrader = DaliDegrader(batch_size, dali_device(ctx.backend), threads)
    with ThreadPoolExecutor(threads, thread_name_prefix="degrade") as pool, ThreadPoolExecutor(1) as ahead:
        upcoming = ahead.submit(prepare_batch, ctx, todo[0], degrader, pool) if todo else None
        for i in range(len(todo)):
            prepared, batch, inputs = upcoming.result()
            if i + 1 < len(todo):
                upcoming = ahead.submit(prepare_batch, ctx, todo[i + 1], degrader, pool)
            lrs = degrader.run_prepared(inputs, pool) if batch else []
            yield from finish_batch(ctx, prepared, batch, lrs, pool)


def degrade_jobs(ctx: Context, jobs: list[Job], *, batch_size: int, workers: int) -> Iterator[Result]:
    """Results of `jobs` in job order (skipped ones included, with their reason), on `workers`
    processes (reference) or threads (DALI), `batch_size` jobs per task or graph batch. No jobs (an
    incremental run with nothing new) start no workers and build no graph."""
    if not jobs:
        return iter(())
    if ctx.backend == "reference":
        return _results_reference(ctx, jobs, workers, batch_size)
    return _results_dali(ctx, jobs, batch_size, workers)
