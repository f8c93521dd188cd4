"""Atomic outputs under hard kills: stale temporaries are swept, live ones never are."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.io.atomic import atomic_dir, atomic_write_bytes, sweep_stale

ROOT = Path(__file__).resolve().parents[1]

# A writer that enters atomic_dir / atomic_write, says so, then waits to be killed.
WRITER = """
import sys, time
from pathlib import Path
from pipeline.io.atomic import atomic_dir, atomic_write
kind, out = sys.argv[1], Path(sys.argv[2])
if kind == "dir":
    with atomic_dir(out) as tmp:
        (tmp / "half.bin").write_bytes(b"x" * 1000)
        print("writing", flush=True)
        time.sleep(60)
else:
    def write(f):
        f.write(b"half")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
    atomic_write(out, write)
"""


def _start_writer(kind: str, out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, kind, str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _siblings(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def test_a_live_writers_folder_is_kept_and_a_killed_ones_swept(tmp_path):
    out = tmp_path / "lr"
    proc = _start_writer("dir", out)
    try:
        live = _siblings(tmp_path, "lr")
        assert len(live) == 2 and live[1] == live[0] + ".lock", live
        assert sweep_stale(out) == []  # the writer is alive: nothing touched
        assert _siblings(tmp_path, "lr") == live
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _siblings(tmp_path, "lr") == live  # SIGKILL ran no cleanup
    with atomic_dir(out) as tmp:  # the next writer of the same path sweeps first
        (tmp / "whole.bin").write_bytes(b"y")
    assert _siblings(tmp_path, "lr") == []
    assert sorted(p.name for p in out.iterdir()) == ["whole.bin"]


def test_a_killed_file_write_is_swept_by_the_next_write(tmp_path):
    out = tmp_path / "step_00000010.pt"
    proc = _start_writer("file", out)
    try:
        (stale,) = _siblings(tmp_path, out.name)
        assert sweep_stale(out) == [] and (tmp_path / stale).exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    atomic_write_bytes(out, b"whole")
    assert out.read_bytes() == b"whole"
    assert _siblings(tmp_path, out.name) == []


def test_temporaries_from_before_locks_existed_are_swept(tmp_path):
    (tmp_path / ".hr.tmp-6f4ylu6n").mkdir()
    (tmp_path / ".hr.tmp-6f4ylu6n" / "hr-000000.tar").write_bytes(b"half")
    (tmp_path / ".hr.old-1234").mkdir()
    (tmp_path / ".metrics.json.k2j4.tmp").write_bytes(b"{")
    (tmp_path / ".hrx.tmp-keep").mkdir()  # another output's: not ours to touch
    removed = sweep_stale(tmp_path / "hr")
    assert sorted(p.name for p in removed) == [".hr.old-1234", ".hr.tmp-6f4ylu6n"]
    assert sweep_stale(tmp_path / "metrics.json") == [tmp_path / ".metrics.json.k2j4.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hrx.tmp-keep"]


def test_a_writer_in_this_process_is_not_swept_by_a_nested_sweep(tmp_path):
    out = tmp_path / "eval"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
        assert sweep_stale(out) == []
        assert tmp.is_dir()
    assert (out / "a.txt").read_text() == "a"


def test_lock_is_not_inherited_by_forked_children(tmp_path):
    """Pool workers forked while a folder is written must not keep its lock after the writer dies."""
    out = tmp_path / "lr"
    script = WRITER.replace('print("writing", flush=True)',
                            'import os\n        if os.fork() == 0:\n            time.sleep(60)\n'
                            '        print("writing", flush=True)')
    proc = subprocess.Popen([sys.executable, "-c", script, "dir", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)  # the writer dies; its forked child lives on
        proc.wait()
        deadline = time.monotonic() + 10
        while not sweep_stale(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _siblings(tmp_path, "lr") == []
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
