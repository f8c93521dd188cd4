"""train_net / train_gan params: recipes per phase, key-by-key overrides, one-line errors naming the key."""
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_params, parse_params
from pipeline.params import ParamsError
from pipeline.train.checkpoint import OPERATIONAL, config_hash, describe_change
from pipeline.train.config import RECIPES, TrainConfig, merge

X4PLUS_FILE = Path(__file__).resolve().parents[1] / "pipeline" / "train" / "realesrgan-x4plus.yaml"


def test_realesrgan_gan_phase_is_the_published_recipe():
    cfg = TrainConfig.for_phase("gan", None, "train_gan")
    assert (cfg.recipe, cfg.phase) == ("realesrgan", "gan")
    assert cfg.generator.name == "rrdbnet"
    assert cfg.generator.opts == {"num_feat": 64, "num_block": 23, "num_grow_ch": 32}
    assert cfg.discriminator.name == "unet_sn" and cfg.discriminator.opts["skip_connection"] is True
    assert (cfg.pixel_loss.kind, cfg.pixel_loss.weight, cfg.pixel_loss.target_usm) == ("l1", 1.0, True)
    assert (cfg.perceptual.weight, cfg.perceptual.target_usm) == (1.0, True)
    assert cfg.perceptual.layer_weights == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0,
                                            "conv5_4": 1.0}
    assert (cfg.gan.kind, cfg.gan.weight, cfg.gan.target_usm) == ("vanilla", 0.1, False)
    assert (cfg.lr_g, cfg.lr_d, cfg.betas, cfg.ema_decay) == (1e-4, 1e-4, (0.9, 0.99), 0.999)
    assert (cfg.iterations, cfg.batch_size, cfg.pair_pool_size) == (400_000, 12, 180)


def test_net_phase_is_pixel_loss_only():
    cfg = TrainConfig.for_phase("net", {}, "train_net")
    assert cfg.phase == "net" and cfg.lr_g == 2e-4 and cfg.iterations == 1_000_000
    assert cfg.perceptual.weight == 0 and cfg.gan.weight == 0 and cfg.pixel_loss.weight == 1.0


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("phase", ["net", "gan"])
def test_every_recipe_builds_for_both_phases(recipe, phase):
    cfg = TrainConfig.for_phase(phase, {"recipe": recipe}, f"train_{phase}")
    assert cfg.recipe == recipe
    if phase == "gan":
        assert cfg.gan.weight > 0


def test_recipe_specifics():
    esrgan = TrainConfig.for_phase("gan", {"recipe": "esrgan"}, "train_gan")
    assert (esrgan.gan.kind, esrgan.gan.weight, esrgan.pixel_loss.weight) == ("ragan", 5e-3, 1e-2)
    assert esrgan.discriminator.name == "vgg"
    srgan = TrainConfig.for_phase("gan", {"recipe": "srgan"}, "train_gan")
    assert (srgan.generator.name, srgan.gan.weight, srgan.perceptual.layer_weights) == ("srresnet", 1e-3, {"relu5_4": 1.0})
    pix = TrainConfig.for_phase("gan", {"recipe": "pix2pix"}, "train_gan")
    assert pix.gan.conditional and pix.discriminator.name == "patchgan" and pix.pixel_loss.weight == 100.0


def test_user_keys_replace_the_recipe_one_by_one():
    cfg = TrainConfig.for_phase("gan", {"gan": {"weight": 0.05}, "generator": {"opts": {"num_block": 6}}},
                                "train_gan")
    assert (cfg.gan.kind, cfg.gan.weight) == ("vanilla", 0.05)  # kind kept from the recipe
    assert cfg.generator.opts == {"num_block": 6}  # opts are replaced whole: defaults of the class fill in
    other = TrainConfig.for_phase("net", {"generator": {"name": "srvgg"}}, "train_net")
    assert other.generator.name == "srvgg" and other.generator.opts == {}  # rrdbnet opts dropped


def test_merge_merges_sections_and_replaces_values_whole():
    base = {"milestones": [1, 2, 3], "perceptual": {"layer_weights": {"a": 1.0, "b": 2.0}, "weight": 1.0},
            "generator": {"name": "rrdbnet", "opts": {"num_feat": 64, "num_block": 23}}}
    out = merge(TrainConfig, base, {"milestones": [5], "perceptual": {"layer_weights": {"c": 1.0}},
                                    "generator": {"opts": {"num_block": 6}}, "gan": None})
    assert out == {"milestones": [5], "perceptual": {"layer_weights": {"c": 1.0}, "weight": 1.0},
                   "generator": {"name": "rrdbnet", "opts": {"num_block": 6}}}  # an empty section: no change
    assert base["generator"]["opts"] == {"num_feat": 64, "num_block": 23}  # the recipe is not touched


# sha256 of the checkpoint identity's config part (json.dumps(sort_keys=True)) before the move to pydantic:
# a checkpoint written before it must resume after it, so these may change only on purpose.
CONFIG_HASHES = {
    "net": "d555f0a0c718414118d3992058b245dbfd4abd6978d5befa0a2ad5e70d50a589",
    "gan": "ca6e25a072139ff5e34816d33d6c11828cfe84e436d176b389c1d331d0df6e6b",
    "demo_net": "15cbdd474a31bc816b44138081e7e1c485d130ef61c283f3666511952ae71668",
    "demo_gan": "0152615715175452fb1581ecddaa68e4d8885009a1a19fd9d6ba11cd42df3eee",
}


def test_config_dicts_are_pinned_so_checkpoints_resume():
    import hashlib
    import json
    demo = load_params(Path(__file__).resolve().parents[1] / "params.yaml", sections=("train_net", "train_gan"))
    dicts = {"net": TrainConfig.for_phase("net", None, "train_net").to_dict(),
             "gan": TrainConfig.for_phase("gan", None, "train_gan").to_dict(),
             "demo_net": demo.train_net.to_dict(), "demo_gan": demo.train_gan.to_dict()}
    got = {k: hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest() for k, d in dicts.items()}
    assert got == CONFIG_HASHES
    assert list(dicts["net"])[:3] == ["recipe", "phase", "generator"] and dicts["net"]["betas"] == [0.9, 0.99]


@pytest.mark.parametrize("phase,section,message", [
    ("net", {"lr": 1e-3}, "train_net.lr: unknown key"),
    ("net", {"recipe": "esrgan2"}, "train_net.recipe: expected one of"),
    ("net", {"lr_g": -1}, "train_net.lr_g: expected 0.0 < value"),
    ("net", {"gan": {"weight": 0.1}}, "train_net.gan: not used by the net phase"),
    ("net", {"phase": "gan"}, "train_net.phase: expected 'net'"),
    ("net", {"generator": {"opts": {"num_feats": 8}}}, "train_net.generator.opts: unknown option 'num_feats'"),
    ("net", {"generator": {"name": "rrdb"}}, "train_net.generator.name: expected one of"),
    ("net", {"batch_size": 7}, "train_net.pair_pool_size: expected 0 or a multiple of batch_size (7)"),
    ("net", {"milestones": [300, 200]}, "train_net.milestones: expected increasing positive steps"),
    ("net", {"pixel_loss": {"weight": 0}}, "train_net.pixel_loss.weight: expected > 0"),
    ("net", {"amp": "fp16"}, "train_net.amp: expected one of ['auto', 'off', 'bf16']"),
    ("gan", {"gan": {"kind": "hinge", "label_smoothing": 0.1}}, "train_gan.gan.label_smoothing: applies to kind"),
    ("gan", {"gan": {"kind": "wgan-gp2"}}, "train_gan.gan.kind: expected one of"),
    ("gan", {"discriminator": {"name": "vgg", "opts": {"input_size": 96}}},
     "train_gan.discriminator.opts: vgg discriminator input_size must be 128 or 256"),
    ("gan", {"recipe": "pix2pix", "discriminator": {"opts": {"num_in_ch": 3}}},
     "train_gan.discriminator.opts.num_in_ch: expected 6 with gan.conditional"),
    ("gan", {"ema_decay": 1.0}, "train_gan.ema_decay: expected 0.0 <= value < 1.0"),
])
def test_bad_config_is_one_line_naming_the_key(phase, section, message):
    with pytest.raises(ParamsError) as err:
        TrainConfig.for_phase(phase, section, f"train_{phase}")
    text = str(err.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_params_file_sections_go_through_for_phase(tmp_path):
    data = {"train_net": {"iterations": 10}, "train_gan": {"recipe": "esrgan", "iterations": 20}}
    params = parse_params(data, sections=("train_net", "train_gan"))
    assert params.train_net.phase == "net" and params.train_net.iterations == 10
    assert params.train_gan.phase == "gan" and params.train_gan.gan.kind == "ragan"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({"train_gan": {"gan": {"wieght": 1}}}))
    with pytest.raises(ParamsError, match=r"params.yaml: train_gan.gan.wieght: unknown key"):
        load_params(bad, sections=("train_gan",))


def test_full_scale_params_file_is_real_esrgan_x4plus():
    params = load_params(X4PLUS_FILE, sections=("seed", "scale", "paths", "train_net", "train_gan"))
    net, gan = params.train_net, params.train_gan
    assert net.generator.opts == {"num_feat": 64, "num_block": 23, "num_grow_ch": 32}
    assert (net.iterations, net.lr_g, net.batch_size) == (1_000_000, 2e-4, 12)
    assert (gan.iterations, gan.lr_g, gan.lr_d, gan.perceptual.weight, gan.gan.weight) == (400_000, 1e-4, 1e-4, 1.0, 0.1)


def test_config_hash_ignores_operational_keys_only():
    base = TrainConfig.for_phase("net", {}, "train_net").to_dict()

    def ident(cfg):
        return {"config": {k: v for k, v in cfg.items() if k not in OPERATIONAL}, "seed": 0}

    longer = {**base, "iterations": base["iterations"] * 2, "log_every": 7}
    assert config_hash(ident(base)) == config_hash(ident(longer))
    faster = {**base, "lr_g": 1e-3}
    assert config_hash(ident(base)) != config_hash(ident(faster))
    assert describe_change(ident(base), ident(faster)) == "config.lr_g: 0.0002 -> 0.001"
