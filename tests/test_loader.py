"""The training data path: partitioning over ranks and workers, epochs, resume, augmentation, bad shards."""
import io
import itertools
import tarfile

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import ShardConfig
from pipeline.data.augment import dihedral, draw_dihedral
from pipeline.data.dataset import PairDataset, read_pair
from pipeline.data.inspect import inspect_set
from pipeline.data.loader import LoaderState, infinite_batches, make_loader
from pipeline.data.order import epoch_order, rank_batches, rank_length, worker_batches
from pipeline.data.synthetic import write_synthetic_sets
from pipeline.io.images import decode_png, encode_png
from pipeline.io.shards import Sample, ShardError, ShardSet, write_shard_set
from pipeline.shard import make_pairs

N_TRAIN = 36  # 4 photos (1 val) x 2 tiles x 2 variants x 3 patches


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    hr, lr = write_synthetic_sets(root, photos=4, val_photos=1, tiles_per_photo=2, tile=64, scale=4, variants=2)
    make_pairs(hr, lr, root / "pairs", ShardConfig(patch_size=32, patches_per_pair=3, min_shards=3, workers=1),
               seed=0, scale=4)
    return root / "pairs"


def _keys(batches):
    return [k for b in batches for k in b["key"]]


def _round_robin(per_worker):
    """What a DataLoader returns from workers' batch lists: one from each live worker in turn."""
    out, its = [], [iter(w) for w in per_worker]
    while its:
        for it in list(its):
            try:
                out.append(next(it))
            except StopIteration:
                its.remove(it)
    return out


@pytest.mark.parametrize("n", [1, 7, 23])
def test_partition_covers_every_position_exactly_once(n):
    for world, workers, batch, skip in itertools.product(range(1, 5), range(1, 5), (1, 3), (0, n // 2)):
        start, stop = 2 * n + skip, 3 * n  # epoch 2, resumed at `skip`
        seen = []
        for rank in range(world):
            planned = list(rank_batches(start, stop, batch_size=batch, rank=rank, world_size=world))
            dealt = [list(worker_batches(start, stop, batch_size=batch, rank=rank, world_size=world, worker=w,
                                         workers=workers)) for w in range(workers)]
            assert _round_robin(dealt) == planned
            assert rank_length(start, stop, batch_size=batch, rank=rank, world_size=world) == (
                sum(hi - lo for lo, hi in planned), len(planned))
            assert all(hi - lo <= batch for lo, hi in planned)
            seen += [p for lo, hi in planned for p in range(lo, hi)]
        assert sorted(seen) == list(range(start, stop)), (world, workers, batch, skip)


def test_endless_streams_give_full_batches_on_every_rank():
    world, batch, steps, start = 3, 4, 10, 5
    seen = []
    for rank in range(world):
        got = list(itertools.islice(rank_batches(start, None, batch_size=batch, rank=rank, world_size=world), steps))
        assert all(hi - lo == batch for lo, hi in got)
        seen += [p for lo, hi in got for p in range(lo, hi)]
    assert sorted(seen) == list(range(start, start + steps * batch * world))


def test_epoch_orders_are_seeded_permutations():
    a = epoch_order(50, seed=3, epoch=0)
    assert sorted(a) == list(range(50))
    assert np.array_equal(a, epoch_order(50, seed=3, epoch=0))
    assert not np.array_equal(a, epoch_order(50, seed=3, epoch=1))
    assert not np.array_equal(a, epoch_order(50, seed=4, epoch=0))
    assert list(epoch_order(5, seed=3, epoch=7, shuffle=False)) == [0, 1, 2, 3, 4]


def test_dataloader_workers_reproduce_the_rank_order(pairs):
    train = pairs / "train"
    index_keys = list(pd.read_parquet(train / "index.parquet")["key"])
    per_rank = []
    for rank in range(3):
        loader = make_loader(train, batch_size=4, workers=0, seed=7, rank=rank, world_size=3, epoch=1)
        per_rank.append(_keys(loader))
        assert len(per_rank[-1]) == loader.dataset.num_samples and len(list(loader)) == len(loader)
    assert sorted(k for keys in per_rank for k in keys) == sorted(index_keys)  # each sample once per epoch
    order = epoch_order(N_TRAIN, seed=7, epoch=1)
    planned = [index_keys[order[p - N_TRAIN]] for lo, hi in rank_batches(N_TRAIN, 2 * N_TRAIN, batch_size=4, rank=1,
                                                                           world_size=3) for p in range(lo, hi)]
    assert per_rank[1] == planned
    two_workers = list(make_loader(train, batch_size=4, workers=2, seed=7, rank=1, world_size=3, epoch=1))
    assert _keys(two_workers) == planned
    in_process = list(make_loader(train, batch_size=4, workers=0, seed=7, rank=1, world_size=3, epoch=1))
    assert all(torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"]) for a, b in zip(two_workers, in_process))


def test_batches_are_float_chw_and_epochs_reshuffle(pairs):
    train = pairs / "train"
    batch = next(iter(make_loader(train, batch_size=5, workers=0, seed=0)))
    assert batch["hr"].shape == (5, 3, 32, 32) and batch["lr"].shape == (5, 3, 8, 8)
    assert batch["hr"].dtype == torch.float32 and 0 <= batch["hr"].min() and batch["hr"].max() <= 1
    e0 = _keys(make_loader(train, batch_size=5, workers=0, seed=0, epoch=0))
    e1 = _keys(make_loader(train, batch_size=5, workers=0, seed=0, epoch=1))
    assert e0 != e1 and sorted(e0) == sorted(e1)
    stored = _keys(make_loader(train, batch_size=5, workers=0, seed=0, shuffle=False, augment=False))
    assert stored == list(pd.read_parquet(train / "index.parquet")["key"])


def test_augmentation_is_paired_and_keyed(pairs):
    train = pairs / "train"
    codes = set()
    for epoch in (0, 1):
        ds = PairDataset(train, seed=5, epoch=epoch)
        for sample in ds:
            hr = (sample["hr"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            lr = (sample["lr"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            assert np.array_equal(cv2.resize(hr, (8, 8), interpolation=cv2.INTER_AREA), lr)
            code = draw_dihedral(5, epoch, sample["key"])
            codes.add(code)
            stored_hr, stored_lr = read_pair(train, sample["key"])
            assert np.array_equal(hr, dihedral(stored_hr, code)) and np.array_equal(lr, dihedral(stored_lr, code))
    assert len(codes) == 8


def test_resume_mid_epoch_yields_the_tail(pairs):
    train = pairs / "train"
    for world in (1, 2):
        for rank in range(world):
            full = list(make_loader(train, batch_size=4, workers=0, seed=1, rank=rank, world_size=world, epoch=2))
            k = 3  # steps done before the interruption; each step consumed 4 x world samples
            resumed = list(make_loader(train, batch_size=4, workers=2 if rank == 0 else 0, seed=1, rank=rank,
                                       world_size=world, epoch=2, skip=k * 4 * world))
            assert _keys(resumed) == _keys(full[k:])
            assert all(torch.equal(a["hr"], b["hr"]) for a, b in zip(resumed, full[k:]))


def test_endless_stream_state_resumes_exactly(pairs):
    train = pairs / "train"
    ref = infinite_batches(train, batch_size=5, workers=0, seed=2)
    steps = [next(ref) for _ in range(12)]  # 60 samples: crosses into epoch 1 at step 7
    states = []
    again = infinite_batches(train, batch_size=5, workers=0, seed=2)
    for _ in range(5):
        next(again)
        states.append(again.state)
    assert states[-1] == LoaderState(0, 25)
    resumed = infinite_batches(train, batch_size=5, workers=2, seed=2, state=LoaderState.from_dict(states[-1].to_dict()))
    tail = [next(resumed) for _ in range(7)]
    assert [e for e, _ in tail] == [e for e, _ in steps[5:]] == [0, 0, 0, 1, 1, 1, 1]
    assert [b["key"] for _, b in tail] == [b["key"] for _, b in steps[5:]]
    assert all(torch.equal(a["lr"], b["lr"]) for (_, a), (_, b) in zip(tail, steps[5:]))
    assert resumed.state == LoaderState(1, 24)
    assert all(len(b["key"]) == 5 for _, b in steps)  # the step across the epoch boundary is full too
    assert sorted(_keys(b for _, b in steps)[:N_TRAIN]) == sorted(pd.read_parquet(train / "index.parquet")["key"])


def test_resume_with_another_world_size_loses_and_repeats_nothing(pairs):
    train = pairs / "train"
    single = infinite_batches(train, batch_size=4, workers=0, seed=3)
    seen = _keys(next(single)[1] for _ in range(3))
    state = single.state
    ranks = [infinite_batches(train, batch_size=4, workers=0, seed=3, rank=r, world_size=2, state=state) for r in (0, 1)]
    for _ in range(3):
        for stream in ranks:
            seen += next(stream)[1]["key"]
    assert ranks[0].state == ranks[1].state == LoaderState(1, 0)
    assert sorted(seen) == sorted(pd.read_parquet(train / "index.parquet")["key"])


def test_read_pair_by_key(pairs):
    train = pairs / "train"
    key = pd.read_parquet(train / "index.parquet")["key"].iloc[4]
    hr, lr = read_pair(train, key)
    members = ShardSet(train).read(key)
    assert np.array_equal(hr, decode_png(members["hr.png"])) and np.array_equal(lr, decode_png(members["lr.png"]))
    with pytest.raises(KeyError, match="no sample with key 'nope'"):
        read_pair(train, "nope")


# ---- malformed shard sets: one clear error naming the shard and the key ----

def _tiny_set(path, n=6, bad=None, drop=None):
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        hr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        members = {"hr.png": encode_png(hr), "lr.png": encode_png(hr[::2, ::2].copy()), "json": b"{}"}
        if i == bad:
            members["lr.png"] = b"\x89PNG\r\n\x1a\ngarbage" + bytes(40)
        if i == drop:
            del members["lr.png"]
        samples.append(Sample(f"k{i:03d}", members, {"scale": 2}))
    write_shard_set(path, samples, set_name="pairs", shard_bytes=1 << 20)
    return path


def _all(ds):
    return [s for s in ds]


def test_undecodable_png_raises_or_is_skipped_and_counted(tmp_path):
    path = _tiny_set(tmp_path / "s", bad=3)
    with pytest.raises(ShardError, match=r"^pairs-000000.tar: sample 'k003': lr.png failed to decode$"):
        _all(PairDataset(path, seed=0, shuffle=False))
    ds = PairDataset(path, seed=0, shuffle=False, batch_size=2, on_error="skip")
    batches = _all(ds)
    assert _keys(batches) == ["k000", "k001", "k002", "k004", "k005"] and sum(b["skipped"] for b in batches) == 1
    stream = infinite_batches(path, batch_size=2, workers=0, seed=0, shuffle=False, on_error="skip")
    for _ in range(3):
        next(stream)
    assert stream.skipped == 1 and stream.state == LoaderState(1, 0)


def test_error_in_a_worker_process_reaches_the_caller(tmp_path):
    path = _tiny_set(tmp_path / "s", bad=3)
    with pytest.raises(ShardError, match="sample 'k003': lr.png failed to decode"):
        list(make_loader(path, batch_size=1, workers=2, seed=0, shuffle=False))


def test_missing_member_is_named(tmp_path):
    path = _tiny_set(tmp_path / "s", drop=2)
    with pytest.raises(ShardError, match=r"^pairs-000000.tar: sample 'k002' has no lr.png member$"):
        _all(PairDataset(path, seed=0, shuffle=False))


def test_index_that_disagrees_with_the_tar(tmp_path):
    path = _tiny_set(tmp_path / "s")
    index = pd.read_parquet(path / "index.parquet")
    swapped = index.copy()
    swapped.loc[[0, 1], "offset_lr_png"] = index.loc[[1, 0], "offset_lr_png"].to_numpy()
    swapped.to_parquet(path / "index.parquet")
    with pytest.raises(ShardError, match=r"sample 'k000': the index points at member 'k001.lr.png', not 'k000.lr.png'"):
        _all(PairDataset(path, seed=0, shuffle=False))
    resized = index.copy()
    resized.loc[0, "size_hr_png"] -= 1
    resized.to_parquet(path / "index.parquet")
    with pytest.raises(ShardError, match=r"sample 'k000': member 'k000.hr.png' holds \d+ bytes but the index says"):
        _all(PairDataset(path, seed=0, shuffle=False))
    index.drop(columns=["offset_lr_png"]).to_parquet(path / "index.parquet")
    with pytest.raises(ShardError, match="index.parquet: missing column 'offset_lr_png'"):
        PairDataset(path, seed=0)


def test_bad_keys_member_names_and_truncation(tmp_path):
    path = _tiny_set(tmp_path / "s")
    index = pd.read_parquet(path / "index.parquet")
    index.assign(key=["k000", "a/../b", "k002", "k003", "k004", "k005"]).to_parquet(path / "index.parquet")
    with pytest.raises(ShardError, match=r"invalid sample key 'a/\.\./b'"):
        PairDataset(path, seed=0)
    index.to_parquet(path / "index.parquet")
    shard = path / "pairs-000000.tar"
    shard.write_bytes(shard.read_bytes()[:2000])
    with pytest.raises(ShardError, match=r"pairs-000000.tar: sample 'k00\d': \S+ runs past the end of the shard"):
        _all(PairDataset(path, seed=0, shuffle=False))
    # A tar whose member is named '../evil.lr.png', with an index pointing at it.
    evil = tmp_path / "evil"
    evil.mkdir()
    with tarfile.open(evil / "pairs-000000.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("k000.hr.png", encode_png(np.zeros((8, 8, 3), np.uint8))),
                           ("../evil.lr.png", encode_png(np.zeros((4, 4, 3), np.uint8)))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(evil / "pairs-000000.tar") as tar:
        offsets = [m.offset_data for m in tar.getmembers()]
        sizes = [m.size for m in tar.getmembers()]
    pd.DataFrame({"key": ["k000"], "shard": ["pairs-000000.tar"], "offset_hr_png": [offsets[0]], "size_hr_png": [sizes[0]],
                  "offset_lr_png": [offsets[1]], "size_lr_png": [sizes[1]]}).to_parquet(evil / "index.parquet")
    with pytest.raises(ShardError, match=r"sample 'k000': member '\.\./evil\.lr\.png': path separators and '\.\.'"):
        _all(PairDataset(evil, seed=0, shuffle=False))


def test_argument_errors(pairs, tmp_path):
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip', got 'ignore'"):
        PairDataset(pairs / "train", seed=0, on_error="ignore")
    with pytest.raises(ValueError, match=r"0 <= skip <= 36 .* got epoch=0, skip=37"):
        PairDataset(pairs / "train", seed=0, skip=37)
    with pytest.raises(ValueError, match="rank must be in"):
        make_loader(pairs / "train", batch_size=2, workers=0, seed=0, rank=2, world_size=2)
    with pytest.raises(FileNotFoundError, match="no shard-set index"):
        PairDataset(tmp_path, seed=0)
    with pytest.raises(ValueError, match="loader state must have keys"):
        LoaderState.from_dict({"epoch": 1})


def test_inspect_summarises_and_writes_a_grid(pairs, tmp_path):
    text = inspect_set(pairs, grid=4, seed=0, out=tmp_path / "grid.png")
    assert f"{pairs / 'train'}: pairs shard set (members: hr.png, json, lr.png)" in text
    assert "samples: 36 in 3 shards" in text and "lr size: 8x8 (36)" in text
    assert "jpeg1_quality: 30 .. 40" in text and "blur1_kind: " in text
    grid = decode_png((tmp_path / "grid-train.png").read_bytes())
    assert grid.shape[1] > 4 * 192  # 4 cells per row: 2 pairs of (HR, LR)


@pytest.mark.parametrize("code", range(8))
def test_dihedral_codes_are_their_bits(code):
    """code bit 0 = horizontal flip, bit 1 = vertical flip, bit 2 = transpose, applied in that order."""
    img = np.arange(5 * 7 * 2).reshape(5, 7, 2)
    want = img[:, ::-1] if code & 1 else img
    want = want[::-1] if code & 2 else want
    want = want.transpose(1, 0, 2) if code & 4 else want
    assert np.array_equal(dihedral(img, code), want)
    assert len({dihedral(img, c).tobytes() + bytes(dihedral(img, c).shape) for c in range(8)}) == 8
