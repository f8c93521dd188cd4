"""pix2pix U-Net generator (Isola et al. 2017), adapted to same-size restoration in [0, 1].

Encoder: `depth` stride-2 4×4 convs (LeakyReLU 0.2 before each but the first, norm after each but
the first and the innermost), channels ngf·min(2^i, 8). Decoder: stride-2 4×4 transposed convs
(ReLU before, norm after all but the outermost, optional dropout 0.5 in the middle blocks), each
fed the concatenation of the previous decoder output and the encoder skip at its resolution.
Weights start as pix2pix's (N(0, 0.02); batch-norm scales N(1, 0.02)).

Differences from pix2pix, for SR on [0, 1] images:
- no final Tanh; the network predicts a residual added to its input (`out = x + unet(x)`);
- any input size works: the input is replicate-padded to a multiple of 2^depth and the output cropped;
- scale > 1: the input is first upsampled bicubically (align_corners=False) to the output size and
  the U-Net restores that image — it is a scale-1 network on a pre-upsampled input, so its weights do
  not record the scale.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .weight_init import pix2pix_normal_

NORMS = ("batch", "instance", "none")


def norm_layers(norm: str, ch: int) -> list[nn.Module]:
    """The normalisation layer named `norm` for `ch` channels, as a list (empty for "none")."""
    if norm == "batch":
        return [nn.BatchNorm2d(ch)]
    if norm == "instance":
        return [nn.InstanceNorm2d(ch)]
    return []


class UNetGenerator(nn.Module):
    """U-Net generator with skip connections at every resolution.

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels (the input is added: must equal num_in_ch).
        scale: output/input size ratio (≥ 1); > 1 means bicubic pre-upsampling.
        ngf: channels of the first encoder conv.
        depth: number of stride-2 downsamplings (≥ 2); pix2pix unet_256 uses 8.
        norm: 'batch', 'instance' or 'none'.
        use_dropout: dropout 0.5 in the decoder blocks between innermost and outermost.

    Shapes: (B, num_in_ch, H, W) → (B, num_out_ch, scale·H, scale·W), any H, W.

    Raises:
        ValueError: on a bad option value.

    Example:
        >>> import torch
        >>> UNetGenerator(ngf=8, depth=3, scale=2)(torch.rand(1, 3, 10, 12)).shape
        torch.Size([1, 3, 20, 24])
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 1,
        ngf: int = 64,
        depth: int = 8,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unet norm must be one of {list(NORMS)}, got {norm!r}")
        for name, value, lo in (("num_in_ch", num_in_ch, 1), ("num_out_ch", num_out_ch, 1), ("scale", scale, 1),
                                ("ngf", ngf, 1), ("depth", depth, 2)):
            if not isinstance(value, int) or value < lo:
                raise ValueError(f"unet {name} must be an int >= {lo}, got {value!r}")
        if num_out_ch != num_in_ch:
            raise ValueError(f"unet adds its input to the output, so num_out_ch must equal num_in_ch, "
                             f"got {num_out_ch} and {num_in_ch}")
        self.scale = scale
        self.depth = depth
        chs = [ngf * min(2**i, 8) for i in range(depth)]
        bias = norm != "batch"  # a conv followed by batch norm needs no bias
        self.down = nn.ModuleList()
        for i in range(depth):
            inner = i == depth - 1
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(num_in_ch if i == 0 else chs[i - 1], chs[i], 4, 2, 1,
                                    bias=bias or i == 0 or inner))
            if 0 < i and not inner:
                layers += norm_layers(norm, chs[i])
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for i in range(depth):
            outer, inner = i == 0, i == depth - 1
            in_ch = chs[i] if inner else 2 * chs[i]
            out_ch = num_out_ch if outer else chs[i - 1]
            layers = [nn.ReLU(), nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=bias or outer)]
            if not outer:
                layers += norm_layers(norm, out_ch)
                if use_dropout and not inner:
                    layers.append(nn.Dropout(0.5))
            self.up.append(nn.Sequential(*layers))
        pix2pix_normal_(self)

    def forward(self, x: Tensor) -> Tensor:
        if self.scale > 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        h, w = x.shape[-2:]
        m = 2**self.depth
        pad_h, pad_w = -h % m, -w % m
        feat = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        skips = []
        for down in self.down:
            feat = down(feat)
            skips.append(feat)
        feat = self.up[-1](skips[-1])
        for i in range(self.depth - 2, -1, -1):
            feat = self.up[i](torch.cat([skips[i], feat], 1))
        return x + feat[..., :h, :w]
