"""Seeds that depend on what a sample *is* (seed, epoch, key), never on which worker handles it.

Every string enters a seed through one digest, `sha256_int` (the first 8 bytes of its SHA-256), the
same on every machine and Python run (unlike `hash`). Three uses predate this module and keep
their exact form, because a seed is part of the data: changing one changes which tiles ingest
keeps, every recipe or every patch window, so every byte downstream. They would merge only as a
deliberate, versioned data change (a `data_version` recorded in the index):
- degrade: `default_rng([seed, key_hash(key), variant])`, 64 bits (`pipeline.degrade.recipe`);
- shard and the loaders: `rng_for(tag, seed, ...)`, strings as `stable_hash`, 63 bits;
- ingest's tile cap: `default_rng(sha256_int(f"{seed}:{photo_sha256}", "big"))`.
"""
from __future__ import annotations

import hashlib

import numpy as np

# Domain tags keep the streams of different uses apart even for equal (seed, epoch, key).
WINDOWS, ORDER, AUGMENT, SPLIT_ORDER, LEARNED = 1, 2, 3, 4, 5  # LEARNED: learn-degradation's steps


def sha256_int(text: str, byteorder: str = "little") -> int:
    """The first 8 bytes of `text`'s SHA-256 (UTF-8) as a 64-bit unsigned integer."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], byteorder)


def stable_hash(text: str) -> int:
    """A 63-bit integer digest of `text` (`rng_for`'s string parts)."""
    return sha256_int(text) >> 1


def rng_for(tag: int, seed: int, *parts: int | str) -> np.random.Generator:
    """`np.random.Generator` seeded by (tag, seed, parts...); strings enter through `stable_hash`.

    Raises:
        ValueError: a negative seed or integer part.
    """
    entropy = [tag, seed] + [stable_hash(p) if isinstance(p, str) else int(p) for p in parts]
    if any(v < 0 for v in entropy):
        raise ValueError(f"seeds must be non-negative, got {entropy}")
    return np.random.default_rng(entropy)
