import multiprocessing as mp
import sys

import pytest

from pipeline.parallel import keep_freed_memory, ordered_map, worker_pool


def _recipe_faults(rounds: int, keep: bool = False) -> tuple[bool | None, int]:
    """(whether `keep_freed_memory` took effect, when `keep`; the page faults of `rounds` rounds of
    holding four arrays of 0.8-3.5 MB at once, a recipe's float32 images of 256-384 px, then freeing
    them), in this process."""
    import resource

    import numpy as np
    took = keep_freed_memory() if keep else None
    sizes = [256 * 256 * 3, 300 * 300 * 3, 340 * 340 * 3, 384 * 384 * 3]
    [np.ones(n, np.float32) + 1 for n in sizes]  # warm up numpy and the heap
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        [np.ones(n, np.float32) + 1 for n in sizes]
    return took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _in_fresh_process(rounds: int, keep: bool) -> tuple[bool | None, int]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_recipe_faults, (rounds, keep))


def _skip_off_glibc() -> None:
    if not _in_fresh_process(0, True)[0]:
        pytest.skip("not glibc")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_keep_freed_memory_stops_page_faults_on_reused_arrays():
    _skip_off_glibc()
    _, kept = _in_fresh_process(100, True)
    _, default = _in_fresh_process(100, False)
    assert default >= 100 * 1000  # glibc hands the 8.7 MB back on free, so every round faults it in
    assert kept < 100  # the freed blocks are reused from the heap


def test_keep_freed_memory_can_be_turned_off_from_the_environment(monkeypatch):
    monkeypatch.setenv("REALSYNTH_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_worker_pool_keeps_freed_memory_only_when_asked():
    _skip_off_glibc()
    with worker_pool(2, reuse_memory=True) as pmap:
        kept = [faults for _, faults in pmap(_recipe_faults, [20, 20])]
    with worker_pool(2) as pmap:
        default = [faults for _, faults in pmap(_recipe_faults, [20, 20])]
    assert max(kept) < 20 and min(default) > 20 * 1000


def _square(x: int) -> int:
    return x * x


def test_ordered_map_keeps_input_order_on_spawned_workers():
    assert list(ordered_map(_square, range(7), workers=2)) == [x * x for x in range(7)]


def test_worker_pool_hands_out_no_more_than_its_window_ahead_of_the_caller():
    """Workers may not run ahead of a slow caller: results not yet taken would pile up in the pool,
    in proportion to the corpus."""
    import time

    from pipeline.parallel import IN_FLIGHT
    pulled = []

    def items():
        for x in range(60):
            pulled.append(x)
            yield x

    ahead = []
    with worker_pool(2) as pmap:
        for taken, result in enumerate(pmap(_square, items()), start=1):
            time.sleep(0.01)  # a caller slower than its workers
            ahead.append(len(pulled) - taken)
            assert result == (taken - 1) ** 2
    assert len(pulled) == 60 and max(ahead) <= IN_FLIGHT * 2 and max(ahead) >= 2


def test_worker_pool_shuts_down_when_the_caller_stops_early():
    with worker_pool(2) as pmap:
        first = next(iter(pmap(_square, range(1000))))
    assert first == 0
