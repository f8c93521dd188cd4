"""Paired patches and training data: the shard stage (`pairs`), loaders (`dataset`, `loader`, `dali`)
and `inspect`. Submodules are imported on first use, so the shard stage never imports torch."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "make_pairs": "pipeline.data.pairs", "PairStats": "pipeline.data.pairs",
    "PairDataset": "pipeline.data.dataset", "read_pair": "pipeline.data.dataset",
    "make_loader": "pipeline.data.loader", "infinite_batches": "pipeline.data.loader",
    "LoaderState": "pipeline.data.loader", "BatchStream": "pipeline.data.loader",
    "inspect_set": "pipeline.data.inspect",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pipeline.data' has no attribute {name!r}")
