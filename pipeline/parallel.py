"""Ordered parallel map over worker processes, with a progress bar.

Results come back in input order whatever the worker count, so outputs built from them are
byte-identical for any `workers`. Workers are spawned, never forked: forking a process that has
started DALI or CUDA can hang. Spawning costs about a second per worker (imports), so a stage that
maps several times opens one `worker_pool` and reuses it.
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from tqdm import tqdm

A = TypeVar("A")
R = TypeVar("R")
MapFn = Callable[..., Iterator[Any]]


def resolve_workers(workers: int) -> int:
    """0 → every core this process may use."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# glibc serves every allocation over 128 KB (a 256 px float32 image is 768 KB) from a fresh mmap and
# unmaps it on free, so each new array faults its pages in again, hundreds of faults per degraded
# tile. Raising both thresholds makes freed arrays go back to the heap and get reused (figures:
# bench/README.md, "Page faults, the Poisson sampler ...").
_MALLOC_TRIM_THRESHOLD, _MALLOC_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest allowed value on 64-bit
_TRIM_THRESHOLD_BYTES = 256 << 20


def keep_freed_memory() -> bool:
    """Let this process's glibc heap keep and reuse freed memory instead of returning it per array.

    Only for processes realsynth owns (stage processes and pool workers): it trades up to
    ~256 MB of retained heap for no page faults on the next array of the same size. Returns
    whether it took effect: False off glibc (macOS, musl) or with REALSYNTH_KEEP_FREED_MEMORY=0
    in the environment (pool workers inherit it).
    """
    if os.environ.get("REALSYNTH_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_MALLOC_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
                and mallopt(_MALLOC_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple, reuse_memory: bool) -> None:
    if reuse_memory:
        keep_freed_memory()
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def worker_pool(workers: int = 0, initializer: Callable[..., None] | None = None,
                initargs: tuple = (), *, reuse_memory: bool = False) -> Iterator[MapFn]:
    """Yield `pmap(fn, items, desc="")`: an ordered map on `workers` spawned processes
    (1 → in this process). `fn` must be a module-level function; its exceptions propagate.
    reuse_memory: the workers keep freed memory (`keep_freed_memory`), for jobs that allocate and
    free many arrays of a few MB each (degrade); this process is left as it is either way."""
    n = resolve_workers(workers)
    if n == 1:
        if initializer is not None:
            initializer(*initargs)
        yield lambda fn, items, desc="": with_progress(map(fn, items), items, desc)
        return
    with mp.get_context("spawn").Pool(n, initializer=_start_worker,
                                         initargs=(initializer, initargs, reuse_memory)) as pool:
        yield lambda fn, items, desc="": with_progress(_bounded_imap(pool, fn, items, IN_FLIGHT * n), items, desc)


_END = object()
IN_FLIGHT = 4  # tasks handed out per worker and not yet taken back in order


def _bounded_imap(pool: Any, fn: Callable[[A], R], items: Iterable[A], window: int) -> Iterator[R]:
    """`pool.imap(fn, items)` with at most `window` items handed out and not yet taken back.

    Plain `imap` lets the workers run ahead of the caller: every result that is done but not yet
    taken waits in the pool, so a caller slower than its workers (the stage writing shards while
    two workers degrade small tiles) held results in proportion to the corpus. A task is now handed
    out only when the caller has taken a result back, so memory stays that of `window` results."""
    slots = threading.Semaphore(window)
    closed = False

    def handed_out() -> Iterator[A]:  # iterated by the pool's task thread, which waits here for a slot
        it = iter(items)  # an item is made only once it has a slot (a plan making its jobs on demand)
        while True:
            slots.acquire()
            item = next(it, _END) if not closed else _END
            if item is _END:
                return
            yield item

    try:
        for result in pool.imap(fn, handed_out(), chunksize=1):
            slots.release()
            yield result
    finally:  # an error or an early stop: let the task thread out, so the pool can shut down
        closed = True
        for _ in range(window + 1):
            slots.release()


def ordered_map(fn: Callable[[A], R], items: Iterable[A], *, workers: int = 0, desc: str = "") -> Iterator[R]:
    """`map(fn, items)` on a one-off `worker_pool` (at most one worker per item). A Sequence is
    taken as it is, each item made as a worker takes it (a plan that makes its jobs on demand)."""
    items = items if isinstance(items, Sequence) else list(items)
    with worker_pool(min(resolve_workers(workers), max(1, len(items)))) as pmap:
        yield from pmap(fn, items, desc=desc)


def with_progress(results: Iterator[R], items: Any, desc: str) -> Iterator[R]:
    total = len(items) if hasattr(items, "__len__") else None
    with tqdm(results, total=total, desc=desc, unit="it", disable=not desc, leave=False, dynamic_ncols=True) as bar:
        yield from bar
