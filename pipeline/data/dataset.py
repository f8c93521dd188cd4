"""PyTorch dataset over a pairs shard set: exact, resumable, worker-independent epochs.

`PairDataset` reads a range of the sample *stream* (see `pipeline.data.order`): by default the whole
of epoch `epoch`, from sample `skip` of that epoch's global order. Each rank and DataLoader worker
reads only its own batches, by offset through the index (no shard is streamed twice, no sample is
read by two consumers), decodes with OpenCV and applies the paired flip/rotation drawn from
(seed, epoch, key).

With `batch_size` set, the dataset yields whole batches, and a `DataLoader(ds, batch_size=None,
num_workers=W)` returns them in exactly the rank's order for any W — `make_loader` does this.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.data.augment import augment_pair, draw_dihedral
from pipeline.data.order import epoch_order, rank_length, worker_batches
from pipeline.io.shards import ShardError, ShardSet

log = logging.getLogger("realsynth.data")
EXTS = ("hr.png", "lr.png")


class PairDataset(IterableDataset):
    """HR/LR patch pairs of one shard set, for one DDP rank.

    Args:
        set_dir: a pairs shard set, e.g. `data/pairs/train`.
        seed: seeds the epoch orders and the augmentation.
        batch_size: None → yield samples `{"hr": (3, H, W), "lr": (3, h, w), "key": str}`; an int →
            yield batches `{"hr": (B, 3, H, W), "lr": (B, 3, h, w), "key": [str] * B, "epoch": int,
            "skipped": int}` (float32 RGB in [0, 1]; `epoch` of the batch's first sample); B is
            `batch_size` except in the last batch of a finite range, or fewer when `on_error="skip"`
            dropped samples (`skipped` counts them). Workers are dealt whole batches, which is what
            keeps the order exact under `DataLoader(ds, batch_size=None, num_workers=W)`; in sample
            mode a DataLoader that batches itself still sees every sample once, in another order.
        rank, world_size: this process's DDP rank and the number of ranks.
        epoch, skip: start at sample `skip` of epoch `epoch`'s global order (0 <= skip <= len(set)).
            `skip` counts samples of *all* ranks (the stream is global), so it is the value that
            `LoaderState.samples_seen` stores, whatever the world size.
        epochs: epochs to read from epoch `epoch` on (the first one from `skip`); None: forever.
        shuffle: reshuffle each epoch from (seed, epoch); False: stored order (val, eval).
        augment: paired flips and 90° rotations (off for val).
        on_error: "raise" → the first bad sample stops iteration with a `ShardError` naming the shard
            and key; "skip" → it is logged, counted and left out.

    Raises (constructor):
        FileNotFoundError: no index in `set_dir`. ShardError: index without hr.png/lr.png columns or
        with invalid keys. ValueError: bad rank/world_size/batch_size/epoch/skip/on_error.
    """

    def __init__(self, set_dir: str | os.PathLike, *, seed: int, batch_size: int | None = None, rank: int = 0,
                 world_size: int = 1, epoch: int = 0, skip: int = 0, epochs: int | None = 1, shuffle: bool = True,
                 augment: bool = True, on_error: Literal["raise", "skip"] = "raise") -> None:
        super().__init__()
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size) with world_size >= 1, got rank={rank}, world_size={world_size}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be >= 1 or None (forever), got {epochs}")
        self.set_dir = Path(set_dir)
        self.shards = ShardSet(self.set_dir, need=EXTS)  # pickled into workers without its index table
        index = self.shards.index
        self.n = len(self.shards)
        if epochs is None and self.n == 0:
            raise ValueError(f"{self.set_dir}: an endless stream needs samples, but the set is empty")
        if epoch < 0 or not 0 <= skip <= self.n:
            raise ValueError(f"expected epoch >= 0 and 0 <= skip <= {self.n} (samples in {self.set_dir}), "
                             f"got epoch={epoch}, skip={skip}")
        self.scale = int(index["scale"].iloc[0]) if "scale" in index.columns and self.n else None
        self.seed, self.batch_size, self.rank, self.world_size = seed, batch_size, rank, world_size
        self.shuffle, self.augment, self.on_error = shuffle, augment, on_error
        self.start = epoch * self.n + skip
        self.stop = None if epochs is None else (epoch + epochs) * self.n
        self._order: tuple[int, np.ndarray] | None = None

    @property
    def num_samples(self) -> int:
        """Samples this rank reads (all epochs of the range). Raises TypeError for an endless range."""
        return self._length()[0]

    @property
    def num_batches(self) -> int:
        """Batches (of `batch_size`, or samples when None) this rank yields. TypeError when endless."""
        return self._length()[1]

    def __len__(self) -> int:
        """What iteration yields on this rank: samples, or batches when `batch_size` is set."""
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        unit = self.batch_size or 1
        if self.n == 0:
            return
        for lo, hi in worker_batches(self.start, self.stop, batch_size=unit, rank=self.rank,
                                     world_size=self.world_size, worker=worker, workers=workers):
            samples, skipped = [], 0
            for p in range(lo, hi):
                try:
                    samples.append(self._load(p))
                except ShardError as err:
                    if self.on_error == "raise":
                        raise
                    skipped += 1
                    log.warning("skipped a bad sample: %s", err)
            if self.batch_size is None:
                for key, hr, lr in samples:
                    yield {"hr": _to_float(hr), "lr": _to_float(lr), "key": key}
            else:
                yield self._collate(samples, epoch=lo // self.n, skipped=skipped)

    def sample_at(self, position: int) -> dict[str, Any]:
        """The sample at stream position `position` (epoch position // n), decoded and augmented:
        `{"hr": (3, H, W), "lr": (3, h, w) float32 RGB in [0, 1], "key": str}`.

        Raises:
            ShardError: unreadable member, PNG that does not decode, HR not `scale` × LR.
        """
        key, hr, lr = self._load(position)
        return {"hr": _to_float(hr), "lr": _to_float(lr), "key": key}

    def _load(self, position: int) -> tuple[str, np.ndarray, np.ndarray]:
        """(key, hr, lr) with images as (3, H, W) uint8 RGB; conversion to float is left to the caller
        (NumPy, once per batch: PyTorch's multi-threaded kernels crawl on small tensors on a busy CPU)."""
        epoch, i = divmod(position, self.n)
        j = int(self._epoch_order(epoch)[i])
        key = str(self.shards.keys[j])
        hr, lr = self.shards.image_at(j, "hr.png"), self.shards.image_at(j, "lr.png")
        (hh, hw), (lh, lw) = hr.shape[:2], lr.shape[:2]
        s = self.scale or (hh // lh if lh else 0)
        if s < 1 or (hh, hw) != (lh * s, lw * s):
            raise ShardError(f"{self.shards.shard_at(j)}: sample {key!r}: HR {hw}x{hh} is not {s} x LR {lw}x{lh}")
        if self.augment:
            hr, lr = augment_pair(hr, lr, draw_dihedral(self.seed, epoch, key))
        return key, _to_chw(hr), _to_chw(lr)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.n, seed=self.seed, epoch=epoch, shuffle=self.shuffle))
        return self._order[1]

    def _collate(self, samples: list[tuple[str, np.ndarray, np.ndarray]], *, epoch: int, skipped: int) -> dict[str, Any]:
        if not samples:
            return {"hr": torch.empty(0), "lr": torch.empty(0), "key": [], "epoch": epoch, "skipped": skipped}
        key0, hr0, lr0 = samples[0]
        for key, hr, lr in samples[1:]:
            if hr.shape != hr0.shape or lr.shape != lr0.shape:
                raise ShardError(f"{self.shards.shard_at(self.shards.row(key))}: sample {key!r}: patch {hr.shape[1:]} differs from "
                                 f"{hr0.shape[1:]} of {key0!r} in the same batch")
        return {"hr": _to_float(np.stack([s[1] for s in samples])), "lr": _to_float(np.stack([s[2] for s in samples])),
                "key": [s[0] for s in samples], "epoch": epoch, "skipped": skipped}

    def _length(self) -> tuple[int, int]:
        if self.stop is None:
            raise TypeError("an endless PairDataset (epochs=None) has no length")
        samples, batches = rank_length(self.start, self.stop, batch_size=self.batch_size or 1, rank=self.rank,
                                       world_size=self.world_size)
        return samples, (batches if self.batch_size else samples)


def read_pair(set_dir: str | os.PathLike, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(hr, lr) of sample `key`, as (H, W, 3) and (h, w, 3) uint8 RGB, read by offset through the index.

    Raises:
        KeyError: no such key. ShardError: as `PairDataset.sample_at`.
    """
    shards = ShardSet(set_dir, need=EXTS)
    j = shards.row(key)
    try:
        return shards.image_at(j, "hr.png"), shards.image_at(j, "lr.png")
    finally:
        shards.close()


def _to_chw(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) → (3, H, W), contiguous."""
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def _to_float(x: np.ndarray) -> torch.Tensor:
    """uint8 → float32 tensor in [0, 1] (x / 255, as `tensor.float().div(255)` computes it)."""
    return torch.from_numpy(np.divide(x, np.float32(255), dtype=np.float32))
