"""The DALI path of online degradation: workers decode and draw, the training process degrades each batch.

DALI must not be started before a fork, and a GPU graph belongs to one process, so the DataLoader workers
(`OnlineDataset(degrade=False)`) yield each batch's distinct tiles with their recipes (`"todo"`), and
`DaliStream` runs them through one `DaliDegrader` in the training process, then cuts and augments the
windows exactly as the reference path does (`online.cut_window`). The bytes are DALI's (`dali-gpu` differs
from `dali-cpu` and from the reference within the tolerances of tests/test_degrade_backends.py), which is
why the backend is part of a run's identity (`OnlineSpec.identity`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.data.loader import BatchStream, _dataloader
from pipeline.data.online import OnlineDataset, collate_patches, cut_window
from pipeline.degrade import Recipe

_DEGRADERS: dict[tuple[bool, int], Any] = {}  # (gpu, batch size) → a built graph, one per process


def degrade_dali(hrs: Sequence[np.ndarray], recipes: Sequence[Recipe], *, gpu: bool) -> list[np.ndarray]:
    """LR tiles of `hrs` (cropped to the scale) under `recipes` through this process's DALI graph."""
    from pipeline.degrade.dali_backend import DaliDegrader
    size = max(8, len(hrs))
    if (gpu, size) not in _DEGRADERS:
        _DEGRADERS[(gpu, size)] = DaliDegrader(size, "gpu" if gpu else "cpu")
    return _DEGRADERS[(gpu, size)].run(list(hrs), list(recipes))


def finish_batch(ds: OnlineDataset, batch: dict[str, Any]) -> dict[str, Any]:
    """A worker's DALI-path batch → the training batch: degrade its tiles, cut and augment the windows."""
    todo = batch.pop("todo")
    if not todo:
        return {**batch, **collate_patches([])}
    tiles = list(todo)
    hrs = {t: np.asarray(todo[t][0]) for t in tiles}  # the DataLoader turned the arrays into tensors
    lrs = dict(zip(tiles, degrade_dali([hrs[t] for t in tiles], [todo[t][1] for t in tiles],
                                       gpu=ds.spec.backend == "dali-gpu")))
    pairs = [cut_window(hrs[(e, k)], lrs[(e, k)], ds.spec, seed=ds.seed, epoch=e, key=k, window=w, augment=ds.augment)
             for e, k, w in zip(batch["epochs"], batch["tile"], batch["window"])]
    return {**batch, **collate_patches(pairs)}


class DaliStream(BatchStream):
    """`BatchStream` whose batches are degraded in this process (see the module docstring)."""

    def __init__(self, ds: OnlineDataset, *, workers: int, mp_context: str | None = None) -> None:
        super().__init__(ds, _dataloader(ds, workers, False, 2, mp_context))

    def __next__(self) -> tuple[int, dict[str, Any]]:
        epoch, batch = super().__next__()
        return epoch, finish_batch(self.dataset, batch)
