"""Discriminators for SR GANs. Every one returns raw logits (no sigmoid).

- `UNetDiscriminatorSN` (Real-ESRGAN): spectral-norm U-Net, a per-pixel realness map (B, 1, H, W);
  keys `conv0..conv9` (`convK.weight_orig/_u/_v` for the spectral-normed ones) as the public model.
- `VGGStyleDiscriminator` (SRGAN/ESRGAN, BasicSR keys): fixed input size 128 or 256 → (B, 1).
- `NLayerDiscriminator` (pix2pix PatchGAN): overlapping-patch logits (B, 1, h, w).
- `DCGANDiscriminator`: strided convs, adaptive average pooling to 4×4 and a 4×4 conv → (B, 1);
  any input of at least 2^(n_layers+2) pixels per side.

`minibatch_std=True` (each, default off) appends ProGAN's minibatch standard deviation as one more
channel before the last conv block (`layers.MinibatchStdDev`; that block's first conv takes one more
input channel, so such a D's weights do not load into one without it, and the other way round).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from pipeline.models.layers import MinibatchStdDev
from pipeline.models.unet import NORMS, norm_layers
from pipeline.models.weight_init import pix2pix_normal_


def _check_positive(arch: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arch} {name} must be a positive int, got {value!r}")


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral norm.

    Three stride-2 4×4 convs down (feat → 2, 4, 8·feat), three bilinear ×2 + 3×3 conv up, each added
    to the encoder feature of the same size when `skip_connection`, two more 3×3 convs and a 3×3
    conv to one channel. LeakyReLU 0.2 after every conv but the last; spectral norm on conv1..conv8.

    Args:
        num_in_ch: input channels.
        num_feat: channels of conv0.
        skip_connection: add the encoder features in the decoder.
        minibatch_std: the minibatch standard deviation channel before conv7.

    Shapes: (B, num_in_ch, H, W) → (B, 1, H, W) logits; H and W must be divisible by 8.

    Raises:
        ValueError: in forward, if H or W is not divisible by 8.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True,
                 minibatch_std: bool = False) -> None:
        super().__init__()
        _check_positive("unet_sn", num_in_ch=num_in_ch, num_feat=num_feat)
        self.skip_connection = skip_connection
        self.mbstd = MinibatchStdDev() if minibatch_std else None
        f = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(f + bool(minibatch_std), f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError(f"unet_sn discriminator needs H and W divisible by 8, got {h}x{w}")

        def act(t: Tensor) -> Tensor:
            return F.leaky_relu(t, 0.2)

        def up(t: Tensor) -> Tensor:
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        if self.mbstd is not None:
            x6 = self.mbstd(x6)
        return self.conv9(act(self.conv8(act(self.conv7(x6)))))


class VGGStyleDiscriminator(nn.Module):
    """SRGAN/ESRGAN VGG-style discriminator (BasicSR keys `conv0_0`, `conv0_1`/`bn0_1`, ...).

    Pairs of (3×3 conv, 4×4 stride-2 conv), each but the first followed by batch norm and
    LeakyReLU 0.2, halve the size 5 times (input 128) or 6 times (256) down to 4×4 at 8·feat
    channels; then linear(8·feat·16 → 100), LeakyReLU, linear(100 → 1).

    Args:
        num_in_ch: input channels.
        num_feat: channels of the first conv.
        input_size: 128 or 256; the input must be exactly this size.
        minibatch_std: the minibatch standard deviation channel before the last stage (8×8).

    Shapes: (B, num_in_ch, input_size, input_size) → (B, 1) logits.

    Raises:
        ValueError: on another input_size, or in forward on another input size.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128,
                 minibatch_std: bool = False) -> None:
        super().__init__()
        _check_positive("vgg", num_in_ch=num_in_ch, num_feat=num_feat)
        if input_size not in (128, 256):
            raise ValueError(f"vgg discriminator input_size must be 128 or 256, got {input_size!r}")
        self.input_size = input_size
        f = num_feat
        # (in, out) channels of each stage; stage 0 starts with a biased conv and no norm.
        stages = [(f, f), (f, 2 * f), (2 * f, 4 * f), (4 * f, 8 * f), (8 * f, 8 * f)]
        if input_size == 256:
            stages.append((8 * f, 8 * f))
        self.conv0_0 = nn.Conv2d(num_in_ch, f, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(f, f, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(f, affine=True)
        self.mbstd = MinibatchStdDev() if minibatch_std else None
        for i, (cin, cout) in enumerate(stages[1:], start=1):
            extra = int(minibatch_std and i == len(stages) - 1)
            setattr(self, f"conv{i}_0", nn.Conv2d(cin + extra, cout, 3, 1, 1, bias=False))
            setattr(self, f"bn{i}_0", nn.BatchNorm2d(cout, affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(cout, cout, 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(cout, affine=True))
        self.num_stages = len(stages)
        self.linear1 = nn.Linear(8 * f * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if (h, w) != (self.input_size, self.input_size):
            raise ValueError(f"vgg discriminator was built for {self.input_size}x{self.input_size} inputs, "
                             f"got {h}x{w}; build it with input_size={h} (128 or 256) or crop to size")
        feat = F.leaky_relu(self.conv0_0(x), 0.2)
        feat = F.leaky_relu(self.bn0_1(self.conv0_1(feat)), 0.2)
        for i in range(1, self.num_stages):
            if self.mbstd is not None and i == self.num_stages - 1:
                feat = self.mbstd(feat)
            feat = F.leaky_relu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)), 0.2)
            feat = F.leaky_relu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)), 0.2)
        feat = F.leaky_relu(self.linear1(feat.flatten(1)), 0.2)
        return self.linear2(feat)


class NLayerDiscriminator(nn.Module):
    """pix2pix PatchGAN: logits for overlapping patches (70×70 receptive field at n_layers=3).

    conv(4, stride 2) + LeakyReLU 0.2; (n_layers - 1) × conv(4, stride 2) + norm + LeakyReLU with
    channels feat·min(2^n, 8); conv(4, stride 1) + norm + LeakyReLU; conv(4, stride 1) to 1 channel.
    Layers live in `model` (an nn.Sequential) as in pix2pix; weights start as pix2pix's (N(0, 0.02)).

    Args:
        num_in_ch: input channels.
        num_feat: channels of the first conv.
        n_layers: number of stride-2 convs (≥ 1).
        norm: 'batch', 'instance' or 'none'.
        minibatch_std: the minibatch standard deviation channel before the stride-1 conv block.

    Shapes: (B, num_in_ch, H, W) → (B, 1, h, w), h ≈ H / 2^n_layers - 2.

    Raises:
        ValueError: on a bad option; in forward, if the input is too small for the layers.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, n_layers: int = 3, norm: str = "batch",
                 minibatch_std: bool = False) -> None:
        super().__init__()
        _check_positive("patchgan", num_in_ch=num_in_ch, num_feat=num_feat, n_layers=n_layers)
        if norm not in NORMS:
            raise ValueError(f"patchgan norm must be one of {list(NORMS)}, got {norm!r}")
        self.n_layers = n_layers
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            last = minibatch_std and n == n_layers
            layers += [MinibatchStdDev()] if last else []
            layers += [nn.Conv2d(num_feat * prev + int(last), num_feat * mult, 4, stride, 1, bias=bias),
                       *norm_layers(norm, num_feat * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(num_feat * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        pix2pix_normal_(self)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        sh, sw = h, w
        for _ in range(self.n_layers):
            sh, sw = sh // 2, sw // 2
        if min(sh, sw) < 3:
            raise ValueError(f"patchgan with n_layers={self.n_layers} needs inputs of at least "
                             f"{3 * 2**self.n_layers}x{3 * 2**self.n_layers}, got {h}x{w}")
        return self.model(x)


class DCGANDiscriminator(nn.Module):
    """Global DCGAN-style discriminator: one logit per image, for any input size ≥ 2^(n_layers+2).

    conv(4, stride 2) + LeakyReLU 0.2, then (n_layers - 1) × conv(4, stride 2) + norm + LeakyReLU
    doubling the channels; adaptive average pooling to 4×4; a 4×4 valid conv to one logit. Weights
    start as DCGAN's (N(0, 0.02)).

    Args:
        num_in_ch: input channels.
        num_feat: channels of the first conv.
        n_layers: stride-2 convs (3 → inputs from 32 px).
        norm: 'batch', 'instance' or 'none' (use 'none' or 'instance' with wgan-gp).
        minibatch_std: the minibatch standard deviation channel before the last conv (at 4×4).

    Shapes: (B, num_in_ch, H, W) → (B, 1) logits.

    Raises:
        ValueError: on a bad option; in forward, if H or W < 2^(n_layers+2).
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, n_layers: int = 3, norm: str = "batch",
                 minibatch_std: bool = False) -> None:
        super().__init__()
        _check_positive("dcgan", num_in_ch=num_in_ch, num_feat=num_feat, n_layers=n_layers)
        if norm not in NORMS:
            raise ValueError(f"dcgan norm must be one of {list(NORMS)}, got {norm!r}")
        self.min_size = 2 ** (n_layers + 2)
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for n in range(1, n_layers):
            layers += [nn.Conv2d(num_feat * 2 ** (n - 1), num_feat * 2**n, 4, 2, 1, bias=bias),
                       *norm_layers(norm, num_feat * 2**n), nn.LeakyReLU(0.2, True)]
        layers += [nn.AdaptiveAvgPool2d(4), *([MinibatchStdDev()] if minibatch_std else []),
                   nn.Conv2d(num_feat * 2 ** (n_layers - 1) + int(minibatch_std), 1, 4, 1, 0)]
        self.model = nn.Sequential(*layers)
        pix2pix_normal_(self)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            raise ValueError(f"dcgan discriminator needs inputs of at least {self.min_size}x{self.min_size}, "
                             f"got {h}x{w}")
        return self.model(x).flatten(1)
