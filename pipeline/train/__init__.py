"""Training: the loop (`train`), its config (`TrainConfig`), EMA, checkpoints, dvclive logging.

    from pipeline.train import TrainConfig, train
    cfg = TrainConfig.for_phase("net", {"iterations": 1000}, "train_net")
    train(cfg, pairs_dir=Path("data/pairs"), out_dir=Path("models/net"), scale=4, seed=0, phase="net")

`train` is imported on first use, so loading params (which builds `TrainConfig`) stays light.
"""
from __future__ import annotations

from typing import Any

from pipeline.train.config import RECIPES, TrainConfig

__all__ = ["RECIPES", "TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from pipeline.train.loop import train
        return train
    raise AttributeError(f"module 'pipeline.train' has no attribute {name!r}")
