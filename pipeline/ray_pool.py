"""The data stages on a Ray cluster: the session (RAY_ADDRESS, or a local Ray) and an ordered map of
Ray tasks with retries, the counterpart of `parallel.worker_pool`.

    with ray_pool(workers=0, retries=3) as pmap:      # ingest.engine: ray
        results = list(pmap(fn, items))                # fn module-level; results in input order

Results come back in input order with at most `window` tasks in flight, so an output built from them
is the local engine's, byte for byte, and the driver holds a bounded number of results. A task whose
worker process or node dies is run again (`max_retries`), and so is one that raises OSError (a flaky
shared filesystem); any other exception is a bad input or a bug that would fail again, and ends the
map with the task's error. `ray` is the project extra `realsynth[ray]` (`make setup` installs it).
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.parallel import MapFn, with_progress

RETRY_EXCEPTIONS = (OSError,)  # the only task errors worth running again; a lost worker always is
LOCAL_CPUS = 2                 # CPUs of a local Ray started with `workers: 0`


def init_kwargs(env: Mapping[str, str], workers: int) -> dict[str, Any]:
    """`ray.init` arguments: the cluster at RAY_ADDRESS (this process's `pipeline` package shipped to
    it, so the nodes run the code the degrade fingerprint names), else a new local Ray with `workers`
    CPUs (or LOCAL_CPUS), no dashboard. Worker logs stay in Ray's session folder, not on stderr."""
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    address = env.get("RAY_ADDRESS")
    if address:
        package = str(Path(__file__).resolve().parent)
        return {"address": address, "runtime_env": {"py_modules": [package]}, **quiet}
    return {"address": "local", "num_cpus": workers or LOCAL_CPUS, **quiet}


@contextlib.contextmanager
def ray_session(workers: int = 0) -> Iterator[Any]:
    """Yield the `ray` module, connected (`init_kwargs`); shut down on exit when this call connected
    (an already initialised Ray, a test's or a notebook's, is used and left running).
    Raises ImportError (what to install) when ray is missing."""
    try:
        import ray
    except ImportError:
        raise ImportError("engine: ray needs the ray package: pip install 'realsynth[ray]' "
                          "(make setup installs it)") from None
    ours = not ray.is_initialized()
    if ours:
        ray.init(**init_kwargs(os.environ, workers))
    try:
        yield ray
    finally:
        if ours:
            ray.shutdown()


def in_order(refs: Iterable[Any], window: int) -> Iterator[Any]:
    """The values of `refs` (ObjectRefs, submitted lazily as this is iterated) in order, at most
    `window` submitted and not yet taken."""
    import ray
    pending: deque = deque()
    for ref in refs:
        pending.append(ref)
        if len(pending) >= window:
            yield ray.get(pending.popleft())
    while pending:
        yield ray.get(pending.popleft())


def cluster_cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@contextlib.contextmanager
def ray_pool(workers: int = 0, *, retries: int = 3) -> Iterator[MapFn]:
    """Yield `pmap(fn, items, desc="")`: `worker_pool`'s ordered map as Ray tasks (1 CPU each,
    `retries` runs again), two tasks in flight per CPU of the cluster."""
    with ray_session(workers) as ray:
        def pmap(fn: Callable[[Any], Any], items: Iterable[Any], desc: str = "") -> Iterator[Any]:
            items = list(items)
            task = ray.remote(fn).options(num_cpus=1, max_retries=retries, retry_exceptions=list(RETRY_EXCEPTIONS))
            refs = (task.remote(item) for item in items)
            return with_progress(in_order(refs, 2 * cluster_cpus(ray)), items, desc)
        yield pmap
