"""Table rows gathered column by column in compact storage, made into the DataFrame that
`pd.DataFrame(list_of_row_dicts)` makes, byte for byte once written to parquet.

    table = Columns()
    for row in rows:                 # dicts, as they come
        table.add(row)
    frame = table.frame()            # == pd.DataFrame(list(rows))

A stage that writes an index row per sample held one dict per row until the end: about 2 KB a
sample, so its memory grew with the corpus (bench/README.md, "Scale"). Here a row costs 8 bytes
per int or float cell (`array`) and the UTF-8 bytes plus 8 per string cell; any other value (None,
NumPy scalars, bools, an int beyond ±2^53) turns its column into a plain list of the values.

The DataFrame is exactly the one pandas builds from the row dicts: columns in order of first
appearance, NaN where a row lacks a column, and each column's dtype inferred by the very code path
pandas' records constructor takes (a column rebuilt as Python objects is passed through
`pd.DataFrame` as a list of one-item lists, one column at a time, so only one column is ever held
as objects). Storage only changes how a value is kept, never which Python type it comes back as.
"""
from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_EXACT_INT = 1 << 53  # ints kept in a float64-safe range (so a column of ints and NaN converts as before)


class _Column:
    """One column: `array('q')` of ints, `array('d')` of floats (NaN: missing), packed UTF-8 strings,
    or a list of whatever came."""

    def __init__(self, rows_before: int) -> None:
        self.kind = "d"  # an empty column is all missing (NaN), as a float column is
        self.data: Any = array("d", [math.nan]) * rows_before
        self.ends = array("q")  # kind "s": end of each string in `data` (a bytearray)

    def add(self, value: Any) -> None:
        kind, t = self.kind, type(value)
        if kind == "q" and t is int and -_EXACT_INT < value < _EXACT_INT:
            self.data.append(value)
        elif kind == "d" and t is float:
            self.data.append(value)
        elif kind == "s" and t is str:
            self.data += value.encode("utf-8", "surrogatepass")
            self.ends.append(len(self.data))
        elif kind == "o":
            self.data.append(value)
        elif self._first(value):
            return
        else:
            self.data = self.values()
            self.kind = "o"
            self.data.append(value)

    def _first(self, value: Any) -> bool:
        """Make a column with no rows yet an int or string column for its first `value`; False when
        `value` does not fit the column as it is."""
        if self.kind != "d" or len(self.data) or type(value) not in (int, str):
            return False
        if type(value) is int and not -_EXACT_INT < value < _EXACT_INT:
            return False
        self.kind = "q" if type(value) is int else "s"
        self.data = array("q") if self.kind == "q" else bytearray()
        self.add(value)
        return True

    def add_missing(self) -> None:
        if self.kind == "d":
            self.data.append(math.nan)
        else:
            if self.kind != "o":
                self.data, self.kind = self.values(), "o"
            self.data.append(math.nan)

    def values(self) -> list[Any]:
        """The column as the Python objects it was given (strings and numbers rebuilt equal)."""
        if self.kind == "s":
            return _strings(self.data, self.ends)
        return list(self.data) if self.kind != "o" else self.data


def _strings(data: bytearray, ends: array) -> list[str]:
    """The strings packed in `data`, equal ones sharing one str object while the column repeats
    itself (split, backend, a photo's source and digest: ~60-110 bytes a row each otherwise, held
    by the index DataFrame at the stage's peak); a column of mostly distinct strings stops sharing
    after its first 4096 rows, so the table of seen strings stays small."""
    out, seen, start = [], {}, 0
    for i, end in enumerate(ends):
        raw = bytes(data[start:end])
        start = end
        if seen is None:
            out.append(raw.decode("utf-8", "surrogatepass"))
            continue
        value = seen.get(raw)
        if value is None:
            value = seen[raw] = raw.decode("utf-8", "surrogatepass")
            if i >= 4096 and len(seen) > i // 2:
                seen = None
        out.append(value)
    return out


class Columns:
    """Rows (mappings) added one by one, kept column by column (module docstring)."""

    def __init__(self) -> None:
        self._cols: dict[str, _Column] = {}
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def add(self, row: Mapping[str, Any]) -> None:
        cols = self._cols
        for name, value in row.items():
            col = cols.get(name)
            if col is None:
                col = cols[name] = _Column(self._rows)
            col.add(value)
        if len(row) < len(cols):
            for name, col in cols.items():
                if name not in row:
                    col.add_missing()
        self._rows += 1

    def frame(self) -> pd.DataFrame:
        """The DataFrame `pd.DataFrame(rows)` gives for the rows added (an empty one for none)."""
        import pandas as pd
        if not self._rows:
            return pd.DataFrame([])
        out = {}
        for name in list(self._cols):
            col = self._cols.pop(name)  # its storage goes as its column is built
            values = col.values()
            del col
            out[name] = pd.DataFrame([[v] for v in values], columns=[name])[name]
            del values
        return pd.DataFrame(out, index=pd.RangeIndex(self._rows))
