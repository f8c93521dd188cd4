import os
import subprocess
import sys

import pytest

from pipeline.parallel import keep_freed_memory, ordered_map, worker_pool

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


def _recipe_faults(_: int) -> int:
    """Page faults of 20 rounds of the allocation pattern in `_FAULTS`, in this process."""
    import resource

    import numpy as np
    sizes = [256 * 256 * 3, 300 * 300 * 3, 340 * 340 * 3, 384 * 384 * 3]
    [np.ones(n, np.float32) + 1 for n in sizes]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        [np.ones(n, np.float32) + 1 for n in sizes]
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_worker_pool_keeps_freed_memory_only_when_asked():
    if _faults("keep")[0] != "True":
        pytest.skip("not glibc")
    with worker_pool(2, reuse_memory=True) as pmap:
        kept = list(pmap(_recipe_faults, range(2)))
    with worker_pool(2) as pmap:
        default = list(pmap(_recipe_faults, range(2)))
    assert max(kept) < 20 and min(default) > 20 * 1000


def _square(x: int) -> int:
    return x * x


def test_ordered_map_keeps_input_order_on_spawned_workers():
    assert list(ordered_map(_square, range(7), workers=2)) == [x * x for x in range(7)]
