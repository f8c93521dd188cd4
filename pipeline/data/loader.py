"""Training loaders: one exact epoch (`make_loader`) or an endless, resumable stream (`infinite_batches`).

How the training loop uses them (the state is global, not per rank)::

    state = LoaderState.from_dict(ckpt["loader"]) if resuming else LoaderState()
    stream = infinite_batches(pairs / "train", batch_size=16, workers=4, seed=cfg.seed,
                              rank=rank, world_size=world_size, state=state)
    for step in range(start_step, total_iters):
        epoch, batch = next(stream)           # batch["hr"]: (16, 3, 256, 256), batch["lr"]: (16, 3, 64, 64)
        ...                                   # forward, backward, optimizer step
        if step % save_every == 0:
            ckpt["loader"] = stream.state.to_dict()   # position *after* this batch; same on every rank

`stream.state` is `(epoch, samples_seen)`: how many samples of epoch `epoch`'s global order have
been consumed by all ranks together. Every step consumes `batch_size × world_size` of them, and
steps run across epoch boundaries, so every rank gets a full batch at every step and DDP never
waits on a rank whose epoch ended early. Resuming from a state continues at the next sample of the
same global order: no sample is replayed or lost, and this holds even if the world size, batch size
or worker count changed in between (the order depends on (seed, epoch) only).

For validation or evaluation, `make_loader(..., shuffle=False, augment=False)` reads one epoch.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from pipeline.data.dataset import PairDataset


@dataclass(frozen=True)
class LoaderState:
    """A position in a shard set's stream: `samples_seen` samples of epoch `epoch`'s global order
    have been consumed (by all ranks together). Store `to_dict()` in checkpoints."""
    epoch: int = 0
    samples_seen: int = 0

    def __post_init__(self) -> None:
        if self.epoch < 0 or self.samples_seen < 0:
            raise ValueError(f"LoaderState fields must be non-negative, got epoch={self.epoch}, "
                             f"samples_seen={self.samples_seen}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoaderState:
        """Raises ValueError on missing or extra keys."""
        if set(data) != {"epoch", "samples_seen"}:
            raise ValueError(f"loader state must have keys ['epoch', 'samples_seen'], got {sorted(data)}")
        return cls(int(data["epoch"]), int(data["samples_seen"]))


def make_loader(set_dir: str | os.PathLike, *, batch_size: int, workers: int, seed: int, rank: int = 0,
                world_size: int = 1, epoch: int = 0, skip: int = 0, shuffle: bool = True, augment: bool = True,
                on_error: Literal["raise", "skip"] = "raise", pin_memory: bool | None = None,
                prefetch_factor: int = 2, mp_context: str | None = None) -> DataLoader:
    """A DataLoader over one epoch (from global sample `skip` on) of `set_dir`, for rank `rank`.

    Yields the batches of `PairDataset(batch_size=...)` in the rank's order for any `workers`;
    `len(loader)` is the number of batches. The last step of the epoch is split evenly over ranks,
    so under DDP ranks can differ by one batch there; training uses `infinite_batches`.
    `mp_context`: the workers' start method (None: PyTorch's default, fork on Linux).

    Raises:
        as `PairDataset`; ValueError for workers < 0.
    """
    ds = PairDataset(set_dir, seed=seed, batch_size=batch_size, rank=rank, world_size=world_size, epoch=epoch,
                     skip=skip, epochs=1, shuffle=shuffle, augment=augment, on_error=on_error)
    return _dataloader(ds, workers, pin_memory, prefetch_factor, mp_context)


class BatchStream:
    """Endless `(epoch, batch)` pairs of one rank; `state` is the position after the last batch yielded.

    `epoch` is the epoch of the step's first sample (the same on every rank). Batches are dicts as
    `PairDataset` yields them; `skipped` adds up samples dropped with `on_error="skip"`.
    """

    def __init__(self, dataset: PairDataset, loader: DataLoader) -> None:
        self.dataset, self.loader = dataset, loader
        self._n = dataset.n
        self._step = (dataset.batch_size or 1) * dataset.world_size
        self._position = dataset.start
        self._it: Iterator[dict[str, Any]] | None = None
        self.skipped = 0

    @property
    def state(self) -> LoaderState:
        return LoaderState(*divmod(self._position, self._n))

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> tuple[int, dict[str, Any]]:
        while True:
            if self._it is None:
                self._it = iter(self.loader)
            batch = next(self._it)
            epoch = self._position // self._n
            self._position += self._step
            self.skipped += int(batch.get("skipped", 0))
            if batch["key"]:  # a batch whose samples were all skipped still counts as consumed
                return epoch, batch

    def close(self) -> None:
        """Stop the worker processes now (they also stop when the stream is garbage-collected)."""
        if self._it is not None:
            self._it.close()  # type: ignore[attr-defined]
            self._it = None


def infinite_batches(set_dir: str | os.PathLike, *, batch_size: int, workers: int, seed: int, rank: int = 0,
                     world_size: int = 1, state: LoaderState | None = None, shuffle: bool = True,
                     augment: bool = True, on_error: Literal["raise", "skip"] = "raise",
                     pin_memory: bool | None = None, prefetch_factor: int = 2,
                     mp_context: str | None = None) -> BatchStream:
    """An endless stream of training batches for rank `rank`, starting at `state` (default: the start).

    Returns:
        a `BatchStream`: `next(stream)` → (epoch, batch), `stream.state`.

    Raises:
        as `PairDataset`; ValueError for a state past the end of an epoch.
    """
    state = state or LoaderState()
    ds = PairDataset(set_dir, seed=seed, batch_size=batch_size, rank=rank, world_size=world_size, epoch=state.epoch,
                     skip=state.samples_seen, epochs=None, shuffle=shuffle, augment=augment, on_error=on_error)
    return stream_over(ds, workers=workers, pin_memory=pin_memory, prefetch_factor=prefetch_factor,
                       mp_context=mp_context)


def stream_over(ds: Any, *, workers: int, pin_memory: bool | None = None, prefetch_factor: int = 2,
                mp_context: str | None = None) -> BatchStream:
    """A `BatchStream` over any batch dataset with `PairDataset`'s stream contract (`n`, `batch_size`,
    `world_size`, `start`; batches with `key` and `skipped`), e.g. `online.OnlineDataset`."""
    return BatchStream(ds, _dataloader(ds, workers, pin_memory, prefetch_factor, mp_context))


class PairLoader(DataLoader):
    """A DataLoader whose worker processes stop as soon as iteration ends, also by an exception or a
    `break` (PyTorch otherwise leaves that to garbage collection, which can stall for seconds per worker)."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return _stopping(super().__iter__())


def _stopping(it: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def _dataloader(ds: Any, workers: int, pin_memory: bool | None, prefetch_factor: int,
                mp_context: str | None) -> DataLoader:
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    return PairLoader(ds, batch_size=None, num_workers=workers, pin_memory=pin,
                      prefetch_factor=prefetch_factor if workers else None,
                      multiprocessing_context=mp_context if workers else None)
