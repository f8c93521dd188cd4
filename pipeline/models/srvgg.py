"""SRVGGNetCompact: Real-ESRGAN's compact VGG-style SR network (realesr-general-x4v3, animevideov3).

The network is a plain stack kept in one `nn.ModuleList` named `body`, so its state-dict keys are
the public ones: `body.0` conv(in → feat), `body.1` act, then `num_conv` × (conv, act) at
`body.2..body.2·num_conv+1`, and a last conv(feat → out·upscale²) at `body.2·num_conv+2`. Only convs
and PReLU carry parameters. The output is pixel-shuffled and added to the nearest-upsampled input,
so the net learns a residual over nearest upsampling.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

ACT_TYPES = ("relu", "prelu", "leakyrelu")


def _act(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "relu":
        return nn.ReLU(inplace=True)
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)


class SRVGGNetCompact(nn.Module):
    """Compact VGG-style SR net.

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels (the nearest-upsampled input is added, so it must equal
            num_in_ch).
        num_feat: feature channels.
        num_conv: number of hidden feat → feat convs.
        upscale: scale factor (≥ 1).
        act_type: 'relu', 'prelu' (one slope per channel, as the public models) or 'leakyrelu' (0.1).

    Shapes: (B, num_in_ch, H, W) → (B, num_out_ch, upscale·H, upscale·W).

    Raises:
        ValueError: on an unknown act_type or a non-positive size.

    Example:
        >>> import torch
        >>> SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2)(torch.rand(1, 3, 5, 7)).shape
        torch.Size([1, 3, 10, 14])
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        if act_type not in ACT_TYPES:
            raise ValueError(f"srvgg act_type must be one of {list(ACT_TYPES)}, got {act_type!r}")
        for name, value in (("num_in_ch", num_in_ch), ("num_out_ch", num_out_ch), ("num_feat", num_feat),
                            ("upscale", upscale)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"srvgg {name} must be a positive int, got {value!r}")
        if not isinstance(num_conv, int) or num_conv < 0:
            raise ValueError(f"srvgg num_conv must be a non-negative int, got {num_conv!r}")
        if num_out_ch != num_in_ch:
            raise ValueError(f"srvgg adds the upsampled input, so num_out_ch must equal num_in_ch, "
                             f"got {num_out_ch} and {num_in_ch}")
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _act(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _act(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale**2, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        if self.upscale == 1:
            return out + x
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


def infer_srvgg(state: Mapping[str, Tensor]) -> tuple[dict[str, int | str], int]:
    """Infer (opts, scale) from an SRVGGNetCompact state dict, as spandrel does.

    num_feat = body.0 out channels, num_in_ch = body.0 in channels; the highest conv index L gives
    num_conv = (L - 2) / 2; act_type is 'prelu' when body.1 has a weight, else 'leakyrelu' (ReLU and
    LeakyReLU have no parameters; the public models use PReLU). upscale = sqrt(out(L) / num_out_ch)
    with num_out_ch = num_in_ch.

    Raises:
        ValueError: if the last conv's channels are not num_in_ch·k² for an integer k.
    """
    num_feat, num_in_ch = state["body.0.weight"].shape[:2]
    conv_ids = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"body\.(\d+)\.bias", k)))
    last = conv_ids[-1]
    out_ch = state[f"body.{last}.weight"].shape[0]
    upscale = math.isqrt(out_ch // num_in_ch)
    if out_ch % num_in_ch or upscale**2 * num_in_ch != out_ch or last % 2:
        raise ValueError(f"srvgg checkpoint: last conv body.{last} has {out_ch} output channels, "
                         f"expected {num_in_ch}·scale² at an even index")
    act_type = "prelu" if "body.1.weight" in state else "leakyrelu"
    opts: dict[str, int | str] = dict(num_in_ch=num_in_ch, num_out_ch=num_in_ch, num_feat=num_feat,
                                      num_conv=(last - 2) // 2, act_type=act_type)
    return opts, upscale
