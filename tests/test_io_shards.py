import hashlib
import io
import tarfile

import numpy as np
import pytest

from pipeline.io.atomic import atomic_dir, atomic_write_text
from pipeline.io.images import encode_png
from pipeline.io.shards import Sample, ShardError, ShardSet, iter_tar, json_bytes, read_member, write_shard_set


def _samples(n=12, size=8):
    rng = np.random.default_rng(0)
    return [Sample(f"s{i:04d}", {"hr.png": encode_png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)),
                                 "json": json_bytes({"i": i})}, {"height": size, "width": size})
            for i in range(n)]


def _digests(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_same_samples_give_same_bytes(tmp_path):
    write_shard_set(tmp_path / "a", _samples(), set_name="hr", shard_bytes=1000)
    write_shard_set(tmp_path / "b", _samples(), set_name="hr", shard_bytes=1000)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert len(list((tmp_path / "a").glob("hr-*.tar"))) > 1


def test_index_offsets_point_at_member_bytes(tmp_path):
    samples = _samples()
    written = write_shard_set(tmp_path, samples, set_name="hr", shard_bytes=1000, max_per_shard=5)
    shards = ShardSet(tmp_path)
    index = shards.index
    assert index["shard"].value_counts().max() <= 5
    assert (written.samples, written.shards) == (len(samples), index["shard"].nunique())
    for s in samples:
        assert shards.read(s.key) == dict(s.members)
        row = index.set_index("key").loc[s.key]
        assert row["sha256"] == hashlib.sha256(s.members["hr.png"]).hexdigest()
    assert [k for k, _ in shards.iter_samples()] == [s.key for s in samples]


def test_locate_gives_what_read_member_reads(tmp_path):
    samples = _samples(4)
    samples.append(Sample("s9999", {"json": json_bytes({"i": 9})}))  # a sample without an hr.png
    write_shard_set(tmp_path, samples, set_name="hr", max_per_shard=2)
    shards = ShardSet(tmp_path)
    at = shards.locate(["s0003", "s0000"], "hr.png")
    assert list(at) == ["s0003", "s0000"] and at["s0003"][0] != at["s0000"][0]  # different shards
    for key, (shard, offset, size) in at.items():
        assert read_member(tmp_path / shard, key, "hr.png", offset, size) == shards.read(key)["hr.png"]
    with pytest.raises(KeyError, match="no sample with key 'nope'"):
        shards.locate(["nope"], "hr.png")
    with pytest.raises(ShardError, match=r"^hr-000002\.tar: sample 's9999' has no hr.png member$"):
        shards.locate(["s9999"], "hr.png")
    with pytest.raises(ShardError, match="no 'lr.png' members"):
        shards.locate(["s0000"], "lr.png")


def test_tar_headers_are_gnu_with_fixed_metadata(tmp_path):
    write_shard_set(tmp_path, _samples(2), set_name="hr", shard_bytes=1 << 20)
    with tarfile.open(tmp_path / "hr-000000.tar") as tar:
        infos = tar.getmembers()
        assert not tar.pax_headers
    assert [i.name for i in infos] == ["s0000.hr.png", "s0000.json", "s0001.hr.png", "s0001.json"]
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname) for i in infos} == {(0, 0, 0, "", "")}


def test_keys_must_be_sorted_and_dot_free(tmp_path):
    s = _samples(3)
    with pytest.raises(ShardError, match="sorted order"):
        write_shard_set(tmp_path / "a", [s[1], s[0]], set_name="hr")
    with pytest.raises(ShardError, match="invalid sample key"):
        write_shard_set(tmp_path / "b", [Sample("a.b", {"json": b"{}"})], set_name="hr")


def test_official_webdataset_reads_our_shards(tmp_path):
    import webdataset as wds

    samples = _samples(6)
    write_shard_set(tmp_path, samples, set_name="hr", shard_bytes=600)
    urls = [str(p) for p in sorted(tmp_path.glob("hr-*.tar"))]
    got = list(wds.WebDataset(urls, shardshuffle=False))
    assert [g["__key__"] for g in got] == [s.key for s in samples]
    assert got[3]["hr.png"] == samples[3].members["hr.png"]


@pytest.mark.parametrize("sizes", [[], [0], [1, 511, 512, 513], [10240 - 1024], [3000] * 7])
def test_tar_writer_writes_the_bytes_tarfile_writes(tmp_path, sizes):
    from pipeline.io.tar import TarWriter

    members = [(f"k{i:03d}." + ("x" * 120 if i == 1 else "lr.png"), bytes([i % 251]) * n)  # a GNU long name
               for i, n in enumerate(sizes)]
    ours = TarWriter(tmp_path / "ours.tar")
    offsets = [ours.add(name, data) for name, data in members]
    ours.close()
    with tarfile.open(tmp_path / "std.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
            tar.addfile(info, io.BytesIO(data))
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "std.tar").read_bytes()
    with tarfile.open(tmp_path / "ours.tar") as tar:
        assert [m.offset_data for m in tar.getmembers()] == offsets


def _tar_with(path, names):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))


@pytest.mark.parametrize("name,msg", [("../evil.json", "path separators"), ("a/b.json", "path separators"),
                                      ("noext", "<key>.<ext>")])
def test_malformed_member_names_are_rejected_by_name(tmp_path, name, msg):
    _tar_with(tmp_path / "bad-000000.tar", ["ok.json", name])
    with pytest.raises(ShardError, match=msg) as err:
        list(iter_tar(tmp_path / "bad-000000.tar"))
    assert "bad-000000.tar" in str(err.value)


def test_atomic_dir_leaves_nothing_when_interrupted(tmp_path):
    out = tmp_path / "set"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(out) as tmp:
            write_shard_set(tmp, _samples(3), set_name="hr")
            raise KeyboardInterrupt
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_a_previous_output_whole(tmp_path):
    out = tmp_path / "set"
    with atomic_dir(out) as tmp:
        atomic_write_text(tmp / "old.txt", "old")
    with atomic_dir(out) as tmp:
        atomic_write_text(tmp / "new.txt", "new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_shard_set_read_checks_each_member_against_its_tar_header(tmp_path):
    import pandas as pd

    samples = _samples(3)
    write_shard_set(tmp_path, samples, set_name="hr")
    assert ShardSet(tmp_path).read("s0001") == dict(samples[1].members)
    index = pd.read_parquet(tmp_path / "index.parquet")
    index.loc[0, ["offset_hr_png", "size_hr_png"]] = index.loc[1, ["offset_hr_png", "size_hr_png"]].to_numpy()
    index.to_parquet(tmp_path / "index.parquet", index=False)  # a stale index: s0000 points at s0001's PNG
    with pytest.raises(ShardError, match=r"hr-000000.tar: sample 's0000'.*'s0001.hr.png', not 's0000.hr.png'"):
        ShardSet(tmp_path).read("s0000", ["hr.png"])
    shard = tmp_path / "hr-000000.tar"
    shard.write_bytes(shard.read_bytes()[:1500])  # truncated inside s0000's PNG
    with pytest.raises(ShardError, match="runs past the end of the shard"):
        ShardSet(tmp_path).read("s0001", ["hr.png"])


# ---- the one reader: by key and by row, pickled into other processes, checked against the tar ----

def _read_row_in_child(shards, row):
    return shards.read_at(row, "hr.png")


def test_by_row_and_by_key_read_the_same_members(tmp_path):
    samples = _samples(5)
    write_shard_set(tmp_path, samples, set_name="hr", max_per_shard=2)
    shards = ShardSet(tmp_path, need=["hr.png"])
    assert list(shards.keys) == [s.key for s in samples] and shards.shards == ["hr-000000.tar", "hr-000001.tar",
                                                                               "hr-000002.tar"]
    for row, s in enumerate(samples):
        assert shards.row(s.key) == row and shards.read_at(row, "hr.png") == s.members["hr.png"]
        assert shards.member(s.key, "json").read() == s.members["json"]
        assert np.array_equal(shards.image_at(row, "hr.png"), shards.member(s.key, "hr.png").image())
    assert len(shards._fds) == 3  # one cached handle per shard read, reused for every sample
    with pytest.raises(KeyError, match="no sample with key 'nope'"):
        shards.row("nope")
    with pytest.raises(ShardError, match=r"index.parquet: missing column 'offset_lr_png' \(needed to read members"):
        ShardSet(tmp_path, need=["hr.png", "lr.png"])


def test_pickles_without_its_index_or_handles_and_reads_in_a_spawned_process(tmp_path):
    import multiprocessing as mp
    import pickle

    samples = _samples(4)
    write_shard_set(tmp_path, samples, set_name="hr", max_per_shard=2)
    shards = ShardSet(tmp_path)
    shards.read_at(3, "hr.png")  # an open handle, which must not travel
    copy = pickle.loads(pickle.dumps(shards))
    assert copy._index is None and not copy._fds and copy.read_at(3, "hr.png") == samples[3].members["hr.png"]
    assert copy.index.equals(shards.index)  # read again on demand
    with mp.get_context("spawn").Pool(1) as pool:
        assert pool.starmap(_read_row_in_child, [(shards, 2), (shards, 0)]) == [samples[2].members["hr.png"],
                                                                               samples[0].members["hr.png"]]


def test_a_forked_child_opens_its_own_handles(tmp_path):
    import os

    write_shard_set(tmp_path, _samples(2), set_name="hr")
    shards = ShardSet(tmp_path)
    first = shards.read_at(0, "hr.png")
    os.lseek(shards._fds[0], 100, os.SEEK_SET)  # a shared open file would show this position in the child
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only if it read through a fresh handle of its own
        ok = shards.read_at(0, "hr.png") == first and os.lseek(shards._fds[0], 0, os.SEEK_CUR) == 0
        os._exit(0 if ok else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert os.lseek(shards._fds[0], 0, os.SEEK_CUR) == 100  # the parent's handle is untouched


@pytest.mark.parametrize("shift", [512, -512, -1024 - 512])
def test_a_misaligned_index_fails_in_one_line_naming_shard_key_and_offset(tmp_path, shift):
    import pandas as pd

    write_shard_set(tmp_path, _samples(3), set_name="hr")
    index = pd.read_parquet(tmp_path / "index.parquet")
    index.loc[1, "offset_hr_png"] += shift
    index.to_parquet(tmp_path / "index.parquet", index=False)
    offset = int(index.loc[1, "offset_hr_png"])
    with pytest.raises(ValueError) as err:
        ShardSet(tmp_path).read("s0001", ["hr.png"])
    msg = str(err.value)
    assert isinstance(err.value, ShardError) and "\n" not in msg
    assert msg.startswith("hr-000000.tar: sample 's0001': ") and f"offset {offset}" in msg


def test_index_names_outside_the_set_are_refused(tmp_path):
    import pandas as pd

    write_shard_set(tmp_path, _samples(2), set_name="hr")
    index = pd.read_parquet(tmp_path / "index.parquet")
    index.assign(shard=["../hr-000000.tar", "hr-000000.tar"]).to_parquet(tmp_path / "index.parquet", index=False)
    with pytest.raises(ShardError, match=r"invalid shard name '\.\./hr-000000\.tar'"):
        ShardSet(tmp_path)


def test_only_pipeline_io_shards_opens_an_index():
    """The index is read in one module (and its reads module): no other module of pipeline/ or stages/ reads parquet tables or
    builds the index's path from its file name (docstrings and messages may mention it)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found: dict[str, int] = {}
    for path in sorted([*root.glob("pipeline/**/*.py"), *root.glob("stages/**/*.py")]):
        rel = path.relative_to(root).as_posix()
        if rel in ("pipeline/io/shards.py", "pipeline/io/index_reads.py"):
            continue
        tree = ast.parse(path.read_text(), rel)
        docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                ast.AsyncFunctionDef)) and n.body and isinstance(n.body[0], ast.Expr)}
        hits = [n for n in ast.walk(tree)
                if (isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
                    and n.value.strip().endswith("index.parquet"))
                or (isinstance(n, ast.Attribute) and n.attr in ("read_parquet", "read_table", "ParquetFile"))
                or (isinstance(n, ast.Name) and n.id in ("read_parquet", "read_table", "ParquetFile"))]
        if hits:
            found[rel] = len(hits)
    assert found == {}, f"index.parquet opened outside pipeline/io/shards.py and index_reads.py (use ShardSet): {found}"


@pytest.mark.parametrize("rewrite", [None, {"row_group_size": 4}, {"row_group_size": 4, "write_statistics": False}])
def test_iter_frames_gives_frame_in_pieces_with_its_dtypes(tmp_path, rewrite):
    """A piece has the dtypes of `frame` sliced, though pandas decides an int or bool column's dtype by
    whether it has a null anywhere: here the nulls sit in one piece only."""
    import pandas as pd

    n = 11
    columns = {"name": ["a", None, "b", np.nan] + ["c"] * (n - 4),  # strings with None and NaN
               "gaps": [None] * 3 + list(range(n - 3)),  # an int column with nulls in the first piece only
               "count": list(range(n)), "flag": [True, None] + [False] * (n - 2), "empty": [None] * n}
    write_shard_set(tmp_path, [Sample(s.key, s.members, {c: v[i] for c, v in columns.items()})
                               for i, s in enumerate(_samples(n))], set_name="hr")
    if rewrite:  # several row groups, as a set written a row group at a time has; without statistics
        index = pd.read_parquet(tmp_path / "index.parquet")
        index.to_parquet(tmp_path / "index.parquet", index=False, **rewrite)
    shards = ShardSet(tmp_path)
    wanted = ["flag", "name", "nope", "gaps", "count", "empty"]
    whole = shards.frame(wanted)
    assert str(whole["gaps"].dtype) == "float64" and whole["count"].dtype == np.int64  # what pandas reads
    pieces = list(shards.iter_frames(wanted, rows=3))
    assert [len(p) for p in pieces] == [3, 3, 3, 2]
    for piece in pieces:
        pd.testing.assert_frame_equal(piece, whole.loc[piece.index], check_exact=True)
        assert list(piece.dtypes) == list(whole.dtypes)
    pd.testing.assert_frame_equal(pd.concat(pieces), whole)
    assert [len(p.columns) for p in shards.iter_frames(["nope"])] == [0]
