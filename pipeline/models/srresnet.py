"""SRResNet: the SRGAN generator, and BasicSR's MSRResNet (no batch norm) as a variant.

variant='srgan' (Ledig et al. 2017): 9×9 conv + PReLU, `num_block` residual blocks
(conv-BN-PReLU-conv-BN), a trunk conv + BN added to the head features, then per ×2 (or ×3) stage a
conv to 4·feat (9·feat), pixel shuffle and PReLU, and a 9×9 conv to the output.

variant='msrresnet' (BasicSR `MSRResNet`, keys compatible): 3×3 conv + LeakyReLU(0.1), residual
blocks without BN (conv-ReLU-conv), `upconv1`/`upconv2` with pixel shuffle + LeakyReLU(0.1), `conv_hr`,
`conv_last`, and the bilinear-upsampled input added to the output.

Scales 2, 3, 4 and 8 upsample by pixel shuffle (stages ×2, ×3, ×2·×2, ×2·×2·×2); scale 1 has no
upsampling stage (same-size restoration).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from .weight_init import scaled_kaiming_

SCALES = (1, 2, 3, 4, 8)
VARIANTS = ("srgan", "msrresnet")
_STAGES = {1: (), 2: (2,), 3: (3,), 4: (2, 2), 8: (2, 2, 2)}


class ResidualBlockBN(nn.Module):
    """SRGAN residual block: x + BN(conv(PReLU(BN(conv(x))))); shape preserved."""

    def __init__(self, num_feat: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(num_feat)
        self.act = nn.PReLU(num_feat)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(num_feat)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class ResidualBlockNoBN(nn.Module):
    """BasicSR residual block: x + conv2(ReLU(conv1(x))); shape preserved."""

    def __init__(self, num_feat: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        scaled_kaiming_((self.conv1, self.conv2))  # BasicSR's init

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class SRResNet(nn.Module):
    """SRGAN generator (default) or MSRResNet.

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels (msrresnet adds the upsampled input: must equal num_in_ch).
        scale: 1, 2, 3, 4 or 8.
        num_feat: feature channels.
        num_block: residual blocks.
        variant: 'srgan' (with batch norm) or 'msrresnet' (no batch norm, BasicSR keys).

    Shapes: (B, num_in_ch, H, W) → (B, num_out_ch, scale·H, scale·W).

    Raises:
        ValueError: on an unknown variant or scale, or a non-positive size.

    Example:
        >>> import torch
        >>> SRResNet(num_feat=8, num_block=1, scale=2)(torch.rand(1, 3, 6, 6)).shape
        torch.Size([1, 3, 12, 12])
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 16,
        variant: str = "srgan",
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"srresnet variant must be one of {list(VARIANTS)}, got {variant!r}")
        if scale not in SCALES:
            raise ValueError(f"srresnet scale must be one of {list(SCALES)}, got {scale!r}")
        for name, value in (("num_in_ch", num_in_ch), ("num_out_ch", num_out_ch), ("num_feat", num_feat),
                            ("num_block", num_block)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"srresnet {name} must be a positive int, got {value!r}")
        if variant == "msrresnet" and num_out_ch != num_in_ch:
            raise ValueError(f"msrresnet adds the upsampled input, so num_out_ch must equal num_in_ch, "
                             f"got {num_out_ch} and {num_in_ch}")
        self.scale = scale
        self.variant = variant
        stages = _STAGES[scale]
        if variant == "srgan":
            self.conv_first = nn.Conv2d(num_in_ch, num_feat, 9, 1, 4)
            self.act_first = nn.PReLU(num_feat)
            self.body = nn.Sequential(*(ResidualBlockBN(num_feat) for _ in range(num_block)))
            self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.bn_body = nn.BatchNorm2d(num_feat)
            self.upsample = nn.Sequential(*(
                nn.Sequential(nn.Conv2d(num_feat, num_feat * f * f, 3, 1, 1), nn.PixelShuffle(f),
                              nn.PReLU(num_feat))
                for f in stages))
            self.conv_last = nn.Conv2d(num_feat, num_out_ch, 9, 1, 4)
        else:
            self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
            self.body = nn.Sequential(*(ResidualBlockNoBN(num_feat) for _ in range(num_block)))
            # BasicSR names the ×4 stages upconv1, upconv2 (and ×3 a single upconv1 to 9·feat).
            for i, f in enumerate(stages, start=1):
                setattr(self, f"upconv{i}", nn.Conv2d(num_feat, num_feat * f * f, 3, 1, 1))
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
            scaled_kaiming_([self.conv_first, self.conv_hr, self.conv_last] +
                            [getattr(self, f"upconv{i}") for i in range(1, len(stages) + 1)])  # as MSRResNet
        self._stages = stages

    def forward(self, x: Tensor) -> Tensor:
        if self.variant == "srgan":
            head = self.act_first(self.conv_first(x))
            feat = head + self.bn_body(self.conv_body(self.body(head)))
            return self.conv_last(self.upsample(feat))
        feat = F.leaky_relu(self.conv_first(x), 0.1)
        feat = self.body(feat)
        for i, f in enumerate(self._stages, start=1):
            feat = F.leaky_relu(F.pixel_shuffle(getattr(self, f"upconv{i}")(feat), f), 0.1)
        out = self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.1))
        if self.scale == 1:
            return out + x
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


def infer_srresnet(state: Mapping[str, Tensor]) -> tuple[dict[str, int | str], int]:
    """Infer (opts, scale) from an SRResNet state dict (either variant).

    variant from `bn_body.weight`; num_feat/num_in_ch from conv_first; num_block = 1 + max body index;
    num_out_ch from conv_last; scale = product of the pixel-shuffle factors sqrt(out/num_feat) of the
    upsampling convs.

    Raises:
        ValueError: if an upsampling conv's channels are not num_feat·f² with f in (2, 3).
    """
    variant = "srgan" if "bn_body.weight" in state else "msrresnet"
    num_feat, num_in_ch = state["conv_first.weight"].shape[:2]
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    pattern = r"upsample\.(\d+)\.0\.weight" if variant == "srgan" else r"upconv(\d+)\.weight"
    ups = sorted((int(m.group(1)), k) for k in state if (m := re.fullmatch(pattern, k)))
    scale = 1
    for _, key in ups:
        ratio = state[key].shape[0] // num_feat
        if ratio not in (4, 9) or state[key].shape[0] % num_feat:
            raise ValueError(f"srresnet checkpoint: {key} has {state[key].shape[0]} output channels, "
                             f"expected {num_feat}·4 or {num_feat}·9")
        scale *= 2 if ratio == 4 else 3
    if scale not in SCALES:
        raise ValueError(f"srresnet checkpoint: upsampling stages give scale {scale}, "
                         f"expected one of {list(SCALES)}")
    opts: dict[str, int | str] = dict(num_in_ch=num_in_ch, num_out_ch=state["conv_last.weight"].shape[0],
                                      num_feat=num_feat, num_block=max(blocks) + 1 if blocks else 0,
                                      variant=variant)
    return opts, scale
