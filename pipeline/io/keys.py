"""Sample keys held compactly: one fixed-width UTF-8 byte array (NumPy `S<width>`), not a Python
string per sample (~80 bytes each, which made a stage grow with the corpus: bench/README.md, "Scale").

    keys = Keys.of(["a_0000", "a_0001"])
    keys[1]            # "a_0001" (a str)
    keys.find("a_0001")          # 1; -1 when absent (keys sorted)
    keys[np.array([1, 0])]       # Keys in that order

Byte order of UTF-8 is code point order, so sorting and binary search agree with Python's `sorted`
on the strings. Keys never contain NUL (`is_key`), which a fixed-width array would drop.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np


def is_key(key: str) -> bool:
    """Whether `key` may name a sample: non-empty, without '.', '/', '\\' or NUL (a member is
    `<key>.<ext>` inside a tar; NUL would be lost in `Keys`)."""
    return bool(key) and not any(c in key for c in "./\\\x00")


class Keys(Sequence):
    """An immutable sequence of sample keys: `keys[i]` is a `str`, slicing or an index array gives
    `Keys`. `find`/`find_all` search sorted keys (a shard set's are: `is_sorted`)."""

    __slots__ = ("raw",)

    def __init__(self, raw: np.ndarray) -> None:
        if raw.dtype.kind != "S" or raw.ndim != 1:
            raise TypeError(f"Keys hold a 1-D bytes array, got {raw.dtype} with {raw.ndim} dimensions")
        self.raw = raw

    @classmethod
    def of(cls, keys: Iterable[str]) -> Keys:
        """Keys of the strings `keys` (any iterable of str, a Keys, or a NumPy str/object array)."""
        if isinstance(keys, Keys):
            return keys
        encoded = [k.encode("utf-8") for k in keys]
        return cls(np.array(encoded, dtype=bytes) if encoded else np.zeros(0, "S1"))

    @classmethod
    def concat(cls, parts: Sequence[Keys]) -> Keys:
        """One Keys of `parts` in order (width: the widest part's)."""
        return cls(np.concatenate([p.raw for p in parts])) if parts else cls.of([])

    def __len__(self) -> int:
        return len(self.raw)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice | np.ndarray) -> Keys: ...

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, (int, np.integer)):
            return self.raw[i].decode("utf-8")
        return Keys(self.raw[i])

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self.raw), 4096):
            yield from (b.decode("utf-8") for b in self.raw[start:start + 4096].tolist())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool((self.raw == key.encode("utf-8")).any())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Keys):
            return len(self) == len(other) and bool((self.raw == other.raw).all())
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-free but compared by value, like a list

    def __repr__(self) -> str:
        head = ", ".join(repr(k) for k in self[:3])
        return f"Keys([{head}{', ...' if len(self) > 3 else ''}], n={len(self)})"

    def tolist(self) -> list[str]:
        return list(self)

    def is_sorted(self) -> bool:
        """Whether the keys are strictly increasing (sorted and distinct)."""
        return len(self.raw) < 2 or bool((self.raw[1:] > self.raw[:-1]).all())

    def argsort(self) -> np.ndarray:
        """The positions that sort the keys (stable)."""
        return np.argsort(self.raw, kind="stable")

    def find(self, key: str) -> int:
        """The position of `key` in these sorted keys, -1 when it is not there."""
        return int(self.find_all([key])[0])

    def find_all(self, keys: Iterable[str] | Keys) -> np.ndarray:
        """The position of each of `keys` in these sorted keys (int64), -1 where one is not there (a
        string with NUL is never one: the byte array would drop a trailing NUL and match without it)."""
        if isinstance(keys, Keys):
            want, nul = keys.raw, np.zeros(len(keys), bool)
        else:
            keys = list(keys)
            want, nul = Keys.of(keys).raw, np.array(["\x00" in k for k in keys], bool)
        if not len(self.raw):
            return np.full(len(want), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.raw, want), len(self.raw) - 1)
        return np.where((self.raw[at] == want) & ~nul, at, -1).astype(np.int64)

    def with_suffix(self, suffix: str) -> Keys:
        """Every key with `suffix` appended (`output_key` of a variant)."""
        return Keys(np.char.add(self.raw, suffix.encode("utf-8")))
