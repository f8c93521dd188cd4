"""The tar side of a shard: a deterministic GNU tar writer, a streaming reader, and checked reads
of one member by offset.

A member is never extracted by path: `read_member_at` reads the 512-byte header in front of the
member's data as well and checks that it names `<key>.<ext>` with the expected size, so a stale or
tampered index, a truncated shard, or a member name with a path separator fails with one
`ShardError` naming the shard, the key and the offset, never with silent garbage.
"""
from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

_FORMAT = tarfile.GNU_FORMAT


class ShardError(ValueError):
    """A malformed shard set; the message names the shard and key."""


class TarWriter:
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
        raise ShardError(f"{shard}: sample {key!r}: {ext} runs past the end of the shard (offset {offset}, "
                         f"size {size}; truncated shard?)")
    _check_header(buf[:_BLOCK], f"{key}.{ext}", size, f"{shard}: sample {key!r}", f"offset {offset}")
    return buf[_BLOCK:]


def _check_header(header: bytes, expected: str, size: int, where: str, at: str) -> None:
    """Raise ShardError (prefixed `where`, naming the offset `at`) unless the header names `expected`
    with `size` bytes as a regular file."""
    name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    if "/" in name or "\\" in name or ".." in name:
        raise ShardError(f"{where}: member {name!r}: path separators and '..' are not allowed ({at})")
    if name.encode() != expected.encode()[:100]:
        raise ShardError(f"{where}: the index points at member {name or '<no header>'!r}, not {expected!r} "
                         f"({at}); the index disagrees with the tar")
    if header[156:157] not in (b"0", b"\0"):
        raise ShardError(f"{where}: member {name!r} is not a regular file ({at})")
    field = header[124:136]
    try:
        stored = int.from_bytes(field[1:], "big") if field[0] & 0x80 else int(field.strip(b"\0 ") or b"0", 8)
    except ValueError:
        raise ShardError(f"{where}: member {name!r} has a corrupt tar header ({at})") from None
    if stored != size:
        raise ShardError(f"{where}: member {name!r} holds {stored} bytes but the index says {size} ({at}); "
                         "the index disagrees with the tar")
