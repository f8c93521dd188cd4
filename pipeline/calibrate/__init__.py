"""Calibrate a degradation preset to a user's real LR photos (README, "Calibrate to your real LR").

    from pipeline.calibrate import fingerprint, distance
    d = distance(fingerprint("real_lr/"), fingerprint([lr1, lr2]))

`fingerprint` and `distance` here are the functions (the module of the same name is
`pipeline.calibrate.fingerprint` only under `from ... import`); `search.calibrate` fits a preset.
"""
from __future__ import annotations

from .fingerprint import distance, fingerprint

__all__ = ["distance", "fingerprint"]
