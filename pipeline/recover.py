"""After a hard kill: free what a dead `dvc` left locked and remove what dead writers left half-written.

A SIGKILLed `dvc repro` (the OOM killer, a pre-empted VM) runs no cleanup. It leaves its entries in
DVC's per-path lock file `.dvc/tmp/rwlock`; DVC drops an entry itself once that PID is gone, but on a
machine that reuses PIDs (containers do) the PID may belong to another process by then, and DVC
refuses to run ("'data/lr' is busy, it is being blocked by: (PID N) ..."). Our stages leave temporary
siblings of their outputs (`pipeline.io.atomic`); a rerun that DVC restores from its run cache never
starts our code, so nothing would sweep them.

`recover(root, outputs)` does both, and only for the dead: an rwlock entry is kept while a process
with that PID runs that same command, and a temporary is kept while its writer holds its lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.io.atomic import atomic_write_text, sweep_folder


def process_runs(pid: int, cmd: str) -> bool:
    """Whether process `pid` is alive and runs `cmd` (DVC records `" ".join(sys.argv)`; the kernel's
    command line may have the interpreter in front of it)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: PID liveness is all we can know
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    line = " ".join(w.decode(errors="replace") for w in raw.split(b"\0") if w)
    return bool(cmd) and (line == cmd or line.endswith(" " + cmd))


def _live_entries(infos: list[dict] | dict) -> list[dict] | dict | None:
    if isinstance(infos, dict):
        return infos if process_runs(int(infos["pid"]), str(infos["cmd"])) else None
    kept = [info for info in infos if process_runs(int(info["pid"]), str(info["cmd"]))]
    return kept or None


def release_dead_locks(rwlock: Path) -> tuple[list[str], list[str]]:
    """Drop the entries of dead processes from DVC's `rwlock` file.

    Returns (released, live): lines `PID cmd on path` for each. Raises ValueError if the file is not
    DVC's JSON (it is then left as it is).
    """
    if not rwlock.is_file():
        return [], []
    with _dvc_edit_lock(rwlock.with_name("rwlock.lock")):
        return _release(rwlock)


@contextlib.contextmanager
def _dvc_edit_lock(path: Path, timeout: float = 10.0) -> Iterator[None]:
    """Hold the lock DVC takes around its own edits of the rwlock file (an flock on `rwlock.lock`)."""
    with open(path, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ValueError(f"{path}: held by a running dvc for {timeout:.0f} s; try again") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _release(rwlock: Path) -> tuple[list[str], list[str]]:
    try:
        lock = json.loads(rwlock.read_text() or "{}")
        modes = {mode: dict(lock.get(mode, {})) for mode in ("read", "write")}
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"{rwlock}: not DVC's lock file (JSON with 'read' and 'write'); left as it is") from None
    released, live = [], []
    for mode, paths in modes.items():
        for path, infos in list(paths.items()):
            kept = _live_entries(infos)
            everyone = infos if isinstance(infos, list) else [infos]
            still = [] if kept is None else (kept if isinstance(kept, list) else [kept])
            for info in everyone:
                line = f"PID {info['pid']} `{info['cmd']}` ({mode} {path})"
                (live if info in still else released).append(line)
            if kept is None:
                del paths[path]
            else:
                paths[path] = kept
    if released:
        atomic_write_text(rwlock, json.dumps(modes))
    return released, live


def recover(root: Path, outputs: Iterable[Path]) -> dict[str, list[str]]:
    """Release dead DVC locks under `root/.dvc/tmp` and sweep stale temporaries beside `outputs`.

    Returns {"released": [...], "live": [...], "removed": [...]}: the lock entries dropped, those
    kept because their process still runs, and the temporaries removed (paths relative to `root`).
    """
    released, live = release_dead_locks(root / ".dvc" / "tmp" / "rwlock")
    removed = []
    for folder in sorted({Path(out).parent for out in outputs}):
        for path in sweep_folder(folder):
            removed.append(str(path.relative_to(root)) if path.is_relative_to(root) else str(path))
    return {"released": released, "live": live, "removed": removed}
