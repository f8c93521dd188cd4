"""Ordered parallel map over worker processes, with a progress bar.

Results come back in input order whatever the worker count, so outputs built from them are
byte-identical for any `workers`. Workers are spawned, never forked: forking a process that has
started DALI or CUDA can hang. Spawning costs about a second per worker (imports), so a stage that
maps several times opens one `worker_pool` and reuses it.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
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


@contextlib.contextmanager
def worker_pool(workers: int = 0, initializer: Callable[..., None] | None = None,
                initargs: tuple = ()) -> Iterator[MapFn]:
    """Yield `pmap(fn, items, desc="")`: an ordered map on `workers` spawned processes
    (1 → in this process). `fn` must be a module-level function; its exceptions propagate."""
    n = resolve_workers(workers)
    if n == 1:
        if initializer is not None:
            initializer(*initargs)
        yield lambda fn, items, desc="": _progress(map(fn, items), items, desc)
        return
    with mp.get_context("spawn").Pool(n, initializer=initializer, initargs=initargs) as pool:
        yield lambda fn, items, desc="": _progress(pool.imap(fn, items, chunksize=1), items, desc)


def ordered_map(fn: Callable[[A], R], items: Iterable[A], *, workers: int = 0, desc: str = "") -> Iterator[R]:
    """`map(fn, items)` on a one-off `worker_pool` (at most one worker per item)."""
    items = list(items)
    with worker_pool(min(resolve_workers(workers), max(1, len(items)))) as pmap:
        yield from pmap(fn, items, desc=desc)


def _progress(results: Iterator[R], items: Any, desc: str) -> Iterator[R]:
    total = len(items) if hasattr(items, "__len__") else None
    with tqdm(results, total=total, desc=desc, unit="it", disable=not desc, leave=False, dynamic_ncols=True) as bar:
        yield from bar
