"""The degrade stage on several ranks (torchrun, gloo on the CPU): the job split, the launch
environment, the merged set byte for byte against one process, and a rank that fails."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from test_degrade_stage import _tiles, _write_hr_set

from pipeline.degrade.dali_backend import cuda_device_count, gpu_device_id
from pipeline.degrade.ranks import degrade_ranks, rank_slice, world_from_env
from pipeline.params import build

ROOT = Path(__file__).resolve().parents[1]
DEGRADE = {"variants": 2, "backend": "reference", "workers": 1, "batch_size": 3, "examples": 3,
           "shard_bytes": 40_000}


# ---- the split and the environment --------------------------------------------------------------

@pytest.mark.parametrize("world", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 20, 23])
def test_rank_slices_cover_every_job_once_in_order(n, world):
    jobs = list(range(n))
    shares = [jobs[rank_slice(n, r, world)] for r in range(world)]
    assert [j for share in shares for j in share] == jobs  # each job exactly once, rank order = job order
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    assert shares == [jobs[rank_slice(n, r, world)] for r in range(world)]  # deterministic


@pytest.mark.parametrize("local_rank,gpus,device", [(None, 8, 0), ("0", 8, 0), ("3", 8, 3), ("9", 8, 1),
                                                    ("2", 1, 0), ("5", 0, 0)])
def test_each_local_rank_gets_its_own_gpu(local_rank, gpus, device):
    env = {} if local_rank is None else {"LOCAL_RANK": local_rank}
    assert gpu_device_id(env, gpus) == device


def test_a_malformed_local_rank_is_named():
    with pytest.raises(ValueError, match="LOCAL_RANK must be a non-negative integer, got 'x'"):
        gpu_device_id({"LOCAL_RANK": "x"}, 2)


@pytest.mark.parametrize("visible", ["", " ", "-1"])
def test_cuda_visible_devices_can_hide_every_gpu(monkeypatch, visible):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert cuda_device_count() == 0


def test_rank_slice_refuses_a_rank_outside_the_world():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        rank_slice(10, 2, 2)


def test_world_from_env():
    assert world_from_env({}) == world_from_env({"WORLD_SIZE": "1", "RANK": "0"})
    assert world_from_env({}).size == 1
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    w = world_from_env(env)
    assert (w.rank, w.size, w.local_size) == (3, 4, 2)
    with pytest.raises(ValueError, match="^WORLD_SIZE=2 but RANK, MASTER_PORT not set; launch the ranks with torchrun"):
        world_from_env({"WORLD_SIZE": "2", "MASTER_ADDR": "h"})
    with pytest.raises(ValueError, match=r"^RANK must be in \[0, 4\) for WORLD_SIZE=4, got 4$"):
        world_from_env({**env, "RANK": "4"})
    with pytest.raises(ValueError, match="^WORLD_SIZE must be an integer, got 'two'$"):
        world_from_env({"WORLD_SIZE": "two"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_world_size_without_the_other_ranks_is_a_clear_error_not_a_hang(tmp_path, monkeypatch):
    from pipeline.degrade import DegradeConfig
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    cfg = build(DegradeConfig, DEGRADE, "degrade")
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"^rank 0 of 2: no process group at 127\.0\.0\.1:\d+ within 0:00:02 "):
        degrade_ranks(tmp_path / "hr", tmp_path / "lr", cfg, seed=0, scale=4, init_timeout=timedelta(seconds=2))
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "lr").exists() and not (tmp_path / ".lr.parts").exists()


# ---- the stage under torchrun -------------------------------------------------------------------

def _params(path: Path, hr: Path, lr: Path) -> Path:
    path.write_text(yaml.safe_dump({"seed": 5, "scale": 4, "paths": {"hr": str(hr), "lr": str(lr)},
                                    "degrade": DEGRADE}))
    return path


def _files(set_dir: Path) -> dict[str, bytes]:
    """Every file of the set, the reuse manifest's (`.degrade-reuse/`) included."""
    return {p.relative_to(set_dir).as_posix(): p.read_bytes() for p in sorted(set_dir.rglob("*")) if p.is_file()}


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


@pytest.mark.slow
def test_two_ranks_write_the_bytes_of_one_process(fixtures, tmp_path, capsys):
    from stages.degrade import main

    hr = _write_hr_set(tmp_path / "hr", _tiles(fixtures))  # 9 tiles + 1 too small, x 2 variants
    ranked = _params(tmp_path / "ranks.yaml", hr, tmp_path / "ranks" / "lr")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "stages.degrade", "--params", str(ranked)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("degrade: 18 LR samples (realesrgan-x4plus, reference, 2 ranks) in ") == 1
    assert "2 skipped" in proc.stdout

    main(["--params", str(_params(tmp_path / "one.yaml", hr, tmp_path / "one" / "lr"))])
    assert "degrade: 18 LR samples (realesrgan-x4plus, reference) in " in capsys.readouterr().out

    one, two = _files(tmp_path / "one" / "lr"), _files(tmp_path / "ranks" / "lr")
    assert {"index.parquet", "skipped.csv", "report.md", "recipe_histograms.png", "examples.png"} <= set(one)
    assert len([n for n in one if n.endswith(".tar")]) > 2  # shard boundaries inside each rank's slice
    assert one["skipped.csv"].decode().count("tiny_v") == 2
    assert sorted(one) == sorted(two)
    for name in one:
        assert one[name] == two[name], name
    assert sorted(p.name for p in (tmp_path / "ranks").iterdir()) == ["lr"]  # no parts dir, no temp dir

    # again, incremental: every sample comes from the previous set, the two skipped ones are tried again
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "stages.degrade", "--params", str(ranked)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "18 reused from the previous set (18 of 20 carried over)" in proc.stdout, proc.stdout
    assert _files(tmp_path / "ranks" / "lr") == one


@pytest.mark.slow
def test_a_failing_rank_stops_the_others_and_leaves_no_output(fixtures, tmp_path):
    hr = _write_hr_set(tmp_path / "hr", _tiles(fixtures)[:3])
    params = _params(tmp_path / "params.yaml", hr, tmp_path / "out" / "lr")
    env = {**_env(), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    fail = ("import sys; import pipeline.degrade.ranks as r\n"
            "def boom(*a, **k): raise RuntimeError('rank 1 fails on purpose')\n"
            "r.degrade_jobs = boom\n"
            "from stages.degrade import main; main(['--params', sys.argv[1]])")
    t0 = time.monotonic()
    rank0 = subprocess.Popen([sys.executable, "-m", "stages.degrade", "--params", str(params)], cwd=ROOT,
                             env={**env, "RANK": "0"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rank1 = subprocess.run([sys.executable, "-c", fail, str(params)], cwd=ROOT, env={**env, "RANK": "1"},
                           capture_output=True, text=True, timeout=120)
    try:
        _, err0 = rank0.communicate(timeout=120)
    finally:
        rank0.kill()
    assert rank1.returncode != 0 and "rank 1 fails on purpose" in rank1.stderr
    assert rank0.returncode != 0, err0[-2000:]
    assert "rank 0 of 2: another rank failed or timed out before writing its part" in err0, err0[-2000:]
    assert time.monotonic() - t0 < 120
    assert list((tmp_path / "out").iterdir()) == []  # no lr, no .lr.parts, no temp dir
