"""Keys: sample keys as one UTF-8 byte array behave as the list of str they replace."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.io.keys import Keys
from pipeline.io.shards import ShardSet, Sample, write_shard_set

# prefixes, digits against letters, '-' and '_' around 'v', non-ASCII (2-, 3- and 4-byte UTF-8)
AWKWARD = ["a", "a_v0", "a_1", "a-1", "a_1_v0", "B", "b", "é", "ß_2", "z", "日本", "𝒳", "a0", "A_9"]


def test_order_and_search_agree_with_python_strings():
    keys = Keys.of(AWKWARD)
    assert list(keys) == AWKWARD and keys.tolist() == AWKWARD and len(keys) == len(AWKWARD)
    assert [keys[i] for i in keys.argsort()] == sorted(AWKWARD)
    ordered = keys[keys.argsort()]
    assert isinstance(ordered, Keys) and ordered.tolist() == sorted(AWKWARD) and ordered.is_sorted()
    assert not keys.is_sorted() and not Keys.of(["a", "a"]).is_sorted()  # strictly increasing only
    for i, key in enumerate(sorted(AWKWARD)):
        assert ordered.find(key) == i
    by_python = sorted(AWKWARD)
    assert ordered.find_all(["z", "nope", "a", "a_"]).tolist() == [by_python.index("z"), -1, by_python.index("a"), -1]
    assert Keys.of([]).find("a") == -1 and Keys.of([]).find_all(["a"]).tolist() == [-1]
    assert Keys.of(["a", "b"]).find("a\x00") == -1  # the byte array would drop the NUL and match "a"


def test_items_are_str_and_slices_are_keys():
    keys = Keys.of(["x_1", "é_2", "y"])
    assert type(keys[1]) is str and keys[1] == "é_2" and keys[np.int64(2)] == "y" and keys[-1] == "y"
    assert keys[1:].tolist() == ["é_2", "y"] and keys[np.array([2, 0])].tolist() == ["y", "x_1"]
    assert "é_2" in keys and "é" not in keys and 3 not in keys
    assert keys == ["x_1", "é_2", "y"] and keys == Keys.of(("x_1", "é_2", "y")) and keys != ["x_1"]
    assert keys.with_suffix("_v0").tolist() == ["x_1_v0", "é_2_v0", "y_v0"]
    assert Keys.concat([keys[:1], Keys.of(["a_much_longer_key"])]).tolist() == ["x_1", "a_much_longer_key"]


def test_shard_set_rows_by_binary_search_also_when_the_index_is_out_of_order(tmp_path):
    samples = [Sample(f"k{i:03d}", {"hr.png": b"x" * (i + 1)}) for i in range(40)]
    write_shard_set(tmp_path / "set", samples, set_name="hr", max_per_shard=7)
    shards = ShardSet(tmp_path / "set")
    assert isinstance(shards.keys, Keys) and shards.keys.is_sorted()
    assert [shards.row(s.key) for s in samples] == list(range(40))
    assert shards.read("k017", ["hr.png"])["hr.png"] == b"x" * 18
    with pytest.raises(KeyError, match="no sample with key 'k999'"):
        shards.row("k999")
    index = pd.read_parquet(tmp_path / "set" / "index.parquet")  # a hand-made index, rows reversed
    index.iloc[::-1].to_parquet(tmp_path / "set" / "index.parquet", index=False)
    shuffled = ShardSet(tmp_path / "set")
    assert not shuffled.keys.is_sorted()
    assert shuffled.row("k000") == 39 and shuffled.read("k017", ["hr.png"])["hr.png"] == b"x" * 18
