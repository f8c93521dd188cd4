"""CycleGAN's ResNet generator (Zhu et al. 2017, `ResnetGenerator` of pytorch-CycleGAN-and-pix2pix),
made residual so that it can serve as a learned degradation at LR size.

    c7s1-F → num_down × (3×3 conv stride 2, ×2 channels) → num_block × ResNet block
           → num_down × (nearest ×2 + 3×3 conv, ÷2 channels) → c7s1-3

Reflection padding and instance norm as in the paper. Two departures, both for a degrader:
- `residual=True` (the default): out = x + tanh(net(x)), the last conv zero-initialised, so the net
  *is* the identity at step 0. A degradation of a clean LR image is a small change (blur, noise,
  JPEG blocks); starting at "no change" lets the adversarial loss add only what the real LR shows,
  the cycle loss is zero at the start instead of fighting a random map, and `residual(x)` gives a
  per-sample strength knob (x + α·residual) for the `learned` preset step.
- the upsampling is nearest + conv, not a transposed conv: transposed convs leave checkerboard
  patterns, which a degrader would add to every image.
`num_down=0` (the default) keeps every layer at the input size: degradations are local and
fine-grained (pixel noise, 8×8 JPEG blocks), and at LR size the images are small anyway.

Not in `build_generator`'s registry: that is the SR zoo (every name maps H×W to sH×sW and may be
trained by `train_net`/`train_gan`); this net only translates at one size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.unet import NORMS, norm_layers
from pipeline.models.weight_init import pix2pix_normal_


class ResnetBlock(nn.Module):
    """x + (reflect pad, 3×3 conv, norm, ReLU, reflect pad, 3×3 conv, norm)(x)."""

    def __init__(self, ch: int, norm: str = "instance") -> None:
        super().__init__()
        bias = norm != "batch"
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=bias), *norm_layers(norm, ch),
                                  nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=bias),
                                  *norm_layers(norm, ch))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class CycleGANGenerator(nn.Module):
    """Same-size image-to-image generator: (B, C, H, W) in [0, 1] → (B, C, H, W), any H and W.

    Args:
        num_in_ch, num_out_ch: channels; with `residual`, num_in_ch >= num_out_ch and the output is
            the first num_out_ch input channels plus the change (the others are conditioning, e.g.
            the learned degrader's noise channels).
        num_feat: channels of the first conv (the paper: 64; small default for CPU training).
        num_block: ResNet blocks (the paper: 6 at 128 px, 9 at 256 px).
        num_down: stride-2 downsamplings before the blocks (the paper: 2); inputs are reflect-padded
            to a multiple of 2^num_down and the output cropped back.
        norm: 'instance' (the paper), 'batch' or 'none'.
        residual: out = x + tanh(...) with a zero-initialised last conv (identity at init); else
            out = (tanh(...) + 1) / 2, the paper's plain map rescaled to [0, 1].

    Raises:
        ValueError: on a bad option.

    Example:
        >>> net = CycleGANGenerator(num_feat=8, num_block=2)
        >>> x = torch.rand(1, 3, 17, 23)
        >>> net(x).shape, bool((net(x) == x).all())
        (torch.Size([1, 3, 17, 23]), True)
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 32, num_block: int = 4,
                 num_down: int = 0, norm: str = "instance", residual: bool = True) -> None:
        super().__init__()
        for name, value, lo in (("num_in_ch", num_in_ch, 1), ("num_out_ch", num_out_ch, 1),
                                ("num_feat", num_feat, 1), ("num_block", num_block, 0), ("num_down", num_down, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ValueError(f"cyclegan {name} must be an int >= {lo}, got {value!r}")
        if norm not in NORMS:
            raise ValueError(f"cyclegan norm must be one of {list(NORMS)}, got {norm!r}")
        if residual and num_in_ch < num_out_ch:
            raise ValueError(f"cyclegan residual needs num_in_ch >= num_out_ch, got {num_in_ch} and {num_out_ch}")
        self.num_down, self.residual = num_down, residual
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(num_in_ch, num_feat, 7, bias=bias),
                                   *norm_layers(norm, num_feat), nn.ReLU(True)]
        ch = num_feat
        for _ in range(num_down):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=bias), *norm_layers(norm, ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch, norm) for _ in range(num_block)]
        for _ in range(num_down):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch // 2, 3, padding=1, bias=bias),
                       *norm_layers(norm, ch // 2), nn.ReLU(True)]
            ch //= 2
        self.body = nn.Sequential(*layers)
        self.conv_last = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ch, num_out_ch, 7))
        pix2pix_normal_(self)
        if residual:
            nn.init.zeros_(self.conv_last[1].weight)
            nn.init.zeros_(self.conv_last[1].bias)

    def _raw(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = 2 ** self.num_down
        ph, pw = -h % m, -w % m
        y = F.pad(x * 2.0 - 1.0, (0, pw, 0, ph), mode="reflect") if ph or pw else x * 2.0 - 1.0
        return torch.tanh(self.conv_last(self.body(y)))[..., :h, :w]

    def residual_of(self, x: Tensor) -> Tensor:
        """The change the net makes: (B, C, H, W), each value in (-1, 1). Needs `residual`."""
        if not self.residual:
            raise ValueError("residual_of needs a residual cyclegan generator (residual=True)")
        return self._raw(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.residual:
            return x[:, :self.conv_last[1].out_channels] + self._raw(x)
        return (self._raw(x) + 1.0) * 0.5
