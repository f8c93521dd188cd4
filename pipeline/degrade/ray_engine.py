"""The Ray engine (`degrade.engine: ray`): the degrade stage's jobs as tasks on a Ray cluster, the
results written by this process exactly as the local engine writes its own.

    with ray_engine(cfg) as engine:                 # RAY_ADDRESS, or a local Ray (`ray_pool.ray_session`)
        ctx, jobs = plan_set(inp, cfg, seed=0, scale=4, gpu=engine.gpu)
        results = engine.run(ctx, jobs)             # Iterator[Result], in job order

Work is cut as the local engine cuts it (`schedule.tasks`: `batch_size` consecutive jobs, the variants
of a tile together). The reference backend runs one Ray task per cut (1 CPU, any node), the function a
local worker process runs (`samples.degrade_task`). The DALI backends run the cuts on `DaliWorker`
actors, each holding one DALI graph: one per GPU of the cluster (`num_gpus=1`; Ray sets the actor's
CUDA_VISIBLE_DEVICES, so its graph runs on device 0 of what it sees) for `dali-gpu`, one per
GPU_CORES_PER_PROCESS CPUs for `dali-cpu`. `auto` picks `dali-gpu` when the *cluster* has GPUs, not
when this process's machine has one.

A task whose worker process or node dies is run again (`max_retries` = `degrade.retries`; actors are
restarted as often), and so is one that raises OSError (a flaky shared filesystem). Other exceptions
are a bad input or a bug that would fail again: they end the stage with the task's error. A sample
depends only on (HR, recipe), so a retried task returns the same bytes.

Order and memory: at most `window` tasks are in flight and their results are taken in submission
order, so this process holds a bounded number of results however large the set, and `write_set` gets
them in job order: the same results in the same order are the same shards, index and report.
Incremental carry-over (`incremental.merge_results`) happens here, on the driver; only the jobs to
compute are sent out. Every task also returns its worker's library versions, checked against this
process's (the reuse manifest's fingerprint is computed here): a node with another OpenCV would write
other bytes, and the stage says so instead.

The nodes must read the HR set at the path this process reads it (a shared filesystem, as for DVC
on shared storage). The session is opened before anything else, and Ray's workers are started by its
raylet, never forked from this process: the fork-after-DALI hang cannot happen (this process may
import DALI later, for its version in the fingerprint; it never builds a graph).
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.ray_pool import RETRY_EXCEPTIONS, in_order, ray_session

from .config import DegradeConfig
from .incremental import library_versions
from .samples import Result, degrade_batch, degrade_task
from .schedule import GPU_CORES_PER_PROCESS, dali_device, tasks
from .sources import Context, Job, for_workers


@contextlib.contextmanager
def ray_engine(cfg: DegradeConfig) -> Iterator[RayEngine]:
    """A `RayEngine` on the session `ray_pool.ray_session` opens (RAY_ADDRESS, or a local Ray with
    `degrade.workers` CPUs), closed on exit when this opened it."""
    with ray_session(cfg.workers) as ray:
        resources = ray.cluster_resources()
        yield RayEngine(cfg, cpus=int(resources.get("CPU", 0)), gpus=int(resources.get("GPU", 0)))


@dataclass
class RayEngine:
    """Runs jobs on the connected cluster (`cpus`, `gpus`: its resources when connected)."""
    cfg: DegradeConfig
    cpus: int
    gpus: int
    versions: dict[str, Any] = field(default_factory=dict)  # the first worker's view of the GPUs

    @property
    def gpu(self) -> bool:
        """Whether `auto`/`dali` may resolve to `dali-gpu`: the cluster has GPUs."""
        return self.gpus > 0

    def run(self, ctx: Context, jobs: list[Job]) -> Iterator[Result]:
        """Results of `jobs` in job order (skipped ones included); nothing submitted when no jobs.
        A generator: the tasks go out as `write_set` takes the results."""
        if not jobs:
            return
        import ray
        todo = tasks(jobs, self.cfg.batch_size)
        shared = ray.put(for_workers(ctx))
        if ctx.backend == "reference":
            fn = ray.remote(run_task).options(num_cpus=1, max_retries=self.cfg.retries,
                                              retry_exceptions=list(RETRY_EXCEPTIONS))
            submit, slots = (lambda i, task: fn.remote(shared, task)), max(1, self.cpus)
        else:
            actors = self._actors(ctx, shared)
            submit, slots = (lambda i, task: actors[i % len(actors)].run.remote(task)), 2 * len(actors)
        mine = library_versions(ctx.backend)
        for theirs, results in in_order((submit(i, task) for i, task in enumerate(todo)), 2 * slots):
            yield from self._checked(mine, theirs, results)

    def _actors(self, ctx: Context, shared: Any) -> list[Any]:
        """One `DaliWorker` per GPU (dali-gpu) or per GPU_CORES_PER_PROCESS CPUs (dali-cpu)."""
        import ray
        gpu = ctx.backend == "dali-gpu"
        threads = GPU_CORES_PER_PROCESS if gpu else max(1, min(GPU_CORES_PER_PROCESS, self.cpus))
        count = self.gpus if gpu else max(1, self.cpus // threads)
        cls = ray.remote(DaliWorker).options(num_gpus=1 if gpu else 0, num_cpus=1 if gpu else threads,
                                             max_restarts=self.cfg.retries, max_task_retries=self.cfg.retries)
        return [cls.remote(shared, self.cfg.batch_size, dali_device(ctx.backend), threads) for _ in range(count)]

    def _checked(self, mine: dict[str, Any], theirs: dict[str, Any], results: list[Result]) -> list[Result]:
        """`results`, once the worker's library versions are this process's (the GPUs: the first
        worker's). Raises RuntimeError naming the difference."""
        self.versions = self.versions or theirs
        expected = {**mine, **({"gpu": self.versions["gpu"]} if "gpu" in self.versions else {})}
        differs = sorted(k for k in expected.keys() | theirs.keys() if expected.get(k) != theirs.get(k))
        if differs:
            raise RuntimeError(f"a Ray worker has {', '.join(f'{k} {theirs.get(k)}' for k in differs)} where the "
                               f"stage expects {', '.join(f'{k} {expected.get(k)}' for k in differs)}: its samples "
                               f"would not be the local engine's bytes; install the same versions on every node")
        return results


@functools.lru_cache(maxsize=None)
def _versions(backend: str) -> dict[str, Any]:
    return library_versions(backend)


def run_task(ctx: Context, jobs: list[Job]) -> tuple[dict[str, Any], list[Result]]:
    """A Ray task: the reference backend on one cut, OpenCV on one thread (one task per CPU)."""
    import cv2
    cv2.setNumThreads(1)
    return _versions(ctx.backend), degrade_task(ctx, jobs)


class DaliWorker:
    """A Ray actor holding one DALI graph (and the thread pool around it) for its whole life, so a
    graph is built once per GPU, not per task; `run` is `samples.degrade_batch` on one cut."""

    def __init__(self, ctx: Context, batch_size: int, device: str, threads: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from .dali_backend import DaliDegrader
        self.ctx = ctx
        self.degrader = DaliDegrader(batch_size, device, threads)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="degrade")

    def run(self, jobs: list[Job]) -> tuple[dict[str, Any], list[Result]]:
        return _versions(self.ctx.backend), degrade_batch(self.ctx, jobs, self.degrader, self.pool)
