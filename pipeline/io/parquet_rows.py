"""Rows written to a parquet file a part at a time, so memory holds one row group whatever the
table's length.

    with ParquetRowWriter(path) as table:
        for row in rows:             # mappings, as for pd.DataFrame(list_of_rows)
            table.add(row)

Rows are gathered column by column (`Columns`) until `PART` of them are in; the part is then
converted the way `DataFrame.to_parquet` converts a frame (`Columns.frame` → `pa.Table.from_pandas`)
and spilled next to the file (`.<name>.part-NNNNNN`, Arrow IPC). Closing writes the file from the
spilled parts, `ROW_GROUP // PART` of them a parquet row group, and removes them; an error removes
them too (the file itself is only ever complete inside the stage's temporary directory, `atomic_dir`).

A table of at most `ROW_GROUP` rows is, byte for byte, the file `pd.DataFrame(rows).to_parquet(path,
index=False, compression="zstd")` writes: every set of the demo, and every set this project wrote
before rows were streamed. Every table has the column types inference gives the whole table: a
column of ints in one part and missing (NaN) in another is float64, a column of strings missing
from a whole part stays a string column, and a column that mixes kinds of values across parts
(strings and numbers) fails with a ValueError naming it, as pyarrow refuses such a frame. Read back,
a longer table equals the one-frame write (tests/test_io_parquet_rows.py).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .columns import Columns

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

ROW_GROUP = 1 << 14  # rows per parquet row group: ~1 MB of a zstd index; its Arrow table is held while written
PART = 1 << 12  # rows gathered and converted at a time: pandas' conversion of a part costs ~2 KB a row


class ParquetRowWriter:
    """Rows added one by one, written to `path` as parquet row groups (module docstring).

    part: rows converted at a time (a divisor of `row_group`; the memory of a conversion).
    empty: the frame to write when no row was added (a table without rows has no columns to type)."""

    def __init__(self, path: str | os.PathLike, *, row_group: int = ROW_GROUP, part: int = PART,
                 empty: Callable[[], pd.DataFrame] | None = None) -> None:
        part = min(part, row_group)
        if part < 1 or row_group % part:
            raise ValueError(f"row_group ({row_group}) must be a positive multiple of part ({part})")
        self.path, self.row_group, self.part, self._empty = Path(path), row_group, part, empty
        self.rows = 0
        self._gathering = Columns()
        self._parts: list[Path] = []
        # each part's schema, its columns without a value, its columns with a missing value
        self._schemas: list[tuple[pa.Schema, frozenset[str], frozenset[str]]] = []
        self._lengths: list[int] = []  # each part's rows (a part of rows without columns has rows too)

    def __enter__(self) -> ParquetRowWriter:
        return self

    def __exit__(self, exc_type, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._drop_parts()

    def add(self, row: Mapping[str, Any]) -> None:
        self._gathering.add(row)
        self.rows += 1
        if len(self._gathering) >= self.part:
            self._spill()

    def close(self) -> None:
        """Write the file from every row added, then remove the spilled parts."""
        import pyarrow.parquet as pq
        try:
            if not self.rows:
                frame = self._empty() if self._empty is not None else self._gathering.frame()
                pq.write_table(_arrow(frame), self.path, compression="zstd")
                return
            if len(self._gathering):
                self._spill()
            schema = merged_schema(self._schemas, where=self.path)
            per_group = self.row_group // self.part
            with pq.ParquetWriter(self.path, schema, compression="zstd") as out:
                for start in range(0, len(self._parts), per_group):  # a row group from its parts
                    parts = zip(self._parts[start:start + per_group], self._lengths[start:start + per_group])
                    out.write_table(_concat([_conform(_read_part(part), n, schema) for part, n in parts]))
        finally:
            self._drop_parts()

    def _spill(self) -> None:
        import pyarrow as pa
        table = _arrow(self._gathering.frame())
        self._lengths.append(len(self._gathering))
        self._gathering = Columns()  # the part's storage goes before the next one gathers
        part = self.path.with_name(f".{self.path.name}.part-{len(self._parts):06d}")
        self._parts.append(part)
        with pa.OSFile(str(part), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        nulls = {c: table.column(c).null_count for c in table.column_names}
        self._schemas.append((table.schema, frozenset(c for c, k in nulls.items() if k == len(table)),
                              frozenset(c for c, k in nulls.items() if k)))

    def _drop_parts(self) -> None:
        for part in self._parts:
            part.unlink(missing_ok=True)
        self._parts = []


def merged_schema(parts: list[tuple[pa.Schema, frozenset[str], frozenset[str]]], where: Path | str = "") -> pa.Schema:
    """The schema the whole table gets from its parts' schemas (each with the names of its columns
    that hold no value, and of those missing a value somewhere): one part's schema as it is;
    otherwise columns in order of first appearance, each typed by `_merged_type`, with the pandas
    metadata of the first part whose column has that type (so pandas reads the column back as it
    would the one-frame file, whose metadata this is, byte for byte, when the types agree)."""
    import pyarrow as pa
    if len(parts) == 1:
        return parts[0][0]
    names: dict[str, None] = {}
    for schema, _, _ in parts:
        names.update(dict.fromkeys(schema.names))
    pandas = [{c["name"]: c for c in json.loads(s.metadata[b"pandas"])["columns"]} for s, _, _ in parts]
    fields, entries = [], []
    for name in names:
        seen = [(s.field(name).type, name in empty, meta[name]) for (s, empty, _), meta in zip(parts, pandas)
                if name in s.names]
        absent = len(seen) < len(parts)
        kind = _merged_type(name, [(t, m) for t, m, _ in seen], absent=absent, where=where)
        fields.append(pa.field(name, kind))
        entry = (next((e for t, m, e in seen if t == kind and not m), None)
                 or next((e for t, _, e in seen if t == kind), None)
                 or {"name": name, "field_name": name, "pandas_type": "float64", "numpy_type": "float64",
                     "metadata": None})  # only float64 can be a type no part had: ints and None
        if kind == pa.bool_() and (absent or any(name in gaps for _, _, gaps in parts)):
            entry = {**entry, "numpy_type": "object"}  # bools with a missing value are objects to pandas
        entries.append(entry)
    meta = {**json.loads(parts[0][0].metadata[b"pandas"]), "columns": entries}
    return pa.schema(fields, metadata={**parts[0][0].metadata, b"pandas": json.dumps(meta).encode()})


def _merged_type(name: str, seen: list[tuple[pa.DataType, bool]], *, absent: bool, where: Path | str) -> pa.DataType:
    """The type of column `name` in the whole table from its type in each part that has it (and
    whether it held no value there); `absent`: some part's rows all lack it (NaN in the whole).
    Pandas' inference on the whole column: ints and missing values make float64, ints and floats
    float64, any one kind of value with missing ones that kind; a column with no value anywhere is
    float64 when one of its missing values is NaN, else what its parts have (null: only None)."""
    import pyarrow as pa
    present = {t for t, missing in seen if not missing and not pa.types.is_null(t)}
    if not present:
        return pa.float64() if absent or any(t == pa.float64() for t, _ in seen) else seen[0][0]
    if present <= {pa.int64(), pa.float64()}:
        lacks = absent or any(missing for _, missing in seen)
        return pa.int64() if present == {pa.int64()} and not lacks else pa.float64()
    if len(present) == 1:
        return present.pop()
    raise ValueError(f"{where}: column {name!r} holds values of different kinds in different rows "
                     f"({', '.join(sorted(map(str, present)))}); a column holds one kind of value")


def _conform(table: pa.Table, n: int, schema: pa.Schema) -> pa.Table:
    """`table` (`n` rows) with `schema`'s columns and types: absent or valueless columns as nulls,
    ints as floats."""
    import pyarrow as pa
    columns = []
    for field in schema:
        col = table.column(field.name) if field.name in table.column_names else None
        if col is None or (col.type != field.type and col.null_count == n):
            col = pa.nulls(n, field.type)
        elif col.type != field.type:
            col = col.cast(field.type)  # int64 → float64, exact: Columns keeps ints within ±2^53
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


def arrow_on_malloc() -> None:
    """Let Arrow allocate from the C library's heap in this process instead of its own jemalloc
    pool, which keeps freed pages: a stage process that reads and writes indexes piece by piece then
    reuses one piece's memory for the next instead of holding every piece's (bench/README.md,
    "Scale"). For a stage's own process; a no-op where pyarrow has no system pool."""
    import pyarrow as pa
    pa.set_memory_pool(pa.system_memory_pool())


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """`frame` as `DataFrame.to_parquet(index=False)` hands it to pyarrow."""
    import pyarrow as pa
    return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)


def _concat(tables: list[pa.Table]) -> pa.Table:
    """One table of the parts' rows, its columns left in chunks: pyarrow writes it as one row group,
    the bytes it writes for contiguous columns, without a second copy of the group in memory."""
    import pyarrow as pa
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _read_part(part: Path) -> pa.Table:
    import pyarrow as pa
    with pa.OSFile(str(part), "rb") as source:
        return pa.ipc.open_file(source).read_all()
