"""ParquetRowWriter: rows streamed to parquet a row group at a time read back as the one-frame write."""
from __future__ import annotations

import io

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.io.parquet_rows import ParquetRowWriter
from tests.test_io_columns import CASES


def _one_frame(rows: list[dict]) -> bytes | None:
    """What `DataFrame.to_parquet` writes for the rows as one frame; None where pyarrow refuses it."""
    buf = io.BytesIO()
    try:
        pd.DataFrame(rows).to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
    except Exception:  # noqa: BLE001 - a column of mixed kinds: the streamed write must refuse it too
        return None
    return buf.getvalue()


def _streamed(rows: list[dict], path, row_group: int, part: int | None = None) -> bytes | None:
    try:
        with ParquetRowWriter(path, row_group=row_group, part=part or row_group) as out:
            for row in rows:
                out.add(row)
    except Exception:  # noqa: BLE001
        assert not path.exists()
        return None
    return path.read_bytes()


# values no index holds, for which pyarrow's inference over a whole column and over each group may
# disagree on whether the column can be stored (numpy scalars of several types; ints past int64)
EXOTIC = {"numpy scalars", "big ints"}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("row_group, part", [(1, 1), (2, 2), (4, 2), (1000, 1), (1000, 2), (1000, 1000)])
def test_streamed_rows_read_back_as_the_one_frame_write(name, row_group, part, tmp_path):
    rows = CASES[name] * 3  # several groups even at 2 rows a group
    want, got = _one_frame(rows), _streamed(rows, tmp_path / "t.parquet", row_group, part)
    if name in EXOTIC and (want is None) != (got is None) and part < len(rows):
        return
    assert (want is None) == (got is None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if got is None else ["t.parquet"])  # no part left
    if got is None:
        return
    if row_group >= len(rows):
        assert got == want  # one row group, of one part or of several: the same bytes
    else:
        assert pq.ParquetFile(io.BytesIO(got)).metadata.num_row_groups == -(-len(rows) // row_group)
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(got)), pd.read_parquet(io.BytesIO(want)))


def test_index_like_rows_in_many_groups(tmp_path):
    """Columns that start late, stop early and change from ints to floats across groups."""
    rows = []
    for i in range(50):
        row = {"key": f"k{i:03d}", "shard": f"s-{i // 20:06d}.tar", "offset": i * 512}
        if i >= 13:
            row["blur2_sigma"] = 0.5 + i / 7 if i % 3 else None
        if i < 30:
            row["noise_kind"] = "gaussian" if i % 2 else "poisson"
        row["level"] = i if i < 25 else i + 0.5
        rows.append(row)
    got = _streamed(rows, tmp_path / "i.parquet", 8)
    read = pd.read_parquet(io.BytesIO(got))
    pd.testing.assert_frame_equal(read, pd.read_parquet(io.BytesIO(_one_frame(rows))))
    assert list(read.columns) == ["key", "shard", "offset", "noise_kind", "level", "blur2_sigma"]
    assert read["level"].dtype == "float64" and read["offset"].dtype == "int64"


def test_a_column_of_numbers_in_one_group_and_strings_in_another_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'a'.*different kinds"):
        with ParquetRowWriter(tmp_path / "t.parquet", row_group=2) as out:
            for v in (1, 2, "x", "y"):
                out.add({"a": v})
    assert list(tmp_path.iterdir()) == []


def test_no_rows_writes_the_empty_frame_given(tmp_path):
    with ParquetRowWriter(tmp_path / "t.parquet", empty=lambda: pd.DataFrame({"key": pd.Series(dtype=str)})) as out:
        assert out.rows == 0
    assert list(pd.read_parquet(tmp_path / "t.parquet").columns) == ["key"]
