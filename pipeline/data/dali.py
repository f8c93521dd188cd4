"""Optional DALI loader for pairs shard sets: DALI's webdataset reader and image decoder.

The DALI index files (`wds2idx` format v1.2: a line `v1.2 <samples>`, then per sample
`<ext> <data offset> <size> <member name>` for each member in tar order) are written from our
`index.parquet` offsets — no tar scan — into a temporary directory that lives as long as the stream.

Differences from the PyTorch loader, by design of DALI's reader: the order is DALI's (contiguous
sample ranges per rank, a shuffle buffer of `initial_fill` samples, reseeded per epoch from
(seed, epoch)), the last incomplete batch of an epoch is dropped, and resuming from a
`LoaderState` restarts the saved epoch from its start. Augmentation draws the same eight
symmetries as `pipeline.data.augment`, from DALI's generator rather than from (seed, epoch, key).
Decoding runs on the GPU `device_id` (`mixed` decoder) or, with `device_id=None`, on the CPU,
which is how it is tested on machines without a GPU.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.data.loader import LoaderState
from pipeline.seeding import stable_hash
from pipeline.io.shards import INDEX, ShardError

EXTS = ("hr.png", "json", "lr.png")  # tar member order: sorted extensions


def unavailable() -> str | None:
    """Why the DALI loader cannot run here (no DALI, no CUDA GPU), or None when it can."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return "nvidia-dali is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None


def write_dali_index(set_dir: str | Path, out_dir: str | Path) -> list[tuple[Path, Path]]:
    """Write one DALI webdataset index per shard of `set_dir` into `out_dir`, from the parquet index.

    Returns [(tar path, index path)] in shard order.

    Raises:
        FileNotFoundError: no index. ShardError: the index lacks an offset/size column of `EXTS`.
    """
    set_dir, out_dir = Path(set_dir), Path(out_dir)
    index = pd.read_parquet(set_dir / INDEX)
    cols = [(e, f"offset_{e.replace('.', '_')}", f"size_{e.replace('.', '_')}") for e in EXTS]
    for _, off, size in cols:
        if off not in index.columns or size not in index.columns:
            raise ShardError(f"{set_dir / INDEX}: missing column {off if off not in index.columns else size!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for shard, rows in index.groupby("shard", sort=True):
        rows = rows.sort_values(cols[0][1])
        lines = [f"v1.2 {len(rows)}"]
        for r in rows.itertuples(index=False):
            r = r._asdict()
            lines.append(" ".join(f"{e} {int(r[off])} {int(r[size])} {r['key']}.{e}" for e, off, size in cols))
        idx = out_dir / f"{Path(shard).stem}.idx"
        idx.write_text("\n".join(lines) + "\n")
        out.append((set_dir / shard, idx))
    return out


def _pipeline(*, paths: list[str], index_paths: list[str], rank: int, world_size: int, shuffle: bool,
              augment: bool, initial_fill: int, gpu: bool):
    from nvidia.dali import fn, types

    hr, lr, meta = fn.readers.webdataset(paths=paths, index_paths=index_paths, ext=["hr.png", "lr.png", "json"],
                                         shard_id=rank, num_shards=world_size, random_shuffle=shuffle,
                                         initial_fill=initial_fill, missing_component_behavior="error",
                                         name="reader")
    hr = fn.decoders.image(hr, device="mixed" if gpu else "cpu", output_type=types.RGB)
    lr = fn.decoders.image(lr, device="mixed" if gpu else "cpu", output_type=types.RGB)
    if augment:
        h, v = fn.random.coin_flip(), fn.random.coin_flip()
        hr, lr = fn.flip(hr, horizontal=h, vertical=v), fn.flip(lr, horizontal=h, vertical=v)
        if fn.random.coin_flip(dtype=types.BOOL):
            hr = fn.transpose(hr, perm=[1, 0, 2], transpose_layout=False)
            lr = fn.transpose(lr, perm=[1, 0, 2], transpose_layout=False)
    hr = fn.transpose(hr, perm=[2, 0, 1]) / 255.0
    lr = fn.transpose(lr, perm=[2, 0, 1]) / 255.0
    return hr, lr, fn.pad(meta, fill_value=0)


class DaliStream:
    """Endless `(epoch, batch)` pairs from DALI; `batch` = {"hr": (B, 3, H, W), "lr": (B, 3, h, w) float32
    in [0, 1] on the decoding device, "key": [str]}. `state` counts whole epochs and the batches of
    the current one (`samples_seen` = batches × batch_size × world_size)."""

    def __init__(self, set_dir: str | Path, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 state: LoaderState | None = None, shuffle: bool = True, augment: bool = True, workers: int = 2,
                 device_id: int | None = None, initial_fill: int = 1024) -> None:
        import logging

        self.set_dir = Path(set_dir)
        self._tmp = Path(tempfile.mkdtemp(prefix="realsynth-dali-idx-"))
        weakref.finalize(self, shutil.rmtree, self._tmp, True)
        shards = write_dali_index(self.set_dir, self._tmp)
        if not shards:
            raise ValueError(f"{self.set_dir}: an endless stream needs samples, but the set is empty")
        self._n = int(pd.read_parquet(self.set_dir / INDEX, columns=["key"]).shape[0])
        state = state or LoaderState()
        if state.samples_seen:
            logging.getLogger("realsynth.data").warning(
                "loader: dali restarts epoch %d from its start (it cannot skip %d samples)", state.epoch, state.samples_seen)
        self._epoch, self._seen = state.epoch, 0
        self._args = dict(paths=[str(t) for t, _ in shards], index_paths=[str(i) for _, i in shards], rank=rank,
                          world_size=world_size, shuffle=shuffle, augment=augment,
                          initial_fill=max(1, min(initial_fill, self._n // world_size or 1)), gpu=device_id is not None)
        self._build = dict(batch_size=batch_size, num_threads=max(1, workers), device_id=device_id)
        self._seed, self._step = seed, batch_size * world_size
        self._it = None

    @property
    def state(self) -> LoaderState:
        return LoaderState(self._epoch, self._seen)

    def __iter__(self) -> DaliStream:
        return self

    def __next__(self) -> tuple[int, dict[str, Any]]:
        while True:
            if self._it is None:
                self._it = self._iterator(self._epoch)
            try:
                out = next(self._it)[0]
            except StopIteration:
                self._it, self._epoch, self._seen = None, self._epoch + 1, 0
                continue
            self._seen += self._step
            keys = [json.loads(bytes(m.cpu().numpy().astype(np.uint8)).rstrip(b"\0"))["key"] for m in out["meta"]]
            return self._epoch, {"hr": out["hr"], "lr": out["lr"], "key": keys}

    def _iterator(self, epoch: int):
        from nvidia.dali import pipeline_def
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        pipe = pipeline_def(_pipeline, enable_conditionals=True)(
            **self._build, seed=stable_hash(f"{self._seed}:{epoch}") % (2**31), **self._args)
        pipe.build()
        return DALIGenericIterator([pipe], ["hr", "lr", "meta"], reader_name="reader",
                                   last_batch_policy=LastBatchPolicy.DROP, auto_reset=False)
