"""Online degradation (pipeline.data.online): every draw from (seed, epoch, key), so worker counts, ranks
and resumes agree, any sample regenerates, and a killed online training run resumes exactly."""
import dataclasses
import itertools

import numpy as np
import pytest
import torch

from pipeline.data.loader import LoaderState
from pipeline.data.online import (OnlineDataset, OnlineSpec, epoch_recipe, online_batches, online_sample,
                                  train_tiles)
from pipeline.data.synthetic import write_synthetic_sets
from pipeline.degrade import apply_recipe, preset_settings, sample_recipe
from pipeline.degrade.geometry import crop_to_scale
from pipeline.io.shards import ShardSet
from pipeline.train import TrainConfig
from pipeline.train.checkpoint import load_latest
from pipeline.train.loop import train

TINY_G = {"name": "rrdbnet", "opts": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}}
TILES, PPP = 6, 2  # train tiles (3 photos x 2), windows per tile and epoch


@pytest.fixture(scope="module")
def hr_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    hr, _ = write_synthetic_sets(root, photos=4, val_photos=1, tiles_per_photo=2, tile=128, scale=4, variants=1)
    return hr


@pytest.fixture(scope="module")
def spec(hr_set):
    return OnlineSpec(hr_set, preset_settings("realesrgan-x4plus"), 4, 32, PPP)


def _take(stream, k):
    try:
        return [next(stream)[1] for _ in range(k)]
    finally:
        stream.close()


def _ids(batches):
    return [(e, t, w) for b in batches for e, t, w in zip(b["epochs"], b["tile"], b["window"])]


def _same_batches(a, b):
    assert _ids(a) == _ids(b)
    for x, y in zip(a, b):
        assert torch.equal(x["hr"], y["hr"]) and torch.equal(x["lr"], y["lr"])


def _chw(img):
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div(255)


def test_train_split_only_and_an_epoch_is_tiles_times_windows(spec, hr_set):
    shards = ShardSet(hr_set)
    rows = train_tiles(shards, spec)
    assert len(rows) == TILES and set(shards.index["split"].iloc[rows]) == {"train"}
    assert OnlineDataset(spec, seed=0, batch_size=4).n == TILES * PPP
    with pytest.raises(ValueError, match="no train tile fits a 256 px patch"):
        OnlineDataset(dataclasses.replace(spec, patch_size=256), seed=0, batch_size=4)


def test_same_batches_for_any_worker_count(spec):
    # 9 batches of 4 = 3 epochs of 12 samples; batches straddle epoch boundaries
    inline = _take(online_batches(spec, batch_size=4, workers=0, seed=3), 9)
    two = _take(online_batches(spec, batch_size=4, workers=2, seed=3), 9)
    _same_batches(inline, two)
    assert inline[0]["hr"].shape == (4, 3, 32, 32) and inline[0]["lr"].shape == (4, 3, 8, 8)
    epochs = [e for e, _, _ in _ids(inline)]
    assert epochs == sorted(epochs) and set(epochs) == {0, 1, 2}
    other_seed = _take(online_batches(spec, batch_size=4, workers=0, seed=4), 1)
    assert not torch.equal(other_seed[0]["lr"], inline[0]["lr"])


def test_a_batch_sample_is_apply_recipe_of_its_recipe_and_regenerates(spec, hr_set):
    batches = _take(online_batches(spec, batch_size=4, workers=0, seed=5), 6)
    shards = ShardSet(hr_set)
    for b in (batches[0], batches[5]):
        for i, (e, key, w) in enumerate(zip(b["epochs"], b["tile"], b["window"])):
            again = online_sample(spec, seed=5, epoch=e, key=key, window=w)
            assert torch.equal(_chw(again.lr), b["lr"][i]) and torch.equal(_chw(again.hr), b["hr"][i])
            # by hand: the public degrade API on the HR tile, the recorded window, no augmentation
            assert again.recipe == sample_recipe(spec.preset, 5, key, e, scale=4)  # degrade's variant e
            hr = crop_to_scale(shards.image_at(shards.row(key), "hr.png"), 4)
            lr = apply_recipe(hr, again.recipe)
            plain = online_sample(spec, seed=5, epoch=e, key=key, window=w, augment=False)
            (y, x), p = plain.window, 8
            assert np.array_equal(plain.lr, lr[y:y + p, x:x + p]) and np.array_equal(plain.hr, hr[4 * y:4 * y + 32,
                                                                                                  4 * x:4 * x + 32])


def test_each_epoch_draws_new_recipes_and_windows(spec, hr_set):
    keys = [str(k) for k in ShardSet(hr_set).keys]
    for key in keys[:3]:
        r0, r1 = epoch_recipe(spec, 0, 0, key), epoch_recipe(spec, 0, 1, key)
        assert r0 != r1 and r0 == epoch_recipe(spec, 0, 0, key)
    windows = {e: [online_sample(spec, seed=0, epoch=e, key=keys[0], window=w).window for w in range(PPP)]
               for e in range(3)}
    assert windows[0] != windows[1] or windows[1] != windows[2]


def test_ranks_split_each_epoch_without_overlap(spec):
    n, batch, world, steps = TILES * PPP, 2, 2, 6  # 6 steps x 4 samples = 2 epochs
    per_rank = [_ids(_take(online_batches(spec, batch_size=batch, workers=0, seed=1, rank=r, world_size=world), steps))
                for r in range(world)]
    assert not set(per_rank[0]) & set(per_rank[1])
    for epoch in (0, 1):
        seen = sorted((t, w) for ids in per_rank for e, t, w in ids if e == epoch)
        assert len(seen) == n and len(set(seen)) == n  # every (tile, window) of the epoch once
    single = _ids(_take(online_batches(spec, batch_size=batch * world, workers=0, seed=1), steps))
    merged = [x for s in range(steps) for r in range(world) for x in per_rank[r][s * batch:(s + 1) * batch]]
    assert merged == single  # the global stream does not depend on the world size


def test_stream_state_resumes_exactly(spec):
    straight = online_batches(spec, batch_size=4, workers=0, seed=2)
    first = [next(straight)[1] for _ in range(4)]
    state = straight.state
    rest = _take(straight, 3)
    assert state == LoaderState(epoch=1, samples_seen=4)
    resumed = _take(online_batches(spec, batch_size=4, workers=1, seed=2, state=LoaderState.from_dict(state.to_dict())), 3)
    _same_batches(rest, resumed)
    assert _ids(first)[-1] != _ids(resumed)[0]


def test_dali_path_equals_its_regeneration(spec):
    pytest.importorskip("nvidia.dali")
    dali = dataclasses.replace(spec, backend="dali-cpu")
    (b,) = _take(online_batches(dali, batch_size=4, workers=1, seed=0), 1)
    for i, (e, key, w) in enumerate(zip(b["epochs"], b["tile"], b["window"])):
        assert torch.equal(_chw(online_sample(dali, seed=0, epoch=e, key=key, window=w).lr), b["lr"][i])


# ---- the training loop -----------------------------------------------------------------------------------

def _net(**over) -> TrainConfig:
    return TrainConfig.for_phase("net", {"generator": TINY_G, "batch_size": 4, "pair_pool_size": 0, "online": True,
                                         "log_every": 1, "val_every": 0, "val_batches": 1, "milestones": [1000],
                                         **over}, "train_net")


def test_killed_and_resumed_online_run_equals_uninterrupted_run(spec, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    kw = dict(pairs_dir=tmp_path / "pairs", scale=4, seed=0, phase="net", online=spec)
    train(_net(iterations=6, checkpoint_every=3), out_dir=straight, **kw)
    train(_net(iterations=3, checkpoint_every=3), out_dir=killed, **kw)
    report = train(_net(iterations=6, checkpoint_every=3), out_dir=killed, **kw)
    assert report["start_step"] == 3
    a, b = load_latest(straight / "ckpt")[0], load_latest(killed / "ckpt")[0]
    assert a["loader"] == b["loader"] == {"epoch": 2, "samples_seen": 0}  # 6 steps x 4 = 2 epochs of 12
    for key in ("params", "params_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert a["run"]["online"]["patches_per_tile"] == PPP and a["run"]["online"]["backend"] == "reference"


def test_online_config_and_spec_must_agree(spec, tmp_path):
    with pytest.raises(ValueError, match="online is True but no online spec"):
        train(_net(iterations=1), pairs_dir=tmp_path, out_dir=tmp_path / "o", scale=4, seed=0, phase="net")
    offline = TrainConfig.for_phase("net", {"generator": TINY_G}, "train_net")
    assert offline.online is False
    with pytest.raises(ValueError, match="online is False but an online spec"):
        train(offline, pairs_dir=tmp_path, out_dir=tmp_path / "o", scale=4, seed=0, phase="net", online=spec)


def test_another_preset_starts_a_fresh_run(spec, tmp_path, capsys):
    kw = dict(pairs_dir=tmp_path / "pairs", out_dir=tmp_path / "run", scale=4, seed=0, phase="net")
    train(_net(iterations=2, checkpoint_every=2), online=spec, **kw)
    bsrgan = dataclasses.replace(spec, preset=preset_settings("bsrgan"))
    report = train(_net(iterations=3, checkpoint_every=3), online=bsrgan, **kw)
    assert report["start_step"] == 0 and "online.preset" in capsys.readouterr().out


def test_params_give_one_window_per_tile_and_epoch_whatever_the_shard_setting(hr_set):
    """Windows of one tile share its degradation; several in a row would make a batch of one recipe."""
    from pipeline.config import parse_params
    from pipeline.data.online import online_spec
    p = parse_params({"shard": {"patch_size": 32, "patches_per_pair": 4}}, sections=("degrade", "shard"))
    spec = online_spec(hr_set, p.degrade, p.shard, scale=4)
    assert (spec.patches_per_tile, spec.patch_size, spec.backend) == (1, 32, "reference")
    assert OnlineDataset(spec, seed=0, batch_size=4).n == TILES
