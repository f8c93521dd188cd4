"""Reading a shard set's `index.parquet` (`pipeline.io.shards`): the whole table, columns of it, its
rows in pieces, and the locations a `ShardSet` keeps (keys, shard numbers, member spans). With
`shards`, the only module that reads an index, so its checks hold for every stage.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.io.keys import Keys, is_key
from pipeline.io.parquet_rows import PART
from pipeline.io.tar import ShardError

if TYPE_CHECKING:
    import pandas as pd

INDEX = "index.parquet"


def index_path(set_dir: Path) -> Path:
    """The set's index file. Raises FileNotFoundError when `set_dir` has none."""
    path = set_dir / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no shard-set index (is {set_dir} a shard set?)")
    return path


def read_index(set_dir: Path) -> pd.DataFrame:
    """The whole index (`ShardSet.frame` reads a few of its columns)."""
    return read_parquet_table(index_path(set_dir))


def iter_index(set_dir: str | os.PathLike, columns: Iterable[str], rows: int = PART) -> Iterator[pd.DataFrame]:
    """The index columns of `columns` that the set's index has, in pieces of `rows` rows (the last
    one fewer), each with the dtypes and row labels of its slice of `ShardSet.frame(columns)`: a
    stage that reads the index once through (degrade's report) holds a piece and a row group, not a
    column of every sample, nor the keys a `ShardSet` holds."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = index_path(Path(set_dir))
    file = pq.ParquetFile(path)
    names = [c for c in columns if c in file.schema_arrow.names]
    if not names:  # no column to read still has a row per sample
        yield pd.DataFrame(index=pd.RangeIndex(file.metadata.num_rows))
        return

    def has_null(col: str) -> bool:  # the row groups' statistics, else a pass over that column alone
        at = file.schema_arrow.get_field_index(col)
        stats = [file.metadata.row_group(g).column(at).statistics for g in range(file.num_row_groups)]
        if all(s is not None and s.has_null_count for s in stats):
            return sum(s.null_count for s in stats) > 0
        return any(b.column(0).null_count for b in file.iter_batches(columns=[col]))

    # pandas reads an int column with a null anywhere as float64, a bool one as object: so must every piece
    types = {c: file.schema_arrow.field(c).type for c in names}
    widen = {c: float if pa.types.is_integer(t) else object for c, t in types.items()
             if (pa.types.is_integer(t) or pa.types.is_boolean(t)) and has_null(c)}
    start = 0
    for batch in file.iter_batches(batch_size=rows, columns=names):
        piece = pa.Table.from_batches([batch]).to_pandas().astype(widen)
        piece.index = pd.RangeIndex(start, start + len(piece))
        start += len(piece)
        yield piece


def index_columns(set_dir: str | os.PathLike) -> list[str]:
    """The column names of a set's index, from its parquet schema (no rows read)."""
    import pyarrow.parquet as pq
    return list(pq.read_schema(index_path(Path(set_dir))).names)


def read_parquet_table(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A parquet table (all columns, or those of `columns`): a shard set's index, or a table that
    describes one. With `iter_index` and `iter_parquet_rows`, the only places parquet is read, so
    what reads an index is always this module."""
    import pandas as pd
    return pd.read_parquet(path, columns=columns)


def iter_parquet_rows(path: Path, columns: list[str]) -> Iterator[tuple[Any, ...]]:
    """The rows of a parquet table's `columns` as tuples of Python values, a batch at a time
    (degrade's reuse inputs, read in a merge walk without holding the table)."""
    import pyarrow.parquet as pq
    for batch in pq.ParquetFile(path).iter_batches(columns=columns):
        yield from zip(*(batch.column(i).to_pylist() for i in range(len(columns))))


def read_locations(set_dir: Path, members: list[str]) -> tuple[Keys, list[str], np.ndarray, dict]:
    """(keys, shard names, shard number of each row, {member: (offset, size)}) of a set's index,
    read `PART` rows at a time with no Python object per row kept (`Keys`, int arrays). Keys and
    shard names are checked. Raises ShardError."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    where = index_path(set_dir)
    spans = [f"{p}_{m}" for m in members for p in ("offset", "size")]
    keys: list[Keys] = []
    names: dict[str, int] = {}
    shard_of: list[np.ndarray] = []
    cols: dict[str, list[np.ndarray]] = {c: [] for c in spans}
    for batch in pq.ParquetFile(where).iter_batches(batch_size=PART, columns=["key", "shard", *spans]):
        shard = pc.dictionary_encode(batch.column(1).cast("string"))
        if shard.null_count:
            raise ShardError(f"{where}: invalid shard name None: expected '<set>-NNNNNN.tar' inside the set")
        local = np.array([names.setdefault(str(n), len(names)) for n in shard.dictionary.to_pylist()], np.int32)
        at = local[shard.indices.to_numpy()] if len(local) else np.zeros(0, np.int32)
        keys.append(_checked_keys(batch.column(0).to_pylist(), at, names, where))
        shard_of.append(at)
        for c in spans:
            cols[c].append(pc.fill_null(batch.column(c), -1).cast("int64").to_numpy())
    listed = sorted(names)  # shard numbers in name order
    number = {n: i for i, n in enumerate(listed)}
    renumber = np.array([number[n] for n in names], np.int32) if names else np.zeros(0, np.int32)
    codes = renumber[np.concatenate(shard_of)] if shard_of else np.zeros(0, np.int32)
    columns = {c: np.concatenate(v) if v else np.zeros(0, np.int64) for c, v in cols.items()}
    return (Keys.concat(keys), [_checked_shard(n, where) for n in listed], codes,
            {m: (columns[f"offset_{m}"], columns[f"size_{m}"]) for m in members})


def _checked_keys(keys: list[Any], shard_of: np.ndarray, shards: dict[str, int], where: Path) -> Keys:
    """A piece's keys, each one `is_key` allows. Raises ShardError naming the shard of the first bad
    one (`shard_of`: each row's number in `shards`, the shard names in order of first appearance)."""
    text = [str(k) for k in keys]
    for i, key in enumerate(text):
        if not is_key(key):
            raise ShardError(f"{list(shards)[shard_of[i]]}: invalid sample key {key!r} in {where}: "
                             "keys are non-empty and contain no '.', '/' or '\\'")
    return Keys.of(text)


def _checked_shard(name: str, where: Path) -> str:
    if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".tar"):
        raise ShardError(f"{where}: invalid shard name {name!r}: expected '<set>-NNNNNN.tar' inside the set")
    return name
