"""Model zoo: shapes, public key layouts and parameter counts, state-dict detection, errors."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models import (
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    generator_from_state_dict,
    load_generator,
)
from pipeline.models.rrdbnet import RRDBNet, checkpoint_filter_fn
from pipeline.models.srvgg import SRVGGNetCompact
from pipeline.models import DCGANDiscriminator, NLayerDiscriminator, SRResNet, UNetGenerator

TINY = {
    "rrdbnet": dict(num_feat=8, num_block=1, num_grow_ch=4),
    "srvgg": dict(num_feat=8, num_conv=2),
    "srresnet": dict(num_feat=8, num_block=1),
    "unet": dict(ngf=4, depth=3),
}
TINY_D = {  # name -> (opts, input size, expected output shape for batch 2)
    "unet_sn": (dict(num_feat=4), 32, (2, 1, 32, 32)),
    "vgg": (dict(num_feat=2, input_size=128), 128, (2, 1)),
    "patchgan": (dict(num_feat=4, n_layers=3), 32, (2, 1, 2, 2)),
    "dcgan": (dict(num_feat=4, n_layers=3), 48, (2, 1)),
}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def key_shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


# --- generators -------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_output_shape(name, scale):
    torch.manual_seed(0)
    net = build_generator(name, scale=scale, **TINY[name])
    x = torch.rand(2, 3, 12, 16)
    y = net(x)
    assert y.shape == (2, 3, 12 * scale, 16 * scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name, scale", [("rrdbnet", 8), ("srresnet", 3), ("srresnet", 8), ("srvgg", 3)])
def test_generator_other_scales(name, scale):
    net = build_generator(name, scale=scale, **TINY[name])
    assert net(torch.rand(1, 3, 4, 8)).shape == (1, 3, 4 * scale, 8 * scale)


def test_srresnet_msrresnet_variant_shapes():
    for scale in (1, 2, 3, 4):
        net = build_generator("srresnet", scale=scale, num_feat=8, num_block=2, variant="msrresnet")
        assert net(torch.rand(1, 3, 6, 5)).shape == (1, 3, 6 * scale, 5 * scale)
        assert not any("bn" in k for k in net.state_dict())


def rrdbnet_public_keys(num_block: int, scale: int = 4) -> list[str]:
    """The BasicSR / Real-ESRGAN RRDBNet state-dict keys, written out from the public layout."""
    keys = ["conv_first"]
    keys += [f"body.{b}.rdb{r}.conv{c}" for b in range(num_block) for r in (1, 2, 3) for c in range(1, 6)]
    keys += ["conv_body", "conv_up1", "conv_up2"] + (["conv_up3"] if scale == 8 else []) + ["conv_hr", "conv_last"]
    return [f"{k}.{p}" for k in keys for p in ("weight", "bias")]


def test_rrdbnet_x4plus_param_count_and_keys():
    with torch.device("meta"):  # no memory, no init: the 23-block net builds in well under a second
        net = build_generator("rrdbnet")
    # The public RealESRGAN_x4plus.pth holds 16,697,987 parameters.
    assert n_params(net) == 16_697_987
    assert list(net.state_dict()) == rrdbnet_public_keys(23)
    shapes = key_shapes(net)
    assert shapes["conv_first.weight"] == (64, 3, 3, 3)
    assert shapes["body.22.rdb3.conv5.weight"] == (64, 64 + 4 * 32, 3, 3)
    assert shapes["conv_last.weight"] == (3, 64, 3, 3)


@pytest.mark.parametrize("scale, in_ch", [(4, 3), (2, 12), (1, 48)])
def test_rrdbnet_pixel_unshuffle_input_channels(scale, in_ch):
    net = build_generator("rrdbnet", scale=scale, **TINY["rrdbnet"])
    assert net.conv_first.weight.shape[1] == in_ch


def test_rrdbnet_rejects_odd_size_for_unshuffle():
    net = build_generator("rrdbnet", scale=2, **TINY["rrdbnet"])
    with pytest.raises(ValueError, match=r"rrdbnet x2 needs H and W divisible by 2, got 5x6"):
        net(torch.rand(1, 3, 5, 6))


def test_srvgg_general_x4v3_param_count_and_keys():
    net = build_generator("srvgg", scale=4, num_feat=64, num_conv=32, act_type="prelu")
    # realesr-general-x4v3: num_in_ch=3, num_feat=64, num_conv=32, upscale=4, PReLU (64 slopes each).
    #   body.0  conv 3->64 3x3:           3*64*9 + 64   =     1,792
    #   body.1  PReLU(64):                                      64
    #   32 x (conv 64->64 3x3 + PReLU):  32*(64*64*9 + 64 + 64) = 32*36,992 = 1,183,744
    #   body.66 conv 64->3*4*4=48 3x3:    64*48*9 + 48  =    27,696
    #   total                                            = 1,213,296
    assert n_params(net) == 1_213_296
    # Keys: conv at even indices 0..66, PReLU weight at odd indices 1..65.
    expected = []
    for i in range(0, 67):
        expected += [f"body.{i}.weight", f"body.{i}.bias"] if i % 2 == 0 else [f"body.{i}.weight"]
    assert list(net.state_dict()) == expected
    assert net.state_dict()["body.66.weight"].shape == (48, 64, 3, 3)


def test_srvgg_is_residual_over_nearest_upsampling():
    net = build_generator("srvgg", scale=3, **TINY["srvgg"])
    last = net.body[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    x = torch.rand(1, 3, 5, 4)
    torch.testing.assert_close(net(x), F.interpolate(x, scale_factor=3, mode="nearest"))


def test_msrresnet_is_residual_over_bilinear_upsampling():
    net = build_generator("srresnet", scale=4, num_feat=8, num_block=1, variant="msrresnet")
    nn.init.zeros_(net.conv_last.weight)
    nn.init.zeros_(net.conv_last.bias)
    x = torch.rand(1, 3, 5, 4)
    expected = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(net(x), expected)


def test_msrresnet_keys_match_basicsr():
    net = build_generator("srresnet", scale=4, num_feat=8, num_block=2, variant="msrresnet")
    expected = ["conv_first"] + [f"body.{b}.conv{c}" for b in range(2) for c in (1, 2)]
    expected += ["upconv1", "upconv2", "conv_hr", "conv_last"]
    assert list(net.state_dict()) == [f"{k}.{p}" for k in expected for p in ("weight", "bias")]


def test_unet_scale_is_bicubic_preupsampling():
    torch.manual_seed(0)
    net_x2 = build_generator("unet", scale=2, **TINY["unet"]).eval()
    net_x1 = build_generator("unet", scale=1, **TINY["unet"]).eval()
    net_x1.load_state_dict(net_x2.state_dict(), strict=True)
    x = torch.rand(1, 3, 7, 9)
    up = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(net_x2(x), net_x1(up))


# --- discriminators ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminator_output_shape(name):
    opts, size, expected = TINY_D[name]
    net = build_discriminator(name, **opts)
    out = net(torch.rand(2, 3, size, size))
    assert out.shape == expected
    assert torch.isfinite(out).all()


def test_vgg_discriminator_256():
    net = build_discriminator("vgg", num_feat=2, input_size=256)
    assert net(torch.rand(1, 3, 256, 256)).shape == (1, 1)
    assert "conv5_1.weight" in net.state_dict() and "conv5_1.weight" not in build_discriminator(
        "vgg", num_feat=2).state_dict()


def test_vgg_discriminator_keys_match_basicsr():
    net = build_discriminator("vgg", num_feat=2)
    keys = ["conv0_0.weight", "conv0_0.bias", "conv0_1.weight", "bn0_1.weight", "bn0_1.bias",
            "bn0_1.running_mean", "bn0_1.running_var", "bn0_1.num_batches_tracked"]
    for i in range(1, 5):
        for j in (0, 1):
            keys += [f"conv{i}_{j}.weight"] + [f"bn{i}_{j}.{p}" for p in (
                "weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    keys += ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"]
    assert sorted(net.state_dict()) == sorted(keys)
    assert net.state_dict()["linear1.weight"].shape == (100, 8 * 2 * 4 * 4)


def test_unet_sn_keys_match_public():
    net = build_discriminator("unet_sn", num_feat=4)
    keys = ["conv0.weight", "conv0.bias"]
    for i in range(1, 9):
        keys += [f"conv{i}.weight_orig", f"conv{i}.weight_u", f"conv{i}.weight_v"]
    keys += ["conv9.weight", "conv9.bias"]
    assert sorted(net.state_dict()) == sorted(keys)
    assert net.state_dict()["conv3.weight_orig"].shape == (32, 16, 4, 4)


def test_dcgan_any_size_from_32():
    net = build_discriminator("dcgan", num_feat=4)
    for h, w in [(32, 32), (32, 56), (100, 64)]:
        assert net(torch.rand(2, 3, h, w)).shape == (2, 1)
    with pytest.raises(ValueError, match=r"dcgan discriminator needs inputs of at least 32x32, got 24x40"):
        net(torch.rand(1, 3, 24, 40))


def test_discriminator_input_size_errors():
    with pytest.raises(ValueError, match=r"vgg discriminator input_size must be 128 or 256, got 64"):
        build_discriminator("vgg", input_size=64)
    vgg = build_discriminator("vgg", num_feat=2)
    with pytest.raises(ValueError, match=r"built for 128x128 inputs, got 96x96"):
        vgg(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match=r"unet_sn discriminator needs H and W divisible by 8, got 20x32"):
        build_discriminator("unet_sn", num_feat=4)(torch.rand(1, 3, 20, 32))
    with pytest.raises(ValueError, match=r"patchgan with n_layers=3 needs inputs of at least 24x24, got 16x64"):
        build_discriminator("patchgan", num_feat=4)(torch.rand(1, 3, 16, 64))


# --- state dicts --------------------------------------------------------------------------------


def _round_trip(build, x):
    torch.manual_seed(0)
    net_a = build().eval()
    torch.manual_seed(1)
    net_b = build().eval()
    with torch.no_grad():
        assert not torch.equal(net_a(x), net_b(x))
        net_b.load_state_dict(net_a.state_dict(), strict=True)
        torch.testing.assert_close(net_b(x), net_a(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_state_dict_round_trip(name):
    _round_trip(lambda: build_generator(name, scale=2, **TINY[name]), torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminator_state_dict_round_trip(name):
    opts, size, _ = TINY_D[name]
    _round_trip(lambda: build_discriminator(name, **opts), torch.rand(2, 3, size, size))


@pytest.mark.parametrize("name, scale, opts", [
    ("rrdbnet", 4, dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, num_grow_ch=4)),
    ("rrdbnet", 2, dict(num_in_ch=3, num_out_ch=3, num_feat=12, num_block=1, num_grow_ch=6)),
    ("rrdbnet", 1, dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_block=2, num_grow_ch=2)),
    ("rrdbnet", 8, dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_block=1, num_grow_ch=2)),
    ("rrdbnet", 4, dict(num_in_ch=1, num_out_ch=1, num_feat=4, num_block=2, num_grow_ch=2)),
    ("srvgg", 4, dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, act_type="prelu")),
    ("srvgg", 2, dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=1, act_type="prelu")),
    ("srvgg", 3, dict(num_in_ch=1, num_out_ch=1, num_feat=4, num_conv=0, act_type="leakyrelu")),
    ("srresnet", 4, dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, variant="srgan")),
    ("srresnet", 1, dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, variant="srgan")),
    ("srresnet", 3, dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_block=3, variant="msrresnet")),
])
def test_generator_from_state_dict_infers_hyperparameters(name, scale, opts):
    net = build_generator(name, scale=scale, **opts)
    found = generator_from_state_dict(net.state_dict())
    assert found == (name, opts, scale)
    rebuilt = build_generator(found[0], scale=found[2], **found[1])
    assert key_shapes(rebuilt) == key_shapes(net)


def test_generator_from_public_x4plus_shapes():
    with torch.device("meta"):
        state = RRDBNet().state_dict()
    assert generator_from_state_dict({"params_ema": state}) == (
        "rrdbnet", dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32), 4)


def test_load_generator_unwraps_checkpoint():
    torch.manual_seed(0)
    net = build_generator("srvgg", scale=2, **TINY["srvgg"]).eval()
    other = build_generator("srvgg", scale=2, **TINY["srvgg"]).state_dict()
    ema = {f"module.{k}": v for k, v in net.state_dict().items()}  # DDP-style prefix
    loaded, scale = load_generator({"params": other, "params_ema": ema, "step": 10})
    x = torch.rand(1, 3, 6, 6)
    assert scale == 2 and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


# The old ESRGAN layout (a flattened nn.Sequential: conv, ShortcutBlock(sub), then per x2 stage
# (Upsample, conv, act), then HR_conv0, act, HR_conv1), written out independently of the module's table.
def to_old_esrgan(state: dict[str, torch.Tensor], num_block: int, scale: int = 4) -> dict[str, torch.Tensor]:
    top = {"conv_first": "model.0", "conv_body": f"model.1.sub.{num_block}", "conv_up1": "model.3",
           "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    if scale == 8:
        top.update(conv_up3="model.9", conv_hr="model.11", conv_last="model.13")
    out = {}
    for key, value in state.items():
        prefix, kind = key.rsplit(".", 1)
        if prefix in top:
            out[f"{top[prefix]}.{kind}"] = value
        else:
            b, r, c = re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)", prefix).groups()
            out[f"model.1.sub.{b}.RDB{r}.conv{c}.0.{kind}"] = value
    return out


@pytest.mark.parametrize("scale", [4, 8])
def test_old_esrgan_keys_are_mapped(scale):
    torch.manual_seed(0)
    net = build_generator("rrdbnet", scale=scale, num_feat=8, num_block=2, num_grow_ch=4).eval()
    old = to_old_esrgan(net.state_dict(), num_block=2, scale=scale)
    assert "model.1.sub.1.RDB3.conv5.0.weight" in old and "model.1.sub.2.weight" in old
    new = checkpoint_filter_fn(old)
    assert sorted(new) == sorted(net.state_dict())
    name, opts, found_scale = generator_from_state_dict(old)
    assert (name, found_scale, opts["num_block"], opts["num_feat"]) == ("rrdbnet", scale, 2, 8)
    loaded, _ = load_generator(old)
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def test_old_esrgan_unknown_key_is_an_error():
    net = build_generator("rrdbnet", scale=4, num_feat=4, num_block=1, num_grow_ch=2)
    old = to_old_esrgan(net.state_dict(), num_block=1)
    old["model.5.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"old ESRGAN checkpoint: unexpected key 'model.5.weight'"):
        checkpoint_filter_fn(old)


def test_unknown_checkpoint_layouts():
    with pytest.raises(ValueError, match=r"unknown generator checkpoint layout: .*got 2 keys starting "
                                         r"\['features.0.bias', 'features.0.weight'\]"):
        generator_from_state_dict({"features.0.weight": torch.zeros(2, 3, 3, 3), "features.0.bias": torch.zeros(2)})
    unet = build_generator("unet", scale=1, **TINY["unet"])
    with pytest.raises(ValueError, match=r"unet checkpoint: .* do not record the scale"):
        generator_from_state_dict(unet.state_dict())
    with pytest.raises(ValueError, match=r"not a state dict of tensors: key 'step' holds int"):
        generator_from_state_dict({"step": 3})


def test_srvgg_bad_scale_channels():
    state = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=2).state_dict()
    state["body.4.weight"] = torch.zeros(7, 4, 3, 3)
    state["body.4.bias"] = torch.zeros(7)
    with pytest.raises(ValueError, match=r"last conv body.4 has 7 output channels, expected 3·scale²"):
        generator_from_state_dict(state)


# --- names and options --------------------------------------------------------------------------


def test_unknown_names():
    with pytest.raises(ValueError) as err:
        build_generator("rrdb")
    assert str(err.value) == "unknown generator 'rrdb'; choose from ['rrdbnet', 'srresnet', 'srvgg', 'unet']"
    with pytest.raises(ValueError) as err:
        build_discriminator("unet")
    assert str(err.value) == "unknown discriminator 'unet'; choose from ['dcgan', 'patchgan', 'unet_sn', 'vgg']"


def test_unknown_and_bad_options():
    with pytest.raises(ValueError) as err:
        build_generator("rrdbnet", num_blocks=6)
    assert str(err.value) == ("unknown option 'num_blocks' for generator 'rrdbnet'; allowed options: "
                              "['num_block', 'num_feat', 'num_grow_ch', 'num_in_ch', 'num_out_ch']")
    with pytest.raises(ValueError, match=r"unknown option 'ndf' for discriminator 'patchgan'; allowed options: "
                                         r"\['minibatch_std', 'n_layers', 'norm', 'num_feat', 'num_in_ch'\]"):
        build_discriminator("patchgan", ndf=64)
    with pytest.raises(ValueError, match=r"option 'upscale' of generator 'srvgg' is set by the scale argument"):
        build_generator("srvgg", upscale=2)
    with pytest.raises(ValueError, match=r"rrdbnet scale must be one of \[1, 2, 4, 8\], got 3"):
        build_generator("rrdbnet", scale=3)
    with pytest.raises(ValueError, match=r"srvgg act_type must be one of \['relu', 'prelu', 'leakyrelu'\], got 'gelu'"):
        build_generator("srvgg", act_type="gelu")
    with pytest.raises(ValueError, match=r"srresnet variant must be one of \['srgan', 'msrresnet'\], got 'edsr'"):
        build_generator("srresnet", variant="edsr")
    with pytest.raises(ValueError, match=r"rrdbnet num_block must be a positive int, got 0"):
        build_generator("rrdbnet", num_block=0)
    with pytest.raises(ValueError, match=r"patchgan norm must be one of \['batch', 'instance', 'none'\], got 'layer'"):
        build_discriminator("patchgan", norm="layer")
    with pytest.raises(ValueError, match=r"generator scale must be an int, got 2.0"):
        build_generator("srvgg", scale=2.0)


def test_rrdbnet_dense_blocks_start_as_basicsr_initialises_them():
    torch.manual_seed(0)
    net = RRDBNet(num_feat=32, num_block=23, num_grow_ch=16)
    conv = net.body[5].rdb2.conv3
    fan_in = conv.weight[0].numel()
    assert abs(float(conv.weight.detach().std()) / (0.1 * (2 / fan_in) ** 0.5) - 1) < 0.1  # Kaiming-normal x 0.1
    assert not conv.bias.any() and net.conv_first.bias.any()  # the trunk convs keep torch's default
    # each RRDB is then 1.2·x plus a small branch, so the 23 of them stay close to 1.2^23·x (a default
    # torch init drifts ~5x further: 10 % against 2 % here)
    f = torch.randn(2, 32, 24, 24)
    with torch.no_grad():
        drift = (net.body(f) - 1.2**23 * f).norm() / (1.2**23 * f).norm()
    assert drift < 0.05


@torch.no_grad()  # statistics of the weights only (a float() of a grad-tracking tensor warns)
def test_msrresnet_and_pix2pix_nets_start_as_their_papers_initialise_them():
    torch.manual_seed(0)
    msr = SRResNet(num_feat=32, num_block=2, variant="msrresnet")
    fan_in = msr.upconv1.weight[0].numel()
    assert abs(float(msr.upconv1.weight.std()) / (0.1 * (2 / fan_in) ** 0.5) - 1) < 0.1
    assert not msr.body[1].conv2.bias.any()
    for net in (UNetGenerator(ngf=16, depth=4), NLayerDiscriminator(num_feat=32), DCGANDiscriminator(num_feat=32)):
        convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        weights = torch.cat([m.weight.flatten() for m in convs])
        assert abs(float(weights.std()) - 0.02) < 0.002 and abs(float(weights.mean())) < 0.002
        norms = [m.weight for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and abs(float(torch.cat(norms).mean()) - 1) < 0.01
