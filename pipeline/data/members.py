"""Random access to shard-set members through `index.parquet` offsets, checked against the tar.

The index is trusted only as far as the tar confirms it: every read
(`pipeline.io.shards.read_member_at`) takes the 512-byte tar header in front of the member's data as
well, and checks that it names `<key>.<ext>` with the indexed size. A stale or tampered index, a
truncated shard, or a member name with a path separator therefore fails with one `ShardError` naming
the shard and the key, never with silent garbage.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io.shards import INDEX, ShardError, member_column, read_member_at, span_column

_MAX_OPEN = 64  # shard files kept open per process


class MemberTable:
    """The members `exts` of every sample of a shard set, readable by sample number.

    Holds only NumPy arrays (keys, shard ids, offsets, sizes), so it pickles cheaply into
    DataLoader workers; open file handles are per process and never pickled.

    Raises (constructor):
        FileNotFoundError: no `index.parquet` in `set_dir`.
        ShardError: a missing index column, an invalid key or shard name.
    """

    def __init__(self, set_dir: str | os.PathLike, exts: Sequence[str], *, index: pd.DataFrame | None = None) -> None:
        self.root = Path(set_dir)
        where = self.root / INDEX
        if index is None:
            if not where.is_file():
                raise FileNotFoundError(f"{where}: no shard-set index (is {self.root} a shard set?)")
            index = pd.read_parquet(where)
        self.exts = tuple(exts)
        need = ["key", "shard"] + [f"{p}_{member_column(e)}" for e in self.exts for p in ("offset", "size")]
        missing = [c for c in need if c not in index.columns]
        if missing:
            raise ShardError(f"{where}: missing column {missing[0]!r} (needed to read members {list(self.exts)})")
        keys = index["key"].astype(str)
        bad = keys.str.contains(r"[./\\\x00]", regex=True) | (keys == "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ShardError(f"{index['shard'].iloc[i]}: invalid sample key {keys.iloc[i]!r} in {where}: "
                             "keys are non-empty and contain no '.', '/' or '\\'")
        shard_names, shard_of = np.unique(index["shard"].astype(str).to_numpy(), return_inverse=True)
        for name in shard_names:
            if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".tar"):
                raise ShardError(f"{where}: invalid shard name {name!r}: expected '<set>-NNNNNN.tar' inside the set")
        self.keys = keys.to_numpy(dtype=object)
        self.shard_names = [str(s) for s in shard_names]
        self.shard_of = shard_of.astype(np.int32)
        self.offsets = {e: span_column(index[f"offset_{member_column(e)}"]) for e in self.exts}
        self.sizes = {e: span_column(index[f"size_{member_column(e)}"]) for e in self.exts}
        self._fds: OrderedDict[int, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self.keys)

    def shard(self, i: int) -> str:
        return self.shard_names[self.shard_of[i]]

    def read(self, i: int, ext: str) -> bytes:
        """The bytes of member `ext` of sample number `i`.

        Raises:
            ShardError: the sample has no such member, the member runs past the end of its shard,
                or the tar header at the indexed offset is not `<key>.<ext>` of the indexed size.
        """
        key, shard = self.keys[i], self.shard(i)
        offset, size = int(self.offsets[ext][i]), int(self.sizes[ext][i])
        if offset < 0 or size < 0:
            raise ShardError(f"{shard}: sample {key!r} has no {ext} member")
        return read_member_at(self._fd(int(self.shard_of[i])), offset, size, shard, key, ext)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _fd(self, shard_id: int) -> int:
        fd = self._fds.get(shard_id)
        if fd is not None:
            self._fds.move_to_end(shard_id)
            return fd
        path = self.root / self.shard_names[shard_id]
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise ShardError(f"{path.name}: shard listed in {self.root / INDEX} does not exist") from None
        self._fds[shard_id] = fd
        if len(self._fds) > _MAX_OPEN:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fds"] = OrderedDict()
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
