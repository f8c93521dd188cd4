"""#19 §3, the mode-collapse remedies, each trained a few steps on tiny nets (CPU): RMSProp for the WGAN
critic, the pool of past fakes (and its resume), the minibatch standard-deviation layer, one-sided label
smoothing; srgan/esrgan with a stand-in VGG19 (hash-checked); pix2pix at scale 1; compile with unet_sn and
wgan-gp."""
import hashlib
import json
from pathlib import Path

import pytest
import torch
import torchvision

from pipeline.config import EvaluateConfig, ShardConfig
from pipeline.data.synthetic import write_synthetic_sets
from pipeline.degrade.config import DegradeConfig
from pipeline.degrade.run import degrade_set
from pipeline.evaluate.run import evaluate
from pipeline.models import build_discriminator
from pipeline.models.layers import MinibatchStdDev, minibatch_stddev
from pipeline.params import ParamsError
from pipeline.shard.pairs import make_pairs
from pipeline.train import TrainConfig
from pipeline.train.loop import train
from pipeline.train.pool import ImagePool
from pipeline.train.steps import has_spectral_norm
from test_train import _assert_same_state, _gan, _latest, net_export, pairs, pairs128  # noqa: F401 - fixtures

TINY_PATCHGAN = {"name": "patchgan", "opts": {"num_feat": 4, "n_layers": 2, "norm": "none"}}
TINY_DCGAN = {"name": "dcgan", "opts": {"num_feat": 4, "n_layers": 2, "norm": "none"}}


def _train_gan(cfg: TrainConfig, pairs_dir: Path, out: Path, init: Path) -> dict:
    return train(cfg, pairs_dir=pairs_dir, out_dir=out, scale=4, seed=0, phase="gan", init_from=init)


def _live(out: Path) -> dict:
    return json.loads((out / "live" / "metrics.json").read_text())["train"]


# ---- RMSProp for the WGAN critic ---------------------------------------------------------------

def test_wgan_kind_defaults_to_the_papers_rmsprop_critic_and_user_keys_win():
    wgan = TrainConfig.for_phase("gan", {"gan": {"kind": "wgan"}}, "train_gan")
    assert (wgan.optim_d.name, wgan.lr_d) == ("rmsprop", 5e-5)
    assert TrainConfig.for_phase("gan", {}, "train_gan").optim_d.name == "adam"  # every other kind: Adam
    assert TrainConfig.for_phase("gan", {"gan": {"kind": "wgan-gp"}}, "train_gan").optim_d.name == "adam"
    mine = TrainConfig.for_phase("gan", {"gan": {"kind": "wgan"}, "optim_d": {"name": "adam"}, "lr_d": 1e-4},
                                 "train_gan")
    assert (mine.optim_d.name, mine.lr_d) == ("adam", 1e-4)
    with pytest.raises(ParamsError, match=r"train_gan.optim_d.name"):
        TrainConfig.for_phase("gan", {"optim_d": {"name": "sgd"}}, "train_gan")
    with pytest.raises(ParamsError, match=r"train_net.optim_d: not used by the net phase"):
        TrainConfig.for_phase("net", {"optim_d": {"name": "rmsprop"}}, "train_net")


def test_wgan_critic_trains_with_rmsprop_and_clipped_weights(pairs, net_export, tmp_path):
    out = tmp_path / "wgan"
    report = _train_gan(_gan(iterations=3, gan={"kind": "wgan", "weight": 0.1}, discriminator=TINY_DCGAN,
                             pair_pool_size=0), pairs, out, net_export)
    assert report["skipped_steps"] == 0
    ckpt = _latest(out)
    d_state, g_state = ckpt["optim_d"]["state"].values(), ckpt["optim_g"]["state"].values()
    assert all("square_avg" in s and "exp_avg" not in s for s in d_state)  # RMSProp's state, not Adam's
    assert all("exp_avg" in s for s in g_state)                             # G keeps Adam
    assert ckpt["optim_d"]["param_groups"][0]["lr"] == 5e-5 and ckpt["optim_d"]["param_groups"][0]["alpha"] == 0.99
    assert max(v.abs().max().item() for k, v in ckpt["net_d"].items() if k.endswith("weight")) <= 0.01
    assert all(torch.isfinite(torch.tensor(v)) for k, v in _live(out).items() if k in ("d_loss", "g_gan"))


# ---- the pool of past fakes -----------------------------------------------------------------------

def _ids(batch: torch.Tensor) -> list[int]:
    return [int(v) for v in batch[:, 0, 0, 0]]


def test_image_pool_returns_past_fakes_at_half_the_rate_once_full():
    pool = ImagePool(50, seed=0)
    first = torch.arange(50, dtype=torch.float32).view(50, 1, 1, 1).expand(50, 3, 4, 4)
    assert torch.equal(pool(first), first)  # filling: every image comes back as it is, and is stored
    fresh, old, stored = 0, 0, set(range(50))
    for step in range(100):  # 100 batches of 10 images with new ids
        ids = torch.arange(10, dtype=torch.float32) + 1000 + 10 * step
        out = _ids(pool(ids.view(10, 1, 1, 1).expand(10, 3, 4, 4)))
        for new, got in zip(_ids(ids.view(10, 1, 1, 1)), out):
            if got == new:
                fresh += 1
            else:
                assert got in stored  # a past fake, handed out once and replaced by the new one
                stored.remove(got)
                old += 1
            stored.add(new)
    assert old + fresh == 1000 and 0.45 < old / 1000 < 0.55, old
    again = ImagePool(50, seed=0)
    again(first)
    twin = ImagePool(50, seed=0)
    twin(first)
    x = torch.rand(8, 3, 4, 4)
    assert torch.equal(again(x), twin(x))  # seeded: the same draws
    assert ImagePool(0)(x) is x            # off: pass-through


def test_image_pool_state_round_trip_continues_the_same_draws():
    a = ImagePool(6, seed=3)
    for _ in range(3):
        a(torch.rand(4, 3, 8, 8))
    b = ImagePool(6, seed=99)
    b.load_state_dict(a.state_dict(), torch.device("cpu"))
    x = torch.rand(4, 3, 8, 8)
    assert torch.equal(a(x), b(x)) and torch.equal(a.images, b.images)
    a(torch.rand(4, 3, 16, 16))  # another patch size empties the pool first
    assert a.count == 4


def test_fake_pool_trains_and_a_resumed_run_equals_an_uninterrupted_one(pairs, net_export, tmp_path):
    def run(out: Path, iterations: int, pool: int = 8) -> None:
        _train_gan(_gan(iterations=iterations, checkpoint_every=2, fake_pool_size=pool, pair_pool_size=0),
                   pairs, out, net_export)
    straight, killed, without = tmp_path / "straight", tmp_path / "killed", tmp_path / "without"
    run(straight, 4)
    run(killed, 2)  # the pool (8 fakes, batch 4) is full here: the resumed steps draw from the restored one
    run(killed, 4)
    run(without, 4, pool=0)
    a, b, c = _latest(straight), _latest(killed), _latest(without)
    for key in ("params", "params_ema", "net_d", "optim_d"):
        _assert_same_state(a[key], b[key], key)
    pa, pb = a["ranks"][0]["fake_pool"], b["ranks"][0]["fake_pool"]
    assert pa["count"] == 8 and torch.equal(pa["images"], pb["images"])
    assert torch.equal(pa["generator"], pb["generator"])
    assert "fake_pool" not in c["ranks"][0]  # off: the checkpoint is as before
    assert any(not torch.equal(a["net_d"][k], c["net_d"][k]) for k in a["net_d"])  # D saw past fakes
    assert all(torch.isfinite(v).all() for v in a["net_d"].values())


# ---- minibatch standard deviation -----------------------------------------------------------------

def test_minibatch_stddev_adds_one_channel_that_measures_the_batchs_variety():
    varied = torch.rand(4, 5, 6, 6)
    collapsed = varied[:1].expand(4, 5, 6, 6)
    out = minibatch_stddev(varied)
    assert out.shape == (4, 6, 6, 6) and torch.equal(out[:, :5], varied)
    assert torch.allclose(minibatch_stddev(collapsed)[:, 5], torch.full((4, 6, 6), 1e-4))  # sqrt(eps)
    expected = varied.var(dim=0, unbiased=False).add(1e-8).sqrt().mean()
    assert torch.allclose(out[:, 5], expected.expand(4, 6, 6))
    six = minibatch_stddev(torch.rand(6, 2, 3, 3))  # groups of 3 (the largest divisor of 6 up to 4): 2 values
    assert six[:, 2, 0, 0].unique().numel() == 2 and torch.equal(six[0, 2], six[2, 2])
    assert MinibatchStdDev().state_dict() == {}


@pytest.mark.parametrize("name,opts,size", [
    ("vgg", {"num_feat": 4, "input_size": 128}, 128),
    ("patchgan", {"num_feat": 4, "n_layers": 2}, 32),
    ("unet_sn", {"num_feat": 4}, 32),
    ("dcgan", {"num_feat": 4, "n_layers": 2}, 32),
])
def test_minibatch_std_lets_d_tell_a_collapsed_batch_from_a_varied_one(name, opts, size):
    torch.manual_seed(0)
    varied = torch.rand(4, 3, size, size)
    collapsed = varied[:1].expand(4, 3, size, size).contiguous()
    for mbstd in (False, True):
        net = build_discriminator(name, **opts, minibatch_std=mbstd).eval()  # eval: batch norm uses running stats
        with torch.no_grad():
            same = torch.equal(net(varied)[0], net(collapsed)[0])  # image 0 is the same in both batches
        assert same is (not mbstd), f"{name} minibatch_std={mbstd}"


def test_minibatch_std_discriminators_train(pairs, pairs128, net_export, tmp_path):
    for disc, data in ((dict(TINY_PATCHGAN, opts={**TINY_PATCHGAN["opts"], "minibatch_std": True}), pairs),
                       ({"name": "vgg", "opts": {"num_feat": 4, "input_size": 128, "minibatch_std": True}}, pairs128)):
        out = tmp_path / disc["name"]
        report = _train_gan(_gan(iterations=2, discriminator=disc, pair_pool_size=0), data, out, net_export)
        assert report["skipped_steps"] == 0
        assert {"d_loss", "g_gan"} <= set(_live(out))
        net_d = _latest(out)["net_d"]  # the conv after the std layer takes one more channel: 2·feat + 1, 8·feat + 1
        first, channels = ("model.5.weight", 9) if disc["name"] == "patchgan" else ("conv4_0.weight", 33)
        assert net_d[first].shape[1] == channels


# ---- one-sided label smoothing in a run -------------------------------------------------------------

def test_label_smoothing_changes_ds_update_only(pairs, net_export, tmp_path):
    ckpts = {}
    for s in (0.0, 0.1):
        out = tmp_path / f"s{s}"
        _train_gan(_gan(iterations=1, gan={"kind": "vanilla", "weight": 0.1, "label_smoothing": s},
                        pair_pool_size=0), pairs, out, net_export)
        ckpts[s] = _latest(out)
        assert all(torch.isfinite(torch.tensor(v)) for v in _live(out).values() if isinstance(v, float))
    a, b = ckpts[0.0], ckpts[0.1]
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])  # G steps before D
    assert any(not torch.equal(a["net_d"][k], b["net_d"][k]) for k in a["net_d"])  # D's real target is 0.9


# ---- srgan and esrgan with a stand-in VGG19 ---------------------------------------------------------

@pytest.fixture(scope="module")
def stand_in_vgg(tmp_path_factory) -> tuple[Path, str]:
    """torchvision's VGG19 `features` with random weights (the tensors the loss reads; the real file also
    holds the classifier) and the file's sha256, which training checks as it checks the real file's."""
    torch.manual_seed(0)
    features = torchvision.models.vgg19(weights=None).features
    path = tmp_path_factory.mktemp("vgg") / "vgg19-stand-in.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("recipe,generator", [
    ("srgan", {"name": "srresnet", "opts": {"num_feat": 8, "num_block": 1}}),
    ("esrgan", {"name": "rrdbnet", "opts": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}}),
])
def test_srgan_and_esrgan_recipes_train_with_a_hash_checked_stand_in_vgg(recipe, generator, pairs128, stand_in_vgg,
                                                                         tmp_path):
    vgg, sha = stand_in_vgg
    quiet = {"generator": generator, "batch_size": 2, "log_every": 1, "val_every": 0, "milestones": [1000]}
    train(TrainConfig.for_phase("net", {"recipe": recipe, **quiet, "iterations": 1}, "train_net"),
          pairs_dir=pairs128, out_dir=tmp_path / "net", scale=4, seed=0, phase="net")

    def gan(**perceptual) -> TrainConfig:
        return TrainConfig.for_phase("gan", {"recipe": recipe, **quiet, "iterations": 2,
                                             "discriminator": {"opts": {"num_feat": 4, "input_size": 128}},
                                             "perceptual": {"weights": str(vgg), **perceptual}}, "train_gan")
    init = tmp_path / "net" / "generator.pth"
    with pytest.raises(ValueError, match=r"does not match torchvision's vgg19-dcbb9e9d.pth"):
        _train_gan(gan(), pairs128, tmp_path / "refused", init)       # the stand-in is not torchvision's file
    with pytest.raises(ValueError, match=r"is not the expected 0{64}"):
        _train_gan(gan(sha256="0" * 64), pairs128, tmp_path / "wrong", init)
    out = tmp_path / "gan"
    report = _train_gan(gan(sha256=sha), pairs128, out, init)
    assert report["skipped_steps"] == 0
    live = _live(out)
    assert {"percep", "g_gan", "d_loss"} <= set(live) and live["percep"] > 0
    assert all(torch.isfinite(torch.tensor(live[k])) for k in ("percep", "g_gan", "d_loss", "g_total"))
    ckpt = _latest(out)
    assert ckpt["config"]["perceptual"]["sha256"] == sha and ckpt["config"]["recipe"] == recipe


# ---- pix2pix at scale 1 (same-size restoration) ------------------------------------------------------

def test_pix2pix_restores_at_scale_1_through_degrade_shard_train_evaluate(tmp_path):
    hr, _ = write_synthetic_sets(tmp_path / "syn", photos=3, val_photos=1, tiles_per_photo=2, tile=64, scale=1,
                                 variants=1)
    degrade_set(hr, tmp_path / "lr", DegradeConfig.model_validate({"workers": 1}), seed=0, scale=1, progress=False)
    stats = make_pairs(hr, tmp_path / "lr", tmp_path / "pairs", ShardConfig.model_validate(
        {"patch_size": 32, "workers": 1, "min_shards": 1}), seed=0, scale=1)
    assert stats.train_patches > 0 and stats.val_patches > 0
    unet = {"name": "unet", "opts": {"ngf": 4, "depth": 3}}
    common = {"recipe": "pix2pix", "generator": unet, "batch_size": 2, "log_every": 1, "val_every": 2,
              "val_batches": 1, "milestones": [1000], "iterations": 2}
    net = train(TrainConfig.for_phase("net", common, "train_net"), pairs_dir=tmp_path / "pairs",
                out_dir=tmp_path / "net", scale=1, seed=0, phase="net")
    cfg = TrainConfig.for_phase("gan", {**common, "discriminator": {"opts": {"num_in_ch": 6, "num_feat": 4,
                                                                             "n_layers": 2}}}, "train_gan")
    gan = train(cfg, pairs_dir=tmp_path / "pairs", out_dir=tmp_path / "gan", scale=1, seed=0, phase="gan",
                init_from=Path(net["generator"]))
    assert gan["skipped_steps"] == 0 and torch.isfinite(torch.tensor(gan["val_psnr_y"]))
    metrics = evaluate(hr, tmp_path / "lr", {"net": net["generator"], "gan": gan["generator"]}, tmp_path / "eval",
                       EvaluateConfig.model_validate({"device": "cpu", "niqe_params": ""}), scale=1, seed=0)
    assert set(metrics) == {"bicubic", "net", "gan"}  # bicubic at scale 1: the degraded input itself
    assert all(0 < metrics[m]["psnr_y"] < 100 for m in metrics), metrics


# ---- compile with a spectral-norm D and with wgan-gp -------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("gan,disc", [
    ({"kind": "vanilla", "weight": 0.1}, {"name": "unet_sn", "opts": {"num_feat": 4}}),  # D stays uncompiled
    ({"kind": "wgan-gp", "weight": 0.1}, TINY_DCGAN),  # compiled D; the penalty runs through the plain one
])
def test_compiled_training_with_spectral_norm_and_wgan_gp(gan, disc, pairs, net_export, tmp_path):
    assert has_spectral_norm(build_discriminator(disc["name"], **disc["opts"])) is (disc["name"] == "unet_sn")
    report = _train_gan(_gan(iterations=2, compile=True, gan=gan, discriminator=disc, pair_pool_size=0),
                        pairs, tmp_path / "run", net_export)
    assert report["skipped_steps"] == 0
    assert all(torch.isfinite(torch.tensor(_live(tmp_path / "run")[k])) for k in ("d_loss", "g_gan"))
