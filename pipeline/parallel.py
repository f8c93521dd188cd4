"""Ordered parallel map over worker processes, with a progress bar.

Results come back in input order whatever the worker count, so outputs built from them are
byte-identical for any `workers`. Workers are spawned, never forked: forking a process that has
started DALI or CUDA can hang.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

A = TypeVar("A")
R = TypeVar("R")


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


def ordered_map(fn: Callable[[A], R], items: Iterable[A], *, workers: int = 0, desc: str = "",
                total: int | None = None, initializer: Callable[..., None] | None = None,
                initargs: tuple = ()) -> Iterator[R]:
    """`map(fn, items)` on `workers` processes (1 → in this process), in order, with a tqdm bar.

    `fn` must be a module-level function (picklable). Exceptions raised by `fn` propagate.
    """
    items = list(items) if total is None else items
    total = len(items) if total is None else total  # type: ignore[arg-type]
    n = min(resolve_workers(workers), max(1, total))
    bar = tqdm(total=total, desc=desc, unit="it", disable=not desc, leave=False, dynamic_ncols=True)
    try:
        if n == 1:
            if initializer is not None:
                initializer(*initargs)
            for item in items:
                yield fn(item)
                bar.update()
            return
        ctx = mp.get_context("spawn")
        with ctx.Pool(n, initializer=initializer, initargs=initargs) as pool:
            for result in pool.imap(fn, items, chunksize=1):
                yield result
                bar.update()
    finally:
        bar.close()
