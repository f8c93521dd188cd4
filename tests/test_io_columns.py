"""Columns: rows kept column by column give the DataFrame (and the parquet bytes) of the row dicts."""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.io.columns import Columns


def _parquet(frame: pd.DataFrame) -> bytes | str:
    """The parquet bytes `DataFrame.to_parquet` writes for an index (as `ParquetRowWriter` does for a
    table of one row group), or the error's type where pyarrow refuses the table."""
    buf = io.BytesIO()
    try:
        frame.reset_index(drop=True).to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
    except Exception as err:  # noqa: BLE001 - a mixed object column: both tables must fail alike
        return type(err).__name__
    return buf.getvalue()


def _same(rows: list[dict]) -> None:
    table = Columns()
    for row in rows:
        table.add(row)
    want, got = pd.DataFrame(rows), table.frame()
    assert list(got.columns) == list(want.columns)
    assert list(got.dtypes) == list(want.dtypes), (got.dtypes, want.dtypes)
    assert [list(map(repr, got[c])) for c in got] == [list(map(repr, want[c])) for c in want]
    assert _parquet(got) == _parquet(want)


CASES = {
    "ints": [{"a": 1}, {"a": 2**40}, {"a": -3}],
    "ints and a missing row": [{"a": 1}, {"b": "x"}, {"a": 3}],
    "ints then floats": [{"a": 1}, {"a": 2.5}],
    "floats and nan": [{"a": math.nan}, {"a": 1.5}, {"a": float("inf")}],
    "nan only": [{"a": math.nan}, {"a": math.nan}],
    "none only": [{"a": None}, {"a": None}],
    "none and floats": [{"a": None}, {"a": 0.5}],
    "nan and none": [{"a": math.nan}, {"a": None}],
    "strings": [{"a": "x"}, {"a": "é✓"}, {"a": ""}],
    "strings and nan": [{"a": "x"}, {"a": math.nan}, {}],
    "strings and none": [{"a": None}, {"a": "y"}],
    "strings and numbers": [{"a": "x"}, {"a": 1}, {"a": 2.0}],
    "bools": [{"a": True}, {"a": False}],
    "bools and missing": [{"a": True}, {}],
    "ints and bools": [{"a": 1}, {"a": True}],
    "numpy scalars": [{"a": np.float64(1.5)}, {"a": np.int64(3)}, {"a": np.float32(0.1)}],
    "big ints": [{"a": 2**60}, {"a": 1}, {"a": 2**63 + 5}],
    "lists": [{"a": [1, 2]}, {"a": None}],
    "late column, order of first appearance": [{"k": "a"}, {"k": "b", "z": 1.0, "c": "q"}, {"c": "r", "k": "c"}],
    "empty row": [{}, {"a": 1}],
}


@pytest.mark.parametrize("name", list(CASES))
def test_columns_give_the_records_frame(name):
    _same(CASES[name])


def test_many_rows_of_mixed_columns():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3000):
        row = {"key": f"k{i:05d}", "shard": f"s-{i // 1000:06d}.tar", "size": int(rng.integers(1, 10**6)),
               "x": float(rng.random()) if i % 7 else math.nan, "kind": ["iso", "aniso"][i % 2]}
        if i % 5 == 0:
            row["late"] = "v" if i % 10 else None
        rows.append(row)
    _same(rows)


def test_column_values_come_back_as_given():
    table = Columns()
    for row in ({"a": "x", "b": 1}, {"a": "yz"}, {"a": "", "b": 2}):
        table.add(row)
    assert len(table) == 3
    frame = table.frame()
    assert frame["a"].tolist() == ["x", "yz", ""]
    assert frame["b"][0] == 1 and math.isnan(frame["b"][1]) and frame["b"][2] == 2


def test_repeated_strings_share_one_object_distinct_ones_come_back_equal():
    table = Columns()
    rows = [{"split": "train" if i % 3 else "val", "key": f"k{i:06d}"} for i in range(10_000)]
    for row in rows:
        table.add(row)
    splits, keys = table._cols["split"].values(), table._cols["key"].values()  # as the frame gets them
    assert splits == [r["split"] for r in rows] and keys == [r["key"] for r in rows]
    assert len({id(v) for v in splits}) == 2  # one str per distinct value, not one a row
    assert table.frame().equals(pd.DataFrame(rows))
