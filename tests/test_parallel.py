import os
import subprocess
import sys

import pytest

from pipeline.parallel import keep_freed_memory, ordered_map

from conftest import ROOT

# In a fresh interpreter, 100 times: hold four arrays of 0.8-3.5 MB at once (a recipe's float32
# images of 256-384 px), then free them; print the page faults the loop took.
_FAULTS = """
import resource, sys
import numpy as np
from pipeline.parallel import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
sizes = [256 * 256 * 3, 300 * 300 * 3, 340 * 340 * 3, 384 * 384 * 3]
def recipe():
    return [np.ones(n, np.float32) + 1 for n in sizes]
recipe()  # warm up numpy and the heap
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    recipe()
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_keep_freed_memory_stops_page_faults_on_reused_arrays():
    took, kept = _faults("keep")
    if took != "True":
        pytest.skip("not glibc")
    _, default = _faults("default")
    assert default >= 100 * 1000  # glibc hands the 8.7 MB back on free, so every round faults it in
    assert kept < 100  # the freed blocks are reused from the heap


def test_keep_freed_memory_can_be_turned_off_from_the_environment(monkeypatch):
    monkeypatch.setenv("REALSYNTH_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False


def _square(x: int) -> int:
    return x * x


def test_ordered_map_keeps_input_order_on_spawned_workers():
    assert list(ordered_map(_square, range(7), workers=2)) == [x * x for x in range(7)]
