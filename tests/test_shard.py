"""The shard stage: aligned HR/LR patches, split hygiene, shuffled deterministic shards, reports."""
import hashlib
import json

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.config import ShardConfig
from pipeline.data.synthetic import write_synthetic_sets
from pipeline.io.images import decode_png, encode_png
from pipeline.io.shards import Sample, ShardError, ShardSet, json_bytes, write_shard_set
from pipeline.params import ParamsError
from pipeline.shard import lr_windows, make_pairs

CFG = ShardConfig(patch_size=32, patches_per_pair=3, val_patches_per_pair=2, min_shards=2, workers=1)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    hr, lr = write_synthetic_sets(root, photos=4, val_photos=1, tiles_per_photo=2, tile=64, scale=4, variants=2)
    make_pairs(hr, lr, root / "pairs", CFG, seed=0, scale=4)
    return hr, lr, root / "pairs"


def _digests(d):
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def test_patches_are_aligned_on_the_lr_grid(sets):
    hr_dir, _, pairs = sets
    hr_tiles = ShardSet(hr_dir)
    for split in ("train", "val"):
        shards = ShardSet(pairs / split)
        assert len(shards) > 0
        for key, members in shards.iter_samples():
            hr, lr = decode_png(members["hr.png"]), decode_png(members["lr.png"])
            assert hr.shape == (32, 32, 3) and lr.shape == (8, 8, 3)
            # The synthetic LR tile is the INTER_AREA downscale of its HR tile: aligned crops commute with it.
            assert np.array_equal(cv2.resize(hr, (8, 8), interpolation=cv2.INTER_AREA), lr), key
            info = json.loads(members["json"])
            y, x, h, w = info["window"]["hr"]
            assert info["window"]["lr"] == [y // 4, x // 4, 8, 8] and y % 4 == 0 and x % 4 == 0
            tile = decode_png(hr_tiles.read(info["hr_key"], ["hr.png"])["hr.png"])
            assert np.array_equal(tile[y:y + h, x:x + w], hr)
            assert info["key"] == key and info["recipe"]["blur1_kind"] in ("iso", "aniso")


def test_counts_splits_and_hygiene(sets):
    _, lr_dir, pairs = sets
    lr = pd.read_parquet(lr_dir / "index.parquet")
    train = pd.read_parquet(pairs / "train" / "index.parquet")
    val = pd.read_parquet(pairs / "val" / "index.parquet")
    assert len(train) == (lr["split"] == "train").sum() * CFG.patches_per_pair
    assert len(val) == (lr["split"] == "val").sum() * CFG.val_patches_per_pair
    assert set(train["source_sha256"]).isdisjoint(val["source_sha256"])
    assert set(val["lr_key"]) == set(lr.loc[lr["split"] == "val", "key"])
    assert train["shard"].nunique() >= CFG.min_shards and val["shard"].nunique() >= CFG.min_shards
    assert {"jpeg1_quality", "blur1_kind", "variant", "hr_y", "lr_x"} <= set(train.columns)


def test_stored_order_is_a_seeded_shuffle(sets, tmp_path):
    hr, lr, pairs = sets
    keys = list(pd.read_parquet(pairs / "train" / "index.parquet")["key"])
    assert keys == sorted(keys)
    ranks = [int(k.split("_", 1)[0]) for k in keys]
    assert ranks == list(range(len(keys)))
    natural = [k.split("_", 1)[1] for k in keys]
    assert natural != sorted(natural)  # shuffled, not grouped by source tile
    make_pairs(hr, lr, tmp_path / "other", CFG, seed=1, scale=4)
    other = list(pd.read_parquet(tmp_path / "other" / "train" / "index.parquet")["key"])
    assert [k.split("_", 1)[1] for k in other] != natural


def test_byte_identical_for_any_worker_count(sets, tmp_path):
    hr, lr, pairs = sets
    make_pairs(hr, lr, tmp_path / "w2", ShardConfig(**{**CFG.__dict__, "workers": 2}), seed=0, scale=4)
    assert _digests(pairs) == _digests(tmp_path / "w2")
    assert not list(pairs.rglob(".spill*"))


def test_grid_mode_covers_every_tile():
    assert lr_windows((16, 16), 8, n=1, mode="grid", rng=np.random.default_rng(0)) == [(0, 0), (0, 8), (8, 0), (8, 8)]
    assert lr_windows((17, 8), 8, n=1, mode="grid", rng=np.random.default_rng(0)) == [(0, 0), (8, 0), (9, 0)]
    with pytest.raises(ValueError, match="smaller than the LR patch"):
        lr_windows((7, 16), 8, n=1, mode="random", rng=np.random.default_rng(0))


def _lr_set(path, rows, hr_dir=None):
    """LR set from (lr_key, hr_key, lr image, split[, hr image])."""
    samples = []
    for lr_key, hr_key, img, split, *own_hr in rows:
        cols = {"hr_key": hr_key, "variant": 0, "split": split, "height": img.shape[0], "width": img.shape[1]}
        members = {"lr.png": encode_png(img), "json": json_bytes(cols)}
        if own_hr:
            members["hr.png"] = encode_png(own_hr[0])
        samples.append(Sample(lr_key, members, cols))
    write_shard_set(path, sorted(samples, key=lambda s: s.key), set_name="lr")
    return path


def test_bad_pairs_are_skipped_and_reported(sets, tmp_path):
    hr_dir, _, _ = sets
    hr = pd.read_parquet(hr_dir / "index.parquet")
    train_key = hr.loc[hr["split"] == "train", "key"].iloc[0]
    tile = decode_png(ShardSet(hr_dir).read(train_key, ["hr.png"])["hr.png"])
    rows = [(f"{train_key}_v0", train_key, cv2.resize(tile, (16, 16), interpolation=cv2.INTER_AREA), "train"),
            (f"{train_key}_v1", train_key, tile[:15, :16] // 2, "train"),           # LR x 4 != HR
            ("ghost_v0", "ghost", tile[:16, :16], "train")]                         # no HR tile
    lr_dir = _lr_set(tmp_path / "lr", rows)
    stats = make_pairs(hr_dir, lr_dir, tmp_path / "pairs", ShardConfig(patch_size=32, patches_per_pair=2, workers=1), seed=0, scale=4)
    assert (stats.used, stats.skipped, stats.train_patches, stats.val_patches) == (1, 2, 2, 0)
    skipped = pd.read_csv(tmp_path / "pairs" / "skipped.csv")
    reasons = dict(zip(skipped["lr_key"], skipped["reason"]))
    assert reasons[f"{train_key}_v1"] == "size mismatch: LR 16x15 x 4 = 64x60 != HR 64x64"
    assert reasons["ghost_v0"].startswith("no HR tile 'ghost'")
    report = (tmp_path / "pairs" / "report.md").read_text()
    assert "size mismatch: LR 16x15" in report and "| train | 1 | 2 |" in report
    assert (tmp_path / "pairs" / "pairs.png").stat().st_size > 0


def test_nothing_usable_is_an_error(sets, tmp_path):
    hr_dir, lr_dir, _ = sets
    with pytest.raises(ValueError, match="no usable pair among 16 LR tiles .*smaller than the LR patch 32x32"):
        make_pairs(hr_dir, lr_dir, tmp_path / "p", ShardConfig(patch_size=128, workers=1), seed=0, scale=4)
    with pytest.raises(ValueError, match=r"shard.patch_size must be a multiple of scale \(4\), got 30"):
        make_pairs(hr_dir, lr_dir, tmp_path / "p", ShardConfig(patch_size=30, workers=1), seed=0, scale=4)


def test_split_disagreements_and_leaks_are_errors(sets, tmp_path):
    hr_dir, _, _ = sets
    hr = pd.read_parquet(hr_dir / "index.parquet")
    key = hr.loc[hr["split"] == "train", "key"].iloc[0]
    lr_img = np.zeros((16, 16, 3), np.uint8)
    lr_dir = _lr_set(tmp_path / "lr", [(f"{key}_v0", key, lr_img, "val")])
    with pytest.raises(ValueError, match=f"sample '{key}_v0' is in split 'val' but its HR tile '{key}' is in 'train'"):
        make_pairs(hr_dir, lr_dir, tmp_path / "p", CFG, seed=0, scale=4)
    # An LR set that brings its own HR tiles: one photo's tiles in both splits is refused.
    hr_img = np.zeros((64, 64, 3), np.uint8)
    rows = [("a_v0", "photo-a_t0", lr_img, "train", hr_img), ("b_v0", "photo-a_t1", lr_img, "val", hr_img)]
    own = _lr_set(tmp_path / "own", rows)
    index = pd.read_parquet(own / "index.parquet").assign(source_sha256="same-photo")
    index.to_parquet(own / "index.parquet")
    with pytest.raises(ValueError, match="has tiles in both train and val"):
        make_pairs(None, own, tmp_path / "p2", CFG, seed=0, scale=4)


def test_lr_set_with_its_own_hr_needs_no_hr_set(tmp_path):
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (67, 66, 3), dtype=np.uint8)  # not a multiple of 4: cropped top-left to 64x64
    lr = cv2.resize(hr[:64, :64], (16, 16), interpolation=cv2.INTER_AREA)
    own = _lr_set(tmp_path / "lr", [("img-a_v0", "img-a", lr, "train", hr), ("img-b_v0", "img-b", lr, "val", hr)])
    stats = make_pairs(None, own, tmp_path / "p", CFG, seed=0, scale=4)
    assert (stats.train_patches, stats.val_patches) == (3, 2)
    for _, members in ShardSet(tmp_path / "p" / "train").iter_samples():
        patch = decode_png(members["hr.png"])
        assert np.array_equal(cv2.resize(patch, (8, 8), interpolation=cv2.INTER_AREA), decode_png(members["lr.png"]))
    with pytest.raises(ValueError, match="carries no hr.png members"):
        make_pairs(None, _lr_set(tmp_path / "bare", [("x_v0", "x", lr, "train")]), tmp_path / "q", CFG, seed=0, scale=4)


def test_corrupt_lr_png_names_shard_and_key(sets, tmp_path):
    hr_dir, _, _ = sets
    key = pd.read_parquet(hr_dir / "index.parquet")["key"].iloc[0]
    samples = [Sample(f"{key}_v0", {"lr.png": b"\x89PNG\r\n\x1a\nnot really", "json": b"{}"},
                      {"hr_key": key, "split": "train", "height": 16, "width": 16})]
    write_shard_set(tmp_path / "lr", samples, set_name="lr")
    with pytest.raises(ShardError, match=rf"lr-000000.tar: sample '{key}_v0': lr.png failed to decode"):
        make_pairs(hr_dir, tmp_path / "lr", tmp_path / "p", CFG, seed=0, scale=4)


def test_official_webdataset_iterates_pairs(sets):
    import webdataset as wds

    _, _, pairs = sets
    index = pd.read_parquet(pairs / "train" / "index.parquet")
    urls = [str(pairs / "train" / s) for s in sorted(index["shard"].unique())]
    got = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert [g["__key__"] for g in got] == list(index["key"])
    assert got[0]["hr.png"].shape == (32, 32, 3) and got[0]["lr.png"].shape == (8, 8, 3)
    assert got[0]["json"]["key"] == got[0]["__key__"]  # .decode() parses json members


def test_stage_reads_its_params(sets, tmp_path, monkeypatch):
    from stages.shard import main

    hr, lr, pairs = sets
    params = {"seed": 0, "scale": 4, "paths": {"hr": str(hr), "lr": str(lr), "pairs": str(tmp_path / "out")},
              "shard": {"patch_size": 32, "patches_per_pair": 3, "val_patches_per_pair": 2, "min_shards": 2, "workers": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    main(["--params", str(tmp_path / "params.yaml")])
    assert _digests(tmp_path / "out") == _digests(pairs)
    params["shard"]["patch_size"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match="shard.patch_size: expected 8 <= value, got 4"):
        main(["--params", str(tmp_path / "params.yaml")])


def test_byte_identical_whatever_the_plan_reads_at_a_time(sets, tmp_path, monkeypatch):
    """The plan reads the LR index a chunk at a time and writes each pair's index columns to a file
    (read back by offset): chunks of 3 rows give the pairs a whole-index read gives."""
    import pipeline.shard.pairs as pairs_module
    import pipeline.shard.plan as plan_module
    hr, lr, pairs = sets
    monkeypatch.setattr(plan_module, "CHUNK", 3)
    monkeypatch.setattr(pairs_module, "CHUNK", 3)
    make_pairs(hr, lr, tmp_path / "p", CFG, seed=0, scale=4)
    assert _digests(tmp_path / "p") == _digests(pairs)


def test_an_lr_index_out_of_key_order_is_refused(sets, tmp_path):
    import shutil

    hr, lr, _ = sets
    shutil.copytree(lr, tmp_path / "lr")
    reversed_index = ShardSet(lr).index.iloc[::-1].reset_index(drop=True)
    reversed_index.to_parquet(tmp_path / "lr" / "index.parquet", index=False, compression="zstd")
    with pytest.raises(ValueError, match="not in sorted key order"):
        make_pairs(hr, tmp_path / "lr", tmp_path / "p", CFG, seed=0, scale=4)
