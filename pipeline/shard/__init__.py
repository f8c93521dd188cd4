"""The shard stage: HR/LR tile sets → aligned, globally shuffled HR/LR patch shard sets (`data/pairs`).

Kept apart from `pipeline.data` (the PyTorch side that reads those patches) so that the stage
imports no torch.
"""
from pipeline.shard.pairs import PairStats, lr_windows, make_pairs

__all__ = ["PairStats", "lr_windows", "make_pairs"]
