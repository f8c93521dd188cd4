"""Shard sets: WebDataset-layout tar shards plus an `index.parquet` with one row per sample.

Layout (README, "The pipeline"): `<set>-000000.tar`, ... holding `<key>.<ext>` members (`hr.png`, `lr.png`,
`json`), keys without dots, samples in sorted key order, fixed mtime/uid/gid and GNU headers, so
the same samples always give the same bytes. The index row of a sample carries `key`, `shard`,
`sha256` (of its primary image, `lr.png` else `hr.png`), `offset_<ext>`/`size_<ext>` of every member
(ext with '.' → '_'), and whatever columns the writing stage adds (height, width, split, recipe, ...).

Reading never extracts by path: members are read by offset together with the tar header in front
of them, which must name `<key>.<ext>` with the indexed size (`read_member_at`), and names are
validated (no separators, no '..', no dotted keys) before anything is trusted.
"""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported where an index is read or written: a worker that only reads
    import pandas as pd  # imported here: reading members by offset (`read_member`) starts sooner without it

INDEX = "index.parquet"
PRIMARY = ("lr.png", "hr.png")
_FORMAT = tarfile.GNU_FORMAT


class ShardError(ValueError):
    """A malformed shard set; the message names the shard and key."""


@dataclass
class Sample:
    """One sample: `members` maps extension (`"hr.png"`, `"json"`) to bytes; `columns` go to the index."""
    key: str
    members: Mapping[str, bytes]
    columns: Mapping[str, Any] = field(default_factory=dict)


def member_column(ext: str) -> str:
    return ext.replace(".", "_")


def check_key(key: str, where: str = "") -> None:
    if not key or "." in key or "/" in key or "\\" in key or key in ("..",) or "\x00" in key:
        raise ShardError(f"{where}invalid sample key {key!r}: keys are non-empty and contain no '.', '/' or '\\'")


def json_bytes(obj: Any) -> bytes:
    """Canonical JSON (sorted keys, no NaN) for a sample's `<key>.json` member."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def write_shard_set(out_dir: str | os.PathLike, samples: Iterable[Sample], *, set_name: str,
                    shard_bytes: int = 256 << 20, max_per_shard: int | None = None) -> pd.DataFrame:
    """Write `samples` (in strictly increasing key order) as tar shards + `index.parquet` into `out_dir`.

    A new shard starts once the current one holds `shard_bytes` of data or `max_per_shard` samples.
    `out_dir` should be a fresh directory (wrap it in `atomic_dir`). Returns the index.

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
    rows: list[dict[str, Any]] = []
    writer: _TarWriter | None = None
    shard_no, in_shard, prev = 0, 0, None
    try:
        for sample in samples:
            check_key(sample.key)
            if prev is not None and sample.key <= prev:
                raise ShardError(f"{set_name}: keys must arrive in sorted order without repeats; {sample.key!r} after {prev!r}")
            prev = sample.key
            if not sample.members:
                raise ValueError(f"sample {sample.key!r} has no members")
            if writer is not None and (writer.data_bytes >= shard_bytes or
                                       (max_per_shard is not None and in_shard >= max_per_shard)):
                writer.close()
                writer, shard_no, in_shard = None, shard_no + 1, 0
            if writer is None:
                writer = _TarWriter(out_dir / f"{set_name}-{shard_no:06d}.tar")
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
            rows.append(row)
            in_shard += 1
    finally:
        if writer is not None:
            writer.close()
    import pandas as pd
    index = pd.DataFrame(rows)
    if index.empty:
        index = pd.DataFrame({"key": pd.Series(dtype=str), "shard": pd.Series(dtype=str), "sha256": pd.Series(dtype=str)})
    write_index(out_dir, index)
    return index


def write_index(set_dir: str | os.PathLike, index: pd.DataFrame) -> None:
    index.reset_index(drop=True).to_parquet(Path(set_dir) / INDEX, index=False, engine="pyarrow", compression="zstd")


class _TarWriter:
    """Deterministic GNU tar writer that reports the data offset of each member.

    Writes the bytes `tarfile.TarFile.addfile`/`close` would (each header from `TarInfo.tobuf`, data
    padded to 512-byte blocks, two zero blocks, the last 10 KiB record filled), without building the
    header twice and copying the data through a file object for every member.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "wb")
        self.offset = 0      # bytes written
        self.data_bytes = 0  # member bytes written

    def add(self, name: str, data: bytes) -> int:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        header = info.tobuf(_FORMAT, tarfile.ENCODING, "surrogateescape")
        start = self.offset + len(header)
        pad = -len(data) % tarfile.BLOCKSIZE
        self._f.write(header)
        self._f.write(data)
        self._f.write(tarfile.NUL * pad)
        self.offset = start + len(data) + pad
        self.data_bytes += len(data)
        return start

    def close(self) -> None:
        end = self.offset + 2 * tarfile.BLOCKSIZE
        self._f.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE + -end % tarfile.RECORDSIZE))
        self._f.close()


class ShardSet:
    """Read access to a shard set directory: its index, random access by key, streaming iteration."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        index_path = self.path / INDEX
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path}: no shard-set index (is {self.path} a shard set?)")
        import pandas as pd
        self.index = pd.read_parquet(index_path)
        for col in ("key", "shard"):
            if col not in self.index.columns:
                raise ShardError(f"{index_path}: missing column {col!r}")
        self._rows = {k: i for i, k in enumerate(self.index["key"])}
        # Plain arrays for `read`: a pandas row lookup costs more than reading the bytes.
        self._shard_of = self.index["shard"].to_numpy()
        members = sorted(c[len("size_"):] for c in self.index.columns if c.startswith("size_"))
        self._spans = {m: (self._column(f"offset_{m}"), self._column(f"size_{m}")) for m in members}

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shards(self) -> list[str]:
        return sorted(self.index["shard"].unique())

    def members_of(self, key: str) -> list[str]:
        return self._members_at(self._row(key))

    def read(self, key: str, exts: Iterable[str] | None = None) -> dict[str, bytes]:
        """Members of sample `key` (all, or those in `exts`), read by offset from its shard and checked
        against their tar headers (`read_member_at`)."""
        row = self._row(key)
        cols = {member_column(e): e for e in (exts or [])}
        wanted = [c for c in self._members_at(row) if not exts or c in cols]
        out: dict[str, bytes] = {}
        shard = self.path / self._shard_of[row]
        fd = os.open(shard, os.O_RDONLY)
        try:
            for col in wanted:
                offsets, sizes = self._spans[col]
                ext = cols.get(col) or _ext_of(col, key, shard.name)
                out[ext] = read_member_at(fd, int(offsets[row]), int(sizes[row]), shard.name, key, ext)
        finally:
            os.close(fd)
        return out

    def locate(self, keys: Iterable[str], ext: str) -> dict[str, tuple[str, int, int]]:
        """(shard, offset, size) of member `<key>.<ext>` for each key, for `read_member`.
        Raises KeyError for an unknown key, ShardError when a sample has no such member."""
        offsets, sizes = self._spans.get(member_column(ext), (None, None))
        if offsets is None:
            raise ShardError(f"{self.path / INDEX}: no {ext!r} members")
        out = {}
        for key in keys:
            row = self._row(key)
            if sizes[row] < 0:
                raise ShardError(f"{self.path}: sample {key!r} has no {ext!r} member")
            out[key] = (str(self._shard_of[row]), int(offsets[row]), int(sizes[row]))
        return out

    def iter_samples(self, shards: Iterable[str] | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
        """(key, members) in stored order, streaming each tar once."""
        for name in shards if shards is not None else self.shards:
            yield from iter_tar(self.path / name)

    def _members_at(self, row: int) -> list[str]:
        return [col for col, (_, sizes) in self._spans.items() if sizes[row] >= 0]

    def _column(self, name: str) -> np.ndarray:
        if name not in self.index.columns:
            raise ShardError(f"{self.path / INDEX}: missing column {name!r}")
        return span_column(self.index[name])

    def _row(self, key: str) -> int:
        try:
            return self._rows[key]
        except KeyError:
            raise KeyError(f"{self.path}: no sample with key {key!r}") from None


def span_column(col: pd.Series) -> np.ndarray:
    """An `offset_*`/`size_*` index column as int64, -1 where the sample has no such member (NaN)."""
    return col.fillna(-1).to_numpy(dtype=np.int64)


def _ext_of(col: str, key: str, shard: str) -> str:
    known = {member_column(e): e for e in ("hr.png", "lr.png", "json")}
    if col in known:
        return known[col]
    raise ShardError(f"{shard}: sample {key!r}: cannot map index column {col!r} back to a member name")


def iter_tar(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group a WebDataset tar's members by key; validate every name first.

    Raises:
        ShardError: a member name with a path separator or '..', a non-file member, or a key
            whose members are not contiguous.
    """
    path = Path(path)
    seen: set[str] = set()
    key, members = None, {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                name = info.name
                if "/" in name or "\\" in name or ".." in name or name.startswith("."):
                    raise ShardError(f"{path.name}: member {name!r}: path separators and '..' are not allowed")
                if not info.isfile():
                    raise ShardError(f"{path.name}: member {name!r} is not a regular file")
                k, dot, ext = name.partition(".")
                if not dot or not ext:
                    raise ShardError(f"{path.name}: member {name!r} has no '<key>.<ext>' form")
                if k != key:
                    if key is not None:
                        yield key, members
                    if k in seen:
                        raise ShardError(f"{path.name}: sample {k!r}: members are not contiguous")
                    seen.add(k)
                    key, members = k, {}
                f = tar.extractfile(info)
                members[ext] = f.read() if f is not None else b""
    except tarfile.TarError as err:
        raise ShardError(f"{path.name}: not a readable tar ({err})") from None
    if key is not None:
        yield key, members


# ---- checked reads of one member by its indexed offset ------------------------------------------

_BLOCK = 512  # tar block; a member's header is the block before its data


def read_member(path: str | os.PathLike, key: str, ext: str, offset: int, size: int) -> bytes:
    """Member `<key>.<ext>` of the shard at `path`, by its indexed data `offset` and `size`, checked
    against its tar header. Raises ShardError as `read_member_at`."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_member_at(fd, offset, size, path.name, key, ext)
    finally:
        os.close(fd)


def read_member_at(fd: int, offset: int, size: int, shard: str, key: str, ext: str) -> bytes:
    """The `size` bytes at `offset` of the open shard `fd` (named `shard` in errors), read with the tar
    header in front of them, which must name `<key>.<ext>` with that size.

    Raises:
        ShardError: the offset leaves no room for a header, the member runs past the end of the
            shard, or the header names another member, size or a non-file (a stale or tampered index).
    """
    if offset < _BLOCK or size < 0:
        raise ShardError(f"{shard}: sample {key!r}: {ext} at offset {offset} (size {size}) is not a member's data; "
                         "the index disagrees with the tar")
    buf = os.pread(fd, _BLOCK + size, offset - _BLOCK)
    if len(buf) < _BLOCK + size:
        raise ShardError(f"{shard}: sample {key!r}: {ext} runs past the end of the shard (truncated shard?)")
    _check_header(buf[:_BLOCK], f"{key}.{ext}", size, shard, key)
    return buf[_BLOCK:]


def _check_header(header: bytes, expected: str, size: int, shard: str, key: str) -> None:
    name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    if "/" in name or "\\" in name or ".." in name:
        raise ShardError(f"{shard}: sample {key!r}: member {name!r}: path separators and '..' are not allowed")
    if name.encode() != expected.encode()[:100]:
        raise ShardError(f"{shard}: sample {key!r}: the index points at member {name or '<no header>'!r}, "
                         f"not {expected!r}; the index disagrees with the tar")
    if header[156:157] not in (b"0", b"\0"):
        raise ShardError(f"{shard}: sample {key!r}: member {name!r} is not a regular file")
    field = header[124:136]
    try:
        stored = int.from_bytes(field[1:], "big") if field[0] & 0x80 else int(field.strip(b"\0 ") or b"0", 8)
    except ValueError:
        raise ShardError(f"{shard}: sample {key!r}: member {name!r} has a corrupt tar header") from None
    if stored != size:
        raise ShardError(f"{shard}: sample {key!r}: member {name!r} holds {stored} bytes but the index says {size}; "
                         "the index disagrees with the tar")
