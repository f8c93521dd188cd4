"""`degrade.engine: ray` and `ingest.engine: ray`: the local engine's bytes (every file of the set,
the reuse manifest included), incremental carry-over on the driver, a Ray worker killed mid-run
survived, the stage through RAY_ADDRESS. One local Ray (2 CPUs) for the module; skipped where ray is not installed."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_degrade_stage import _tiles, _write_hr_set
from test_ingest import _photo, _save

from pipeline.config import IngestConfig
from pipeline.degrade import DegradeConfig
from pipeline.degrade.run import degrade_set
from pipeline.params import build

ray = pytest.importorskip("ray")
from pipeline.ingest import ingest  # noqa: E402
from pipeline.ray_pool import init_kwargs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASE = {"variants": 2, "backend": "reference", "workers": 2, "batch_size": 3, "examples": 3, "shard_bytes": 40_000}


def _crash_hook(flags: str):
    """A Ray worker setup hook (pickled by value: a closure): the reference task whose first job's
    HR key has a flag file in `flags` takes the flag and kills its own worker process, once."""
    def setup() -> None:
        from pipeline.degrade import ray_engine
        real = ray_engine.degrade_task

        def crashing(ctx, jobs):
            flag = os.path.join(flags, jobs[0].hr_key)
            try:
                os.rename(flag, flag + ".taken")  # atomic: one attempt takes it
            except FileNotFoundError:
                return real(ctx, jobs)
            os._exit(1)
        ray_engine.degrade_task = crashing
    return setup


@pytest.fixture(scope="module")
def flags(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flags")


@pytest.fixture(scope="module")
def ray_session(flags):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning",
             runtime_env={"worker_process_setup_hook": _crash_hook(str(flags)),
                          "env_vars": {"PYTHONPATH": str(ROOT)}})  # this checkout's pipeline, not an installed one
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def hr_set(fixtures, tmp_path_factory) -> Path:
    return _write_hr_set(tmp_path_factory.mktemp("hr") / "hr", _tiles(fixtures))  # 9 tiles + 1 too small


def _cfg(**over) -> DegradeConfig:
    return build(DegradeConfig, {**BASE, **over}, "degrade")


def _hashes(set_dir: Path) -> dict[str, str]:
    """sha256 of every file of the set, by relative path (the reuse manifest's included)."""
    return {p.relative_to(set_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(set_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def local_set(hr_set, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "lr"
    degrade_set(hr_set, out, _cfg(), seed=3, scale=4, progress=False)
    return out


def test_init_kwargs_connect_to_ray_address_or_start_a_local_ray():
    local = init_kwargs({}, 0)
    assert (local["address"], local["num_cpus"], local["include_dashboard"], local["log_to_driver"]) == \
        ("local", 2, False, False)
    assert init_kwargs({"RAY_ADDRESS": ""}, 3)["num_cpus"] == 3
    remote = init_kwargs({"RAY_ADDRESS": "ray://head:10001"}, 3)
    assert remote["address"] == "ray://head:10001" and "num_cpus" not in remote
    assert remote["runtime_env"]["py_modules"] == [str(ROOT / "pipeline")]


def test_ray_writes_the_local_engines_bytes(ray_session, hr_set, local_set, tmp_path):
    stats = degrade_set(hr_set, tmp_path / "lr", _cfg(engine="ray"), seed=3, scale=4, progress=False)
    assert (stats["samples"], stats["skipped"], stats["backend"]) == (18, 2, "reference")
    expected = _hashes(local_set)
    assert {"index.parquet", "skipped.csv", "report.md", "examples.png", ".degrade-reuse/manifest.json"} <= set(expected)
    assert len([n for n in expected if n.endswith(".tar")]) > 2
    assert _hashes(tmp_path / "lr") == expected
    assert ray.is_initialized()  # the engine used the session it found and left it running


def test_ray_reuses_a_previous_set_on_the_driver(ray_session, fixtures, tmp_path):
    hr = tmp_path / "hr"
    _write_hr_set(hr, _tiles(fixtures)[:5], tiny=False)
    degrade_set(hr, tmp_path / "before", _cfg(engine="ray"), seed=3, scale=4, progress=False)
    shutil.rmtree(hr)
    _write_hr_set(hr, _tiles(fixtures))  # the corpus grows: 4 more tiles and a too small one
    stats = degrade_set(hr, tmp_path / "after", _cfg(engine="ray"), seed=3, scale=4, progress=False,
                        previous=tmp_path / "before")
    assert (stats["reused"], stats["reuse"], stats["samples"]) == (10, "10 of 20 carried over", 18)
    degrade_set(hr, tmp_path / "scratch", _cfg(), seed=3, scale=4, progress=False)  # local, from scratch
    assert _hashes(tmp_path / "after") == _hashes(tmp_path / "scratch")


def test_a_killed_worker_is_survived_with_the_same_bytes(ray_session, flags, hr_set, local_set, tmp_path):
    flag = flags / "t03"  # the first HR tile of the third task (3 jobs a task, 2 variants a tile)
    flag.touch()
    degrade_set(hr_set, tmp_path / "lr", _cfg(engine="ray", retries=2), seed=3, scale=4, progress=False)
    assert not flag.exists() and (flags / "t03.taken").exists()  # its worker died once
    assert _hashes(tmp_path / "lr") == _hashes(local_set)


def test_without_retries_a_killed_worker_fails_the_stage(ray_session, flags, hr_set, tmp_path):
    (flags / "t06").touch()
    with pytest.raises(ray.exceptions.RayError):
        degrade_set(hr_set, tmp_path / "lr", _cfg(engine="ray", retries=0), seed=3, scale=4, progress=False)
    assert (flags / "t06.taken").exists()


@pytest.mark.slow
def test_the_stage_connects_through_ray_address(ray_session, hr_set, local_set, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"seed": 3, "scale": 4, "paths": {"hr": str(hr_set), "lr": str(tmp_path / "lr")},
                                      "degrade": {**BASE, "engine": "ray"}}))
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "stages.degrade", "--params", str(params)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "degrade: 18 LR samples (realesrgan-x4plus, reference, ray) in " in proc.stdout
    assert _hashes(tmp_path / "lr") == _hashes(local_set)


def test_ingest_on_ray_writes_the_local_bytes(ray_session, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        _save(_photo(i, 200 + 8 * i, 260), photos / f"p{i}.png", "PNG")
    (photos / "broken.png").write_bytes(b"not a png")
    hashes = []
    for engine in ("local", "ray"):
        cfg = build(IngestConfig, {"min_side": 100, "crop": 96, "step": 64, "workers": 1, "engine": engine}, "ingest")
        stats = ingest([str(photos)], tmp_path / engine, cfg, seed=0, scale=4)
        assert (stats.accepted, stats.rejected) == (4, 1)
        hashes.append(_hashes(tmp_path / engine))
    assert hashes[0] == hashes[1]


@pytest.mark.slow
def test_dali_cpu_actors_write_the_local_dali_bytes(ray_session, hr_set, tmp_path):
    """The actor path (`DaliWorker`, one DALI graph per actor) in DALI's CPU mode: the cluster has no
    GPU, so `backend: dali` resolves to dali-cpu there as here. Last in the module: DALI starts here."""
    ray_stats = degrade_set(hr_set, tmp_path / "ray", _cfg(engine="ray", backend="dali"), seed=3, scale=4,
                            progress=False)
    local_stats = degrade_set(hr_set, tmp_path / "local", _cfg(backend="dali"), seed=3, scale=4, progress=False)
    assert ray_stats["backend"] == local_stats["backend"] == "dali-cpu"
    assert _hashes(tmp_path / "ray") == _hashes(tmp_path / "local")
