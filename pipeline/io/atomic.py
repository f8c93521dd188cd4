"""Atomic outputs: write to a temporary sibling, rename into place only when complete.

An interrupted stage therefore leaves either the previous output or nothing at the output path,
never a half-written one. A hard kill (SIGKILL, the OOM killer, a pre-empted VM) cannot run cleanup
code, so its temporary sibling stays behind; the next write to the same path removes it.

Each temporary sibling is guarded by a POSIX lock that its writer holds while it lives: a folder
`.NAME.tmp-TOKEN/` by the lock file `.NAME.tmp-TOKEN.lock`, a file `.NAME.TOKEN.tmp` by a lock on
itself. The kernel drops such a lock when its process dies, however it dies, and forked workers do
not inherit it, so "lock free" means "its writer is gone". `sweep_stale` removes only those.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

# tokens of the temporaries this process is writing: a POSIX lock never conflicts with its own
# process, so without this a sweep would see them as free
_LIVE: set[str] = set()


def _try_lock(fd: int) -> bool:
    """Take an exclusive POSIX lock on `fd` without waiting; False if another process holds one."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


def _is_free(lock: Path) -> bool:
    """Whether no live process holds `lock` (a missing lock file counts as free)."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        return _try_lock(fd)
    finally:
        os.close(fd)  # releases our probe lock at once


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def sweep_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings that killed writers of `path` left behind; return them.

    Folders `.NAME.tmp-*` / `.NAME.old-*` go when their lock file is free (or absent: written before
    locks existed), files `.NAME.*.tmp` when no process holds a lock on them. A sibling that a live
    process is writing is never touched.
    """
    path = Path(path)
    parent, name = path.parent, path.name
    if not parent.is_dir():
        return []
    removed = []
    for sib in sorted(parent.iterdir()):
        token = _token(sib.name, name)
        if token is None or token in _LIVE:
            continue
        if sib.name.endswith(".lock"):
            if not sib.with_name(sib.name[:-5]).exists() and _is_free(sib):
                _remove(sib)  # a lock whose folder is gone already
            continue
        lock = parent / f".{name}.tmp-{token}.lock" if sib.is_dir() else sib
        if _is_free(lock):
            _remove(sib)
            removed.append(sib)
            if lock != sib:
                _remove(lock)
    return removed


def sweep_folder(folder: str | os.PathLike) -> list[Path]:
    """`sweep_stale` for every output in `folder` that has temporary siblings; return what went."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = set()
    for entry in folder.iterdir():
        n = entry.name
        for marker in (".tmp-", ".old-"):
            if n.startswith(".") and marker in n[1:]:
                names.add(n[1:].split(marker, 1)[0])
        if n.startswith(".") and n.endswith(".tmp") and n.count(".") >= 3:
            names.add(n[1:-4].rsplit(".", 1)[0])
    return [p for name in sorted(names) for p in sweep_stale(folder / name)]


def _token(sibling: str, name: str) -> str | None:
    """The writer's token of a temporary sibling of `name`, or None if `sibling` is not one."""
    for prefix in (f".{name}.tmp-", f".{name}.old-"):
        if sibling.startswith(prefix):
            return sibling[len(prefix):].removesuffix(".lock")
    if sibling.startswith(f".{name}.") and sibling.endswith(".tmp"):
        return sibling[len(name) + 2:-4]
    return None


@contextlib.contextmanager
def _locked_token(parent: Path, name: str) -> Iterator[str]:
    """A fresh token whose lock file `.NAME.tmp-TOKEN.lock` this process holds until exit."""
    token = secrets.token_hex(4)
    lock = parent / f".{name}.tmp-{token}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    _try_lock(fd)  # a file we just created: nobody else can hold it
    _LIVE.add(token)
    try:
        yield token
    finally:
        _LIVE.discard(token)
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; on success replace `path` with it.

    First removes what killed writers of `path` left behind (`sweep_stale`). On an exception the
    temporary directory is removed and `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    with _locked_token(path.parent, path.name) as token:
        tmp = path.with_name(f".{path.name}.tmp-{token}")
        tmp.mkdir()
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = None
        if path.exists() or path.is_symlink():
            old = path.with_name(f".{path.name}.old-{token}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            _remove(old)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(file)` on a temporary file beside `path`, fsync, then `os.replace` it into place;
    a crash or an exception leaves no partial `path` (an exception leaves no temporary file either,
    and a hard kill's is removed by the next write of `path`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    token = secrets.token_hex(4)
    tmp = path.with_name(f".{path.name}.{token}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    _try_lock(fd)
    _LIVE.add(token)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)  # while the lock is still held
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        _LIVE.discard(token)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
