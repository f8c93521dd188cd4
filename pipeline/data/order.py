"""Which sample a loader reads when: a fixed function of (seed, epoch), cut up over ranks and workers.

The *stream* of a shard set of `n` samples is the concatenation of its epoch orders: stream position
`p` is sample `epoch_order(n, seed, epoch=p // n)[p % n]`. It does not depend on the world size,
the batch size or the worker count, so a position is a well-defined resume point for any of them.

A loader consumes a range `[start, stop)` of the stream (stop None: forever) in *steps* of
`batch_size × world_size` positions. In a step of `m` positions starting at `c`, rank `r` takes
`[c + r·m // R, c + (r+1)·m // R)` — exactly `batch_size` each, except in the last step of a
finite range, which is split as evenly as possible (a rank may get nothing there). Steps straddle
epoch boundaries, so an infinite stream has full batches on every rank at every step.

Within a rank, batch `b` (counting the rank's non-empty batches) goes to DataLoader worker
`b % workers`. PyTorch's DataLoader asks its workers for batches round robin and returns them in
that order, so the loader yields the rank's batches in order b = 0, 1, 2, ... whatever `workers`.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from pipeline.seeding import ORDER, rng_for


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Sample numbers in the order epoch `epoch` visits them: (n,) int64, a permutation of range(n)
    drawn from (seed, epoch), or range(n) itself when not `shuffle`.

    Raises:
        ValueError: negative n or epoch.
    """
    if n < 0 or epoch < 0:
        raise ValueError(f"n and epoch must be non-negative, got n={n}, epoch={epoch}")
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return rng_for(ORDER, seed, epoch).permutation(n).astype(np.int64)


def rank_batches(start: int, stop: int | None, *, batch_size: int, rank: int = 0,
                 world_size: int = 1) -> Iterator[tuple[int, int]]:
    """The stream ranges `(lo, hi)` of rank `rank`'s non-empty batches within `[start, stop)`, in order.

    Raises:
        ValueError: batch_size or world_size < 1, rank outside [0, world_size), start < 0, stop < start.
    """
    _check(start, stop, batch_size, rank, world_size)
    step = batch_size * world_size
    for c in itertools.count(start, step):
        if stop is not None and c >= stop:
            return
        m = step if stop is None else min(step, stop - c)
        lo, hi = c + rank * m // world_size, c + (rank + 1) * m // world_size
        if hi > lo:
            yield lo, hi


def worker_batches(start: int, stop: int | None, *, batch_size: int, rank: int = 0, world_size: int = 1,
                   worker: int = 0, workers: int = 1) -> Iterator[tuple[int, int]]:
    """The batches of `rank_batches` that DataLoader worker `worker` of `workers` produces (b % workers == worker).

    Raises:
        ValueError: as `rank_batches`, or worker outside [0, workers).
    """
    if workers < 1 or not 0 <= worker < workers:
        raise ValueError(f"worker must be in [0, workers) with workers >= 1, got worker={worker}, workers={workers}")
    return itertools.islice(rank_batches(start, stop, batch_size=batch_size, rank=rank, world_size=world_size),
                            worker, None, workers)


def rank_length(start: int, stop: int, *, batch_size: int, rank: int = 0, world_size: int = 1) -> tuple[int, int]:
    """(samples, batches) that rank `rank` reads from the finite range `[start, stop)`."""
    _check(start, stop, batch_size, rank, world_size)
    step = batch_size * world_size
    full, m = divmod(stop - start, step)
    tail = (rank + 1) * m // world_size - rank * m // world_size
    return full * batch_size + tail, full + (tail > 0)


def _check(start: int, stop: int | None, batch_size: int, rank: int, world_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size) with world_size >= 1, got rank={rank}, world_size={world_size}")
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"expected 0 <= start <= stop, got start={start}, stop={stop}")
