"""Losses: pixel, VGG19 perceptual (with a random-weights file, never the network), GAN on logits."""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from pipeline.losses import perceptual
from pipeline.losses.gan import GAN_KINDS, clip_weights, d_loss, g_loss, gradient_penalty
from pipeline.losses.perceptual import PerceptualLoss, VGGFeatureExtractor, find_vgg19_weights, load_vgg19_features
from pipeline.losses.pixel import build_pixel_loss, charbonnier_loss, l1_loss, l2_loss

LOG2 = math.log(2.0)

# --- pixel --------------------------------------------------------------------------------------


def test_pixel_losses_values():
    pred = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    target = torch.tensor([[0.0, 0.0], [0.0, 1.0]])  # differences 0, 1, 2, 3
    assert l1_loss(pred, target).item() == pytest.approx(6 / 4)
    assert l2_loss(pred, target).item() == pytest.approx(14 / 4)
    # sqrt(d² + eps) with eps 1e-12: ≈ |d| except at d = 0 where it is 1e-6.
    assert charbonnier_loss(pred, target).item() == pytest.approx((1e-6 + 1 + 2 + 3) / 4, rel=1e-6)
    assert charbonnier_loss(pred, target, eps=1.0).item() == pytest.approx(
        (1 + math.sqrt(2) + math.sqrt(5) + math.sqrt(10)) / 4, rel=1e-6)
    assert build_pixel_loss("l2") is l2_loss and build_pixel_loss("charbonnier") is charbonnier_loss


def test_charbonnier_gradient_is_finite_at_zero():
    pred = torch.zeros(3, requires_grad=True)
    charbonnier_loss(pred, torch.zeros(3)).backward()
    assert torch.isfinite(pred.grad).all()


def test_pixel_loss_errors():
    with pytest.raises(ValueError, match=r"unknown pixel loss 'mae'; choose from \['charbonnier', 'l1', 'l2'\]"):
        build_pixel_loss("mae")
    with pytest.raises(ValueError, match=r"shapes differ, got \(1, 3\) and \(1, 4\)"):
        l1_loss(torch.zeros(1, 3), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"charbonnier eps must be positive, got 0"):
        charbonnier_loss(torch.zeros(1), torch.zeros(1), eps=0)


# --- perceptual ---------------------------------------------------------------------------------


def random_vgg19_features() -> nn.Sequential:
    """vgg19().features with random weights (built on meta, so the 120M-parameter classifier is
    never initialised), biases drawn around 0 so pre-activation outputs have both signs."""
    with torch.device("meta"):
        features = torchvision.models.vgg19(weights=None).features
    features = features.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    for m in features:
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in)
            m.bias.data = torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1
    return features


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    """A torchvision-layout VGG19 file with random features (80 MB) and a stand-in classifier entry."""
    features = random_vgg19_features()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # ignored by the loader: only features.* are read
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    return path


def test_features_are_pre_activation(vgg_file):
    extractor = VGGFeatureExtractor(["conv1_2", "conv3_4", "conv5_4"], weights=vgg_file, check_hash=False)
    reference = random_vgg19_features().eval()  # same seed → the weights saved in the file
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    feats = extractor(x)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        for name, index in [("conv1_2", 2), ("conv3_4", 16), ("conv5_4", 34)]:
            manual = reference[: index + 1]((x - mean) / std)  # ends on the conv, before its ReLU
            torch.testing.assert_close(feats[name], manual)
            assert (feats[name] < 0).any(), f"{name} has no negative values: taken after the ReLU?"
    assert feats["conv5_4"].shape == (2, 512, 2, 2)


def test_vgg_is_frozen_and_cut(vgg_file):
    loss_fn = PerceptualLoss({"conv2_2": 1.0}, weights=vgg_file, check_hash=False)
    vgg = loss_fn.extractor.vgg
    assert len(vgg) == 8  # conv1_1 .. conv2_2
    assert all(not p.requires_grad for p in loss_fn.parameters())
    loss_fn.train()
    assert not vgg.training


def test_perceptual_loss_zero_for_identical_inputs_and_positive_otherwise(vgg_file):
    loss_fn = PerceptualLoss(weights=vgg_file, check_hash=False, style_weight=1.0)
    gen = torch.Generator().manual_seed(2)
    hr = torch.rand(1, 3, 32, 32, generator=gen)
    assert loss_fn(hr.clone(), hr).item() == 0.0
    x = (hr + 0.1 * torch.randn(hr.shape, generator=gen)).clamp(0, 1).requires_grad_(True)
    loss = loss_fn(x, hr)
    assert loss.item() > 0
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_perceptual_loss_is_weighted_sum_of_layer_l1(vgg_file):
    weights = {"conv1_2": 0.1, "conv4_4": 2.0}
    loss_fn = PerceptualLoss(weights, weights=vgg_file, check_hash=False, perceptual_weight=0.5)
    extractor = loss_fn.extractor
    gen = torch.Generator().manual_seed(3)
    x, hr = torch.rand(1, 3, 16, 16, generator=gen), torch.rand(1, 3, 16, 16, generator=gen)
    fx, fhr = extractor(x), extractor(hr)
    expected = 0.5 * sum(w * (fx[k] - fhr[k]).abs().mean() for k, w in weights.items())
    torch.testing.assert_close(loss_fn(x, hr), expected)


def test_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    with pytest.raises(FileNotFoundError) as err:
        PerceptualLoss()
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == (f"VGG19 weights not found at {expected}: download vgg19-dcbb9e9d.pth from torchvision "
                   f"(https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) and put it at {expected}, "
                   "or set train_*.perceptual.weights=<file>")
    explicit = tmp_path / "weights" / "my_vgg.pth"
    where = re.escape(str(explicit))
    with pytest.raises(FileNotFoundError, match=rf"VGG19 weights not found at {where} .*put it at {where}"):
        load_vgg19_features(explicit)


def test_weights_found_in_torch_home(tmp_path, monkeypatch, vgg_file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cache.parent.mkdir(parents=True)
    cache.symlink_to(vgg_file)
    assert find_vgg19_weights() == cache
    assert len(load_vgg19_features(check_hash=False, last_layer="conv1_1")) == 1


def test_hash_is_checked(tmp_path, monkeypatch):
    fake = tmp_path / "vgg19-dcbb9e9d.pth"
    features = random_vgg19_features()[:3]  # conv1_1, relu1_1, conv1_2: a small file
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, fake)
    digest = hashlib.sha256(fake.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=rf"{re.escape(str(fake))}: sha256 {digest[:8]}\.\.\. does not match"):
        load_vgg19_features(fake)
    # With the expected prefix set to this file's hash, the hash passes and the strict load is
    # what fails (the file holds 2 of VGG19's 16 convs).
    monkeypatch.setattr(perceptual, "VGG19_SHA256_PREFIX", digest[:8])
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict: \"5.weight\""):
        load_vgg19_features(fake)


def test_perceptual_errors(vgg_file, tmp_path):
    with pytest.raises(ValueError, match=r"unknown vgg19 layer 'conv6_1'"):
        PerceptualLoss({"conv6_1": 1.0}, weights=vgg_file, check_hash=False)
    with pytest.raises(ValueError, match=r"perceptual criterion must be one of \['l1', 'l2'\], got 'ssim'"):
        PerceptualLoss(weights=vgg_file, check_hash=False, criterion="ssim")
    with pytest.raises(ValueError, match=r"perceptual loss weight conv1_2 must be >= 0, got -1"):
        PerceptualLoss({"conv1_2": -1}, weights=vgg_file, check_hash=False)
    other = tmp_path / "other.pth"
    torch.save({"0.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match=rf"{re.escape(str(other))}: no 'features.N.weight' tensors"):
        load_vgg19_features(other, check_hash=False)


# --- GAN ----------------------------------------------------------------------------------------


def test_d_loss_values():
    zeros = torch.zeros(4, 1)
    # Convention: D loss = real term + fake term; each term is a mean over logits.
    assert d_loss("vanilla", zeros, zeros).item() == pytest.approx(2 * LOG2)
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-0.5, 1.5])
    # vanilla: mean softplus(-r) + mean softplus(f)
    sp = lambda z: math.log1p(math.exp(z))  # noqa: E731
    assert d_loss("vanilla", real, fake).item() == pytest.approx(
        (sp(-2) + sp(-0.5)) / 2 + (sp(-0.5) + sp(1.5)) / 2, rel=1e-6)
    # lsgan: mean (r - 1)² + mean f²  = (1 + 0.25)/2 + (0.25 + 2.25)/2
    assert d_loss("lsgan", real, fake).item() == pytest.approx(0.625 + 1.25)
    # hinge: mean relu(1 - r) + mean relu(1 + f) = (0 + 0.5)/2 + (0.5 + 2.5)/2
    assert d_loss("hinge", real, fake).item() == pytest.approx(0.25 + 1.5)
    # wgan / wgan-gp: mean f - mean r = 0.5 - 1.25
    assert d_loss("wgan", real, fake).item() == pytest.approx(-0.75)
    assert d_loss("wgan-gp", real, fake).item() == pytest.approx(-0.75)
    # ragan: ½[mean softplus(-(r - mean f)) + mean softplus(f - mean r)], mean f = 0.5, mean r = 1.25
    expected = 0.5 * ((sp(-1.5) + sp(0.0)) / 2 + (sp(-1.75) + sp(0.25)) / 2)
    assert d_loss("ragan", real, fake).item() == pytest.approx(expected, rel=1e-6)
    assert d_loss("ragan", zeros, zeros).item() == pytest.approx(LOG2)


def test_g_loss_values():
    fake, real = torch.tensor([-0.5, 1.5]), torch.tensor([2.0, 0.5])
    sp = lambda z: math.log1p(math.exp(z))  # noqa: E731
    assert g_loss("vanilla", torch.zeros(3)).item() == pytest.approx(LOG2)
    assert g_loss("vanilla", fake).item() == pytest.approx((sp(0.5) + sp(-1.5)) / 2, rel=1e-6)
    assert g_loss("lsgan", fake).item() == pytest.approx((2.25 + 0.25) / 2)
    assert g_loss("hinge", fake).item() == pytest.approx(-0.5)
    assert g_loss("wgan", fake).item() == pytest.approx(-0.5)
    # ragan: ½[mean softplus(r - mean f) + mean softplus(-(f - mean r))], mean f = 0.5, mean r = 1.25
    expected = 0.5 * ((sp(1.5) + sp(0.0)) / 2 + (sp(1.75) + sp(-0.25)) / 2)
    assert g_loss("ragan", fake, real).item() == pytest.approx(expected, rel=1e-6)


def test_losses_are_stable_for_large_logits():
    big = torch.tensor([200.0, -200.0])
    for kind in GAN_KINDS:
        assert torch.isfinite(d_loss(kind, big, -big))
        assert torch.isfinite(g_loss(kind, big, real_logits=-big))
    assert d_loss("vanilla", torch.tensor([200.0]), torch.tensor([-200.0])).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", GAN_KINDS)
def test_g_loss_decreases_when_fake_logits_increase(kind):
    fake = (torch.linspace(-2.0, 0.5, 6)).requires_grad_(True)
    real = torch.linspace(-1.0, 2.0, 6)
    g_loss(kind, fake, real_logits=real).backward()
    assert (fake.grad < 0).all(), f"{kind}: dG/dfake = {fake.grad}"
    with torch.no_grad():
        assert g_loss(kind, fake + 0.1, real_logits=real) < g_loss(kind, fake, real_logits=real)


@pytest.mark.parametrize("kind", GAN_KINDS)
def test_d_loss_pushes_real_up_and_fake_down(kind):
    real = torch.linspace(-0.5, 0.5, 4).requires_grad_(True)
    fake = torch.linspace(0.1, 0.5, 4).requires_grad_(True)  # lsgan pushes fake towards 0: keep it > 0
    d_loss(kind, real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()


def test_label_smoothing():
    zeros = torch.zeros(3)
    # BCE(0, target t) = log 2 whatever t; the gradient is sigmoid(0) - t = 0.5 - (1 - s) per element.
    real = torch.zeros(3, requires_grad=True)
    d_loss("vanilla", real, zeros, label_smoothing=0.1).backward()
    torch.testing.assert_close(real.grad, torch.full((3,), (0.5 - 0.9) / 3))
    # The smoothed optimum of the real term is at sigmoid(r) = 0.9, i.e. r = logit(0.9).
    r = torch.full((3,), math.log(0.9 / 0.1), requires_grad=True)
    d_loss("vanilla", r, zeros, label_smoothing=0.1).backward()
    torch.testing.assert_close(r.grad, torch.zeros(3), atol=1e-6, rtol=0)
    # lsgan: (r - 0.8)² at r = 1 is 0.04
    assert d_loss("lsgan", torch.ones(2), zeros[:2], label_smoothing=0.2).item() == pytest.approx(0.04)
    assert d_loss("lsgan", torch.ones(2), zeros[:2]).item() == 0.0


def test_gan_errors():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match=r"unknown GAN loss kind 'wgan_gp'; choose from \['vanilla', 'lsgan', "
                                         r"'wgan', 'wgan-gp', 'hinge', 'ragan'\]"):
        d_loss("wgan_gp", x, x)
    with pytest.raises(ValueError, match=r"unknown GAN loss kind 'bce'"):
        g_loss("bce", x)
    with pytest.raises(ValueError, match=r"g_loss kind 'ragan' needs real_logits"):
        g_loss("ragan", x)
    with pytest.raises(ValueError, match=r"label_smoothing applies to 'vanilla' and 'lsgan' only, got kind 'hinge'"):
        d_loss("hinge", x, x, label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.0"):
        d_loss("vanilla", x, x, label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"clip_weights c must be positive, got 0"):
        clip_weights(nn.Linear(2, 1), 0)


def lipschitz_critic(n_in: int, scale: float) -> nn.Module:
    """Linear critic whose input gradient is a fixed vector of norm `scale`."""
    lin = nn.Linear(n_in, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(1, n_in, generator=torch.Generator().manual_seed(0)))
        lin.weight.mul_(scale / lin.weight.norm())
    return nn.Sequential(nn.Flatten(), lin)


def test_gradient_penalty_zero_for_1_lipschitz_linear_critic():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.rand(4, 3, 8, 8, generator=gen), torch.rand(4, 3, 8, 8, generator=gen)
    gp = gradient_penalty(lipschitz_critic(3 * 8 * 8, 1.0), real, fake, generator=gen)
    assert gp.item() == pytest.approx(0.0, abs=1e-10)
    # A critic with gradient norm 3 is penalised λ·(3 - 1)² = 10·4 = 40, wherever the interpolates are.
    gp3 = gradient_penalty(lipschitz_critic(3 * 8 * 8, 3.0), real, fake, generator=gen)
    assert gp3.item() == pytest.approx(40.0, rel=1e-5)
    assert gradient_penalty(lipschitz_critic(192, 3.0), real, fake, weight=1.0).item() == pytest.approx(4.0, rel=1e-5)


def test_gradient_penalty_backpropagates_into_critic_and_is_reproducible():
    torch.manual_seed(0)
    net_d = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1))
    real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    gp_a = gradient_penalty(net_d, real, fake, generator=torch.Generator().manual_seed(5))
    gp_b = gradient_penalty(net_d, real, fake, generator=torch.Generator().manual_seed(5))
    assert gp_a.item() == gp_b.item() > 0
    gp_a.backward()
    # Every weight shapes ∇ₓD, so every weight gets a gradient (the last bias does not: it shifts D only).
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in net_d if isinstance(m, nn.Conv2d))
    with pytest.raises(ValueError, match=r"real and fake shapes differ"):
        gradient_penalty(net_d, real, fake[:1])


def test_clip_weights():
    net = nn.Linear(4, 3)
    with torch.no_grad():
        net.weight.fill_(0.5)
        net.bias.fill_(-0.5)
    clip_weights(net, 0.01)
    assert net.weight.max().item() == pytest.approx(0.01) and net.bias.min().item() == pytest.approx(-0.01)
