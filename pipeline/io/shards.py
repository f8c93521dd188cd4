"""Shard sets: WebDataset-layout tar shards plus an `index.parquet` with one row per sample.

Layout (README, "The pipeline"): `<set>-000000.tar`, ... holding `<key>.<ext>` members (`hr.png`, `lr.png`,
`json`), keys without dots, samples in sorted key order, fixed mtime/uid/gid and GNU headers, so
the same samples always give the same bytes. The index row of a sample carries `key`, `shard`,
`sha256` (of its primary image, `lr.png` else `hr.png`), `offset_<ext>`/`size_<ext>` of every member
(ext with '.' → '_'), and whatever columns the writing stage adds (height, width, split, recipe, ...).

`write_shard_set` writes a set; `ShardSet` is its only reader, and this module (with
`pipeline.io.index_reads`, its parquet reads) the only one that opens an index, so its checks hold
for every stage: keys and shard names are validated before anything is trusted, and members are read by offset together with the tar header in front of them,
which must name `<key>.<ext>` with the indexed size (`pipeline.io.tar.read_member_at`).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.io.index_reads import (INDEX, index_columns, iter_index, iter_parquet_rows, read_index, read_locations,
                                     read_parquet_table)
from pipeline.io.parquet_rows import PART, ParquetRowWriter
from pipeline.io.images import ImageError, decode_png
from pipeline.io.keys import Keys, is_key
from pipeline.io.tar import ShardError, TarWriter, iter_tar, read_member, read_member_at

if TYPE_CHECKING:  # pandas is imported where an index is read or written: a worker that only reads
    import pandas as pd  # imported here: reading members by offset (`read_member`) starts sooner without it

PRIMARY = ("lr.png", "hr.png")


@dataclass
class Sample:
    """One sample: `members` maps extension (`"hr.png"`, `"json"`) to bytes; `columns` go to the index."""
    key: str
    members: Mapping[str, bytes]
    columns: Mapping[str, Any] = field(default_factory=dict)


def member_column(ext: str) -> str:
    return ext.replace(".", "_")


def check_key(key: str, where: str = "") -> None:
    if not is_key(key):
        raise ShardError(f"{where}invalid sample key {key!r}: keys are non-empty and contain no '.', '/' or '\\'")


def json_bytes(obj: Any) -> bytes:
    """Canonical JSON (sorted keys, no NaN) for a sample's `<key>.json` member."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class WrittenSet:
    """What `write_shard_set` wrote: its sample and shard counts (the index is on disk: `ShardSet`)."""
    samples: int
    shards: int


def write_shard_set(out_dir: str | os.PathLike, samples: Iterable[Sample], *, set_name: str,
                    shard_bytes: int = 256 << 20, max_per_shard: int | None = None) -> WrittenSet:
    """Write `samples` (in strictly increasing key order) as tar shards + `index.parquet` into `out_dir`.

    A new shard starts once the current one holds `shard_bytes` of data or `max_per_shard` samples.
    `out_dir` should be a fresh directory (wrap it in `atomic_dir`). Index rows are written a row
    group at a time as they come (`ParquetRowWriter`), so memory does not grow with the set; read
    the index back with `ShardSet`.

    Raises:
        ShardError: keys out of order, duplicated, or containing '.'/'/'.
        ValueError: a sample without members or with an invalid member name.
    """
    if "." in set_name or "/" in set_name:
        raise ValueError(f"set_name must not contain '.' or '/', got {set_name!r}")
    if shard_bytes <= 0:
        raise ValueError(f"shard_bytes must be positive, got {shard_bytes}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer: TarWriter | None = None
    shard_no, in_shard, prev = 0, 0, None
    with ParquetRowWriter(out_dir / INDEX, empty=_empty_index) as rows:
        try:
            for sample in samples:
                check_key(sample.key)
                if prev is not None and sample.key <= prev:
                    raise ShardError(f"{set_name}: keys must arrive in sorted order without repeats; "
                                     f"{sample.key!r} after {prev!r}")
                prev = sample.key
                if not sample.members:
                    raise ValueError(f"sample {sample.key!r} has no members")
                if writer is not None and (writer.data_bytes >= shard_bytes or
                                           (max_per_shard is not None and in_shard >= max_per_shard)):
                    writer.close()
                    writer, shard_no, in_shard = None, shard_no + 1, 0
                if writer is None:
                    writer = TarWriter(out_dir / f"{set_name}-{shard_no:06d}.tar")
                rows.add(_index_row(sample, writer))
                in_shard += 1
        finally:
            if writer is not None:
                writer.close()
    return WrittenSet(rows.rows, shard_no + 1 if rows.rows else 0)


def _index_row(sample: Sample, writer: TarWriter) -> dict[str, Any]:
    """Add `sample`'s members to the shard `writer` writes; its index row (module docstring)."""
    row: dict[str, Any] = {"key": sample.key, "shard": writer.path.name}
    for ext in sorted(sample.members):
        if not ext or ext.startswith(".") or "/" in ext or ".." in ext:
            raise ValueError(f"sample {sample.key!r}: invalid member extension {ext!r}")
        data = sample.members[ext]
        row[f"offset_{member_column(ext)}"] = writer.add(f"{sample.key}.{ext}", data)
        row[f"size_{member_column(ext)}"] = len(data)
    primary = next((e for e in PRIMARY if e in sample.members), sorted(sample.members)[0])
    row["sha256"] = hashlib.sha256(sample.members[primary]).hexdigest()
    row.update(sample.columns)
    return row


def _empty_index() -> pd.DataFrame:
    import pandas as pd
    return pd.DataFrame({"key": pd.Series(dtype=str), "shard": pd.Series(dtype=str), "sha256": pd.Series(dtype=str)})


_MAX_OPEN = 64  # shard files a ShardSet keeps open per process


class ShardSet:
    """A shard set read by key or by row number: the one reader of `index.parquet`.

    The index's keys (`Keys`, one UTF-8 byte array), shard numbers and member spans are kept as NumPy
    arrays, read a piece at a time; a key's row is found by binary search. The set pickles without
    the index table or any open file (DataLoader workers, spawn pools): each process opens the
    shards it reads, keeps at most `_MAX_OPEN` of them open, and drops those of its parent after a
    fork, so no two processes share a descriptor. Every member is read with its tar header, which
    must agree with the index (`read_member_at`).

    Args:
        path: the set's directory.
        need: member extensions that every sample must have index columns for (`("hr.png", "lr.png")`).

    Raises (constructor):
        FileNotFoundError: no index. ShardError: a missing column, an invalid key or shard name.
    """

    def __init__(self, path: str | os.PathLike, *, need: Iterable[str] = ()) -> None:
        self.path = Path(path)
        self._index: pd.DataFrame | None = None
        where, need = self.path / INDEX, tuple(need)
        self.columns = index_columns(self.path)
        cols = ["key", "shard"] + [f"{p}_{member_column(e)}" for e in need for p in ("offset", "size")]
        missing = [c for c in cols if c not in self.columns]
        if missing:
            raise ShardError(f"{where}: missing column {missing[0]!r}" + (f" (needed to read members {list(need)})"
                                                                           if need else ""))
        members = sorted(c[len("size_"):] for c in self.columns if c.startswith("size_"))
        spans = [f"{p}_{m}" for m in members for p in ("offset", "size")]
        if any(c not in self.columns for c in spans):
            raise ShardError(f"{where}: missing column {next(c for c in spans if c not in self.columns)!r}")
        self.keys, self.shard_names, self.shard_of, self._spans = read_locations(self.path, members)
        self._sorted: Keys | None = None  # the keys sorted, when they are not (`row`)
        self._order: np.ndarray | None = None
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def index(self) -> pd.DataFrame:
        """The whole index table (read again in a process that unpickled this set)."""
        if self._index is None:
            self._index = read_index(self.path)
        return self._index

    def frame(self, columns: Iterable[str]) -> pd.DataFrame:
        """The index columns of `columns` that the index has (others left out), in index row order:
        a stage that needs a few columns holds those, not the whole table (bench/README.md, "Scale")."""
        names = [c for c in columns if c in self.columns]
        if not names:  # no column to read still has a row per sample
            import pandas as pd
            return pd.DataFrame(index=pd.RangeIndex(len(self.keys)))
        return read_parquet_table(self.path / INDEX, names)

    def iter_frames(self, columns: Iterable[str], rows: int = PART) -> Iterator[pd.DataFrame]:
        """`frame(columns)` in pieces of `rows` rows (`iter_index`)."""
        return iter_index(self.path, columns, rows)

    def spans(self, ext: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(offset, size) int64 arrays of member `ext` by row (-1 where a sample has none), or None
        when no sample has one."""
        return self._spans.get(member_column(ext))

    @property
    def shards(self) -> list[str]:
        return list(self.shard_names)

    def row(self, key: str) -> int:
        """The row number of sample `key` (a binary search: a set's keys are sorted). Raises KeyError
        naming the set."""
        if self._sorted is None:
            if self.keys.is_sorted():
                self._sorted = self.keys
            else:  # a hand-made index: search a sorted copy
                self._order = self.keys.argsort()
                self._sorted = self.keys[self._order]
        at = self._sorted.find(key) if isinstance(key, str) else -1
        if at < 0:
            raise KeyError(f"{self.path}: no sample with key {key!r}")
        return at if self._order is None else int(self._order[at])

    def shard_at(self, row: int) -> str:
        return self.shard_names[self.shard_of[row]]

    def members_of(self, key: str) -> list[str]:
        """Index column names (`hr_png`, `json`) of the members sample `key` has."""
        row = self.row(key)
        return [col for col, (_, sizes) in self._spans.items() if sizes[row] >= 0]

    def read(self, key: str, exts: Iterable[str] | None = None) -> dict[str, bytes]:
        """Members of sample `key` (all, or those in `exts`), each checked against its tar header."""
        row = self.row(key)
        cols = {member_column(e): e for e in (exts or [])}
        out: dict[str, bytes] = {}
        for col, (_, sizes) in self._spans.items():
            if sizes[row] >= 0 and (not exts or col in cols):
                ext = cols.get(col) or _ext_of(col, key, self.shard_at(row))
                out[ext] = self.read_at(row, ext)
        return out

    def read_at(self, row: int, ext: str) -> bytes:
        """The bytes of member `ext` of sample number `row`.

        Raises:
            ShardError: the sample has no such member, the member runs past the end of its shard,
                or the tar header in front of it is not `<key>.<ext>` of the indexed size.
        """
        offset, size = self._span(row, ext)
        return read_member_at(self._fd(int(self.shard_of[row])), offset, size, self.shard_at(row), self.keys[row], ext)

    def image_at(self, row: int, ext: str) -> np.ndarray:
        """Member `ext` (a PNG) of sample number `row` as (H, W, 3) uint8 RGB. Raises ShardError."""
        return decode_member(self.read_at(row, ext), self.shard_at(row), self.keys[row], ext)

    def member(self, key: str, ext: str) -> Member:
        """Where member `<key>.<ext>` lies, for reading it in another process without the index."""
        return self.member_at(self.row(key), ext)

    def member_at(self, row: int, ext: str) -> Member:
        """`member` of sample number `row` (no key → row table is built for it)."""
        offset, size = self._span(row, ext)
        return Member(self.path / self.shard_at(row), self.keys[row], ext, offset, size)

    def locate(self, keys: Iterable[str], ext: str) -> dict[str, tuple[str, int, int]]:
        """(shard, offset, size) of member `<key>.<ext>` for each key, for `read_member`.
        Raises KeyError for an unknown key, ShardError when a sample has no such member."""
        out = {}
        for key in keys:
            row = self.row(key)
            out[key] = (self.shard_at(row), *self._span(row, ext))
        return out

    def iter_samples(self, shards: Iterable[str] | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
        """(key, members) in stored order, streaming each tar once."""
        for name in shards if shards is not None else self.shards:
            yield from iter_tar(self.path / name)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _span(self, row: int, ext: str) -> tuple[int, int]:
        spans = self._spans.get(member_column(ext))
        if spans is None:
            raise ShardError(f"{self.path / INDEX}: no {ext!r} members")
        offset, size = int(spans[0][row]), int(spans[1][row])
        if offset < 0 or size < 0:
            raise ShardError(f"{self.shard_at(row)}: sample {self.keys[row]!r} has no {ext} member")
        return offset, size

    def _fd(self, shard_id: int) -> int:
        if self._pid != os.getpid():  # a forked child: close its copies of the parent's descriptors
            self.close()
            self._pid = os.getpid()
        fd = self._fds.get(shard_id)
        if fd is not None:
            self._fds.move_to_end(shard_id)
            return fd
        path = self.path / self.shard_names[shard_id]
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise ShardError(f"{path.name}: shard listed in {self.path / INDEX} does not exist") from None
        self._fds[shard_id] = fd
        if len(self._fds) > _MAX_OPEN:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_index": None, "_sorted": None, "_order": None, "_fds": OrderedDict(), "_pid": None}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


@dataclass(frozen=True)
class Member:
    """Where member `<key>.<ext>` lies in its shard: what a worker process needs to read it without
    the index (`ShardSet.member`)."""
    path: Path
    key: str
    ext: str
    offset: int
    size: int

    def read(self) -> bytes:
        return read_member(self.path, self.key, self.ext, self.offset, self.size)

    def image(self) -> np.ndarray:
        """The member (a PNG) as (H, W, 3) uint8 RGB. Raises ShardError."""
        return decode_member(self.read(), self.path.name, self.key, self.ext)


def is_shard_set(path: str | os.PathLike) -> bool:
    return (Path(path) / INDEX).is_file()


def decode_member(data: bytes, shard: str, key: str, ext: str) -> np.ndarray:
    """PNG member bytes → (H, W, 3) uint8 RGB (`decode_png`); ShardError naming the shard and key if undecodable."""
    try:
        return decode_png(data)
    except ImageError:
        raise ShardError(f"{shard}: sample {key!r}: {ext} failed to decode") from None


def _ext_of(col: str, key: str, shard: str) -> str:
    known = {member_column(e): e for e in ("hr.png", "lr.png", "json")}
    if col in known:
        return known[col]
    raise ShardError(f"{shard}: sample {key!r}: cannot map index column {col!r} back to a member name")


__all__ = ["INDEX", "Member", "Sample", "ShardError", "ShardSet", "WrittenSet", "check_key", "decode_member",
           "index_columns", "is_shard_set", "iter_index", "iter_parquet_rows", "iter_tar", "json_bytes",
           "member_column", "read_member", "read_parquet_table", "write_shard_set"]
