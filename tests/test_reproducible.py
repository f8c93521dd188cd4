"""`reproducible: true` gives the same training bytes whatever the machine's ISA and thread count.

A second machine is simulated the only way one box can: each run starts the train stage in a fresh
process whose environment picks other PyTorch CPU code paths (ATen's generic loops, oneDNN capped at
SSE4.1, MKL's compatible path) and another thread count, as an AVX-512 or many-core machine would.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
import yaml
from skimage import data as skdata

from pipeline.numerics import pin_cpu_numerics
from test_train import _patches, _write_pairs

ROOT = Path(__file__).resolve().parents[1]
MACHINES = {
    "native": {},
    "other ISA, 1 thread": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                            "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1"},
    "3 threads": {"OMP_NUM_THREADS": "3"},
}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    img = cv2.resize(skdata.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    _write_pairs(root / "train", _patches(img, 32, 16), "train")
    _write_pairs(root / "val", _patches(img, 32, 48), "val")
    return root


def _train_bytes(tmp: Path, pairs: Path, env: dict[str, str], reproducible: bool) -> str:
    models = tmp / f"models-{hashlib.sha1(repr((env, reproducible)).encode()).hexdigest()[:8]}"
    params = {"scale": 4, "paths": {"pairs": str(pairs), "models": str(models)},
              "train_net": {"generator": {"name": "rrdbnet", "opts": {"num_feat": 16, "num_block": 1,
                                                                       "num_grow_ch": 8}},
                            "batch_size": 4, "pair_pool_size": 0, "iterations": 4, "milestones": [100],
                            "lr_g": 1e-3, "val_every": 0, "val_batches": 1, "log_every": 1,
                            "reproducible": reproducible, "threads": 2 if reproducible else 0}}
    path = tmp / f"{models.name}.yaml"
    path.write_text(yaml.safe_dump(params))
    clean = {k: v for k, v in os.environ.items() if k not in {*MACHINES["other ISA, 1 thread"], "MKL_NUM_THREADS"}}
    out = subprocess.run([sys.executable, "-m", "stages.train", "--phase", "net", "--params", str(path)],
                         cwd=ROOT, env={**clean, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    state = torch.load(models / "net" / "generator.pth", weights_only=True)
    digest = hashlib.sha256()
    for key in ("params", "params_ema"):
        for name, tensor in state[key].items():
            digest.update(name.encode() + tensor.numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.slow
def test_reproducible_training_has_the_same_bytes_on_every_simulated_machine(tmp_path, pairs):
    got = {name: _train_bytes(tmp_path, pairs, env, reproducible=True) for name, env in MACHINES.items()}
    assert len(set(got.values())) == 1, got
    # and the check can fail: without the setting another machine's code paths give other bytes
    free = [_train_bytes(tmp_path, pairs, MACHINES[name], reproducible=False)
            for name in ("native", "other ISA, 1 thread")]
    assert free[0] != free[1]


def test_the_pin_refuses_no_threads():
    with pytest.raises(ValueError, match="fixed thread count >= 1, got 0"):
        pin_cpu_numerics(0)


def test_reproducible_without_threads_is_one_line(tmp_path):
    from pipeline.train import TrainConfig
    from pipeline.params import ParamsError

    with pytest.raises(ParamsError, match=r"train_net.threads: expected >= 1 with reproducible: true .*got 0"):
        TrainConfig.for_phase("net", {"reproducible": True}, "train_net")
