"""Shared test fixtures: paths to ../shared/fixtures (or $REALSYNTH_FIXTURES) and small real inputs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# a machine that gets a copy of the repo alone (a lent GPU box) points this at its copy of them
FIXTURES = Path(os.environ.get("REALSYNTH_FIXTURES") or ROOT.parent / "shared" / "fixtures")

os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


def pytest_collection_modifyitems(config, items):
    if _cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


# ---- a throwaway DVC project of this repo, for tests that run the real `dvc` ---------------------
DVC = Path(sys.executable).with_name("dvc")
PROJECT = ("pipeline", "stages", "photos", "presets", "data/real", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore")


def run_dvc(repo: Path, *args: str) -> str:
    """`dvc ARGS` in `repo` with this interpreter's dvc; its stdout. Raises AssertionError with the output."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{DVC.parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([str(DVC), *args], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"dvc {' '.join(args)} in {repo}:\n{done.stdout}{done.stderr}"
    return done.stdout


def dvc_project(dest: Path, *, init: bool = True) -> Path:
    """Copy the project's code, pipeline and dependency folders to `dest`; with `init`, git init + dvc init."""
    if not DVC.is_file():
        pytest.skip(f"no dvc beside {sys.executable}")
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, dest / name)
    if init:
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
        run_dvc(dest, "init", "-q")
    return dest


def lr_hash(repo: Path) -> str:
    """The md5 dvc.lock records for degrade's data/lr."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"]["degrade"]["outs"] if o["path"] == "data/lr")
