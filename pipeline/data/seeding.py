"""Seeds that depend on what a sample *is* (seed, epoch, key), never on which worker handles it."""
from __future__ import annotations

import hashlib

import numpy as np

# Domain tags keep the streams of different uses apart even for equal (seed, epoch, key).
WINDOWS, ORDER, AUGMENT, SPLIT_ORDER = 1, 2, 3, 4


def stable_hash(text: str) -> int:
    """A 63-bit integer digest of `text`, identical on every machine and Python run (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def rng_for(tag: int, seed: int, *parts: int | str) -> np.random.Generator:
    """`np.random.Generator` seeded by (tag, seed, parts...); strings enter through `stable_hash`.

    Raises:
        ValueError: a negative seed or integer part.
    """
    entropy = [tag, seed] + [stable_hash(p) if isinstance(p, str) else int(p) for p in parts]
    if any(v < 0 for v in entropy):
        raise ValueError(f"seeds must be non-negative, got {entropy}")
    return np.random.default_rng(entropy)
