"""Shared test fixtures: paths to ../shared/fixtures (or $REALSYNTH_FIXTURES) and small real inputs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

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
