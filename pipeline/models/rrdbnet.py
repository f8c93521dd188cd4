"""RRDBNet: the ESRGAN / Real-ESRGAN generator (Residual-in-Residual Dense Blocks).

Attribute names follow BasicSR (`conv_first`, `body.N.rdb1..3.conv1..5`, `conv_body`, `conv_up1`,
`conv_up2`, `conv_hr`, `conv_last`), so the public Real-ESRGAN checkpoints load with
`net.load_state_dict(ckpt["params_ema"], strict=True)`. `checkpoint_filter_fn` also accepts the old
ESRGAN layout (`model.0.weight`, `model.1.sub.N.RDB1.conv1.0.weight`, ...).

Scales: 4 is the plain network (two nearest ×2 upsamplings); 8 adds `conv_up3` (a third ×2, as in
the community x8 models). Scales 2 and 1 pixel-unshuffle the input first (by 2 and 4), as
Real-ESRGAN x2plus does, so `conv_first` sees 4× or 16× the input channels and the body still runs at
a quarter of the output resolution; input H and W must then be divisible by 2 (scale 2) or 4 (scale 1).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .weight_init import scaled_kaiming_

SCALES = (1, 2, 4, 8)
RES_SCALE = 0.2  # residual scaling of every dense block and every RRDB
LRELU_SLOPE = 0.2


def _conv3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convs; (B, num_feat, H, W) → same shape.

    conv_k sees num_feat + (k-1)·num_grow_ch channels; the fifth maps back to num_feat and is added
    to the input scaled by 0.2. The convs start as BasicSR's (Kaiming-normal × 0.1, zero bias).
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = _conv3(num_feat, num_grow_ch)
        self.conv2 = _conv3(num_feat + num_grow_ch, num_grow_ch)
        self.conv3 = _conv3(num_feat + 2 * num_grow_ch, num_grow_ch)
        self.conv4 = _conv3(num_feat + 3 * num_grow_ch, num_grow_ch)
        self.conv5 = _conv3(num_feat + 4 * num_grow_ch, num_feat)
        scaled_kaiming_((self.conv1, self.conv2, self.conv3, self.conv4, self.conv5))  # BasicSR's init

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), LRELU_SLOPE))
        return x + RES_SCALE * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Three dense blocks in a residual (scaled by 0.2); (B, num_feat, H, W) → same shape."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        return x + RES_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN generator; defaults are the public RealESRGAN_x4plus shape (16,697,987 parameters).

    Args:
        num_in_ch: input channels (before any pixel-unshuffle).
        num_out_ch: output channels.
        scale: 1, 2, 4 or 8.
        num_feat: feature channels.
        num_block: number of RRDBs in the body.
        num_grow_ch: growth channels of the dense blocks.

    Shapes: (B, num_in_ch, H, W) float → (B, num_out_ch, scale·H, scale·W); for scale 2 (1), H and W
    must be divisible by 2 (4).

    Raises:
        ValueError: on an unsupported scale or a non-positive width/depth.

    Example:
        >>> import torch
        >>> RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 32, 32])
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"rrdbnet scale must be one of {list(SCALES)}, got {scale!r}")
        for name, value in (("num_in_ch", num_in_ch), ("num_out_ch", num_out_ch), ("num_feat", num_feat),
                            ("num_block", num_block), ("num_grow_ch", num_grow_ch)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"rrdbnet {name} must be a positive int, got {value!r}")
        self.scale = scale
        self.unshuffle = {1: 4, 2: 2}.get(scale, 1)
        self.conv_first = _conv3(num_in_ch * self.unshuffle**2, num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = _conv3(num_feat, num_feat)
        self.conv_up1 = _conv3(num_feat, num_feat)
        self.conv_up2 = _conv3(num_feat, num_feat)
        if scale == 8:
            self.conv_up3 = _conv3(num_feat, num_feat)
        self.conv_hr = _conv3(num_feat, num_feat)
        self.conv_last = _conv3(num_feat, num_out_ch)

    def forward(self, x: Tensor) -> Tensor:
        if self.unshuffle > 1:
            h, w = x.shape[-2:]
            if h % self.unshuffle or w % self.unshuffle:
                raise ValueError(f"rrdbnet x{self.scale} needs H and W divisible by {self.unshuffle}, "
                                 f"got {h}x{w}")
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        ups = [self.conv_up1, self.conv_up2] + ([self.conv_up3] if self.scale == 8 else [])
        for conv in ups:
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), LRELU_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LRELU_SLOPE))


# Old ESRGAN layout (a flattened nn.Sequential) → BasicSR names. The upsampling stage k is
# (Upsample, conv, act) at indices 2+3k..4+3k, then HR_conv0 (conv, act) and HR_conv1.
_OLD_TOP_X4 = {"model.0": "conv_first", "model.3": "conv_up1", "model.6": "conv_up2",
               "model.8": "conv_hr", "model.10": "conv_last"}
_OLD_TOP_X8 = {"model.0": "conv_first", "model.3": "conv_up1", "model.6": "conv_up2",
               "model.9": "conv_up3", "model.11": "conv_hr", "model.13": "conv_last"}
_OLD_RDB = re.compile(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)")
_OLD_TRUNK = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")


def unwrap_state_dict(state_dict: Mapping[str, object]) -> dict[str, Tensor]:
    """Return the tensors of a checkpoint: `params_ema`, else `params`, else the dict itself.

    A leading `module.` (DDP) is stripped from every key.

    Raises:
        ValueError: if the result is not a mapping of str → tensor.
    """
    for key in ("params_ema", "params"):
        if isinstance(state_dict.get(key), Mapping):
            state_dict = state_dict[key]  # type: ignore[assignment]
            break
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ValueError(f"checkpoint is not a state dict of tensors: key {key!r} holds "
                             f"{type(value).__name__}")
        out[key.removeprefix("module.")] = value
    return out


def checkpoint_filter_fn(state_dict: Mapping[str, object]) -> dict[str, Tensor]:
    """Turn a public or old-layout RRDBNet checkpoint into this module's state dict.

    Unwraps `params_ema`/`params`, strips `module.`, and renames the old ESRGAN keys
    (`model.0.weight` → `conv_first.weight`, `model.1.sub.N.RDB1.conv1.0.weight` →
    `body.N.rdb1.conv1.weight`, `model.1.sub.<num_block>.weight` → `conv_body.weight`, `model.3/6/8/10`
    → `conv_up1/conv_up2/conv_hr/conv_last`; x8: `model.3/6/9/11/13`). New-layout dicts pass through.

    Raises:
        ValueError: on an old-layout key that the table does not know.
    """
    state = unwrap_state_dict(state_dict)
    if "model.0.weight" not in state:
        return state
    top = _OLD_TOP_X8 if "model.13.weight" in state else _OLD_TOP_X4
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        prefix, _, kind = key.rpartition(".")
        if prefix in top:
            out[f"{top[prefix]}.{kind}"] = value
        elif m := _OLD_RDB.fullmatch(key):
            block, rdb, conv, kind = m.groups()
            out[f"body.{block}.rdb{rdb}.conv{conv}.{kind}"] = value
        elif m := _OLD_TRUNK.fullmatch(key):
            out[f"conv_body.{m.group(2)}"] = value
        else:
            raise ValueError(f"old ESRGAN checkpoint: unexpected key {key!r}")
    return out


def infer_rrdbnet(state: Mapping[str, Tensor]) -> tuple[dict[str, int], int]:
    """Infer (opts, scale) from a new-layout RRDBNet state dict, as spandrel does.

    num_feat = conv_first out channels, num_block = 1 + max body index, num_grow_ch = rdb conv1 out
    channels, num_out_ch = conv_last out channels; the input channels of conv_first are
    num_in_ch·unshuffle², with num_in_ch taken equal to num_out_ch, which gives scale 4/2/1
    (unshuffle 1/2/4); scale 8 is recognised by `conv_up3`.

    Raises:
        ValueError: if the shapes do not fit any supported scale.
    """
    num_feat, first_in = state["conv_first.weight"].shape[:2]
    num_out_ch = state["conv_last.weight"].shape[0]
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    num_block = max(blocks) + 1 if blocks else 0
    num_grow_ch = state["body.0.rdb1.conv1.weight"].shape[0]
    ratio = first_in // num_out_ch
    unshuffle_to_scale = {1: 8 if "conv_up3.weight" in state else 4, 4: 2, 16: 1}
    if first_in % num_out_ch or ratio not in unshuffle_to_scale:
        raise ValueError(f"rrdbnet checkpoint: conv_first takes {first_in} channels for {num_out_ch} "
                         "output channels; expected 1x, 4x or 16x (scale 4, 2 or 1)")
    scale = unshuffle_to_scale[ratio]
    opts = dict(num_in_ch=first_in // ratio, num_out_ch=num_out_ch, num_feat=num_feat,
                num_block=num_block, num_grow_ch=num_grow_ch)
    return opts, scale
