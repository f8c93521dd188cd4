"""Hard kills: a SIGKILLed `dvc repro` of a real stage, then README's recovery step, then `dvc repro`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DVC, dvc_project, lr_hash, run_dvc
from pipeline.recover import process_runs, release_dead_locks

ROOT = Path(__file__).resolve().parents[1]


def _sleeper() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); import time; time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    return proc


CMD = "-c print('up', flush=True); import time; time.sleep(60)"


def test_process_runs_tells_a_live_command_from_a_dead_or_reused_pid():
    proc = _sleeper()
    try:
        assert process_runs(proc.pid, CMD)
        assert not process_runs(proc.pid, "dvc repro -s degrade")  # the PID now runs something else
    finally:
        proc.kill()
        proc.wait()
    assert not process_runs(proc.pid, CMD)


def test_dead_and_reused_entries_are_released_live_ones_kept(tmp_path):
    live = _sleeper()
    dead = _sleeper()
    dead.kill()
    dead.wait()
    try:
        live_info = {"pid": live.pid, "cmd": CMD}
        reused = {"pid": live.pid, "cmd": "dvc repro -s -f degrade"}  # PID recycled by another program
        gone = {"pid": dead.pid, "cmd": "dvc repro -s -f degrade"}
        rwlock = tmp_path / ".dvc" / "tmp" / "rwlock"
        rwlock.parent.mkdir(parents=True)
        rwlock.write_text(json.dumps({"read": {"/r/data/hr": [gone, live_info], "/r/params.yaml": [reused]},
                                      "write": {"/r/data/lr": gone, "/r/eval": live_info}}))
        released, kept = release_dead_locks(rwlock)
        assert len(released) == 3 and len(kept) == 2
        assert json.loads(rwlock.read_text()) == {"read": {"/r/data/hr": [live_info]},
                                                  "write": {"/r/eval": live_info}}
    finally:
        live.kill()
        live.wait()


def test_a_file_that_is_not_dvcs_lock_is_left_alone(tmp_path):
    rwlock = tmp_path / "rwlock"
    rwlock.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not DVC's lock file"):
        release_dead_locks(rwlock)
    assert rwlock.read_text() == "[1, 2]"


@pytest.mark.slow
def test_sigkill_of_a_real_degrade_run_then_recover_gives_the_same_bytes(tmp_path):
    repo = dvc_project(tmp_path / "repo")
    run_dvc(repo, "repro", "degrade")
    want = lr_hash(repo)
    for kill_when in ("writing", "early"):
        proc = subprocess.Popen([str(DVC), "repro", "-s", "-f", "degrade"], cwd=repo, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
        deadline = time.monotonic() + 60
        if kill_when == "writing":  # the stage is writing its temporary set
            while not list((repo / "data").glob(".lr.tmp-*")) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)
        else:
            time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: dvc and the stage it runs
        proc.wait()
        if kill_when == "writing":
            assert list((repo / "data").glob(".lr.tmp-*")), "the kill should leave a temporary behind"
        out = subprocess.run([sys.executable, "-m", "pipeline.cli", "recover"], cwd=repo, capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stderr
        if kill_when == "writing":
            assert "removed data/.lr.tmp-" in out.stdout, out.stdout
        run_dvc(repo, "repro", "degrade")
        assert lr_hash(repo) == want
        assert sorted(p.name for p in (repo / "data").iterdir()) == [".gitignore", "hr", "lr", "real"]
        status = run_dvc(repo, "status", "degrade")
        assert "up to date" in status, status
