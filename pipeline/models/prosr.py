"""ProgressiveRRDBNet: RRDBNet grown one ×2 stage at a time, as ProSR (Wang et al. 2018) and ProGAN fade in.

    net = ProgressiveRRDBNet(scale=4, num_feat=32, num_block=2, num_grow_ch=16)
    y2 = net(x, stage=1)                  # the ×2 stage alone: (B, 3, 2H, 2W)
    y4 = net(x, stage=2, alpha=0.3)       # ×4 fading in: 0.7·up2(×2 output) + 0.3·(×4 output)
    y = net(x)                            # full scale, α = 1: exactly RRDBNet's forward
    state = without_heads(net.state_dict())  # RRDBNet's keys only: loads into RRDBNet, realsynth and spandrel

The pyramid is RRDBNet's own: stage k is the trunk (conv_first, body, conv_body) then k of its ×2
upsampling convs (conv_up1, conv_up2, conv_up3), and its image comes from a to-RGB head. The last
stage's head is RRDBNet's (conv_hr, conv_last); each earlier stage has its own head of the same
shape (`heads.k-1`), used only while training and dropped from the export. So the grown net is an
RRDBNet, key for key, and every tool that reads ESRGAN checkpoints reads it.

Fade-in (ProGAN): while stage k comes in, output = (1-α)·up(stage k-1 image) + α·stage k image, with
`up` bicubic ×2; α = 0 is the previous stage exactly, and the output moves linearly in α.
Scales 4 (stages ×2, ×4) and 8 (×2, ×4, ×8): scales 1 and 2 pixel-unshuffle the input, so their
first stage is not a ×2 of the input.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from .rrdbnet import LRELU_SLOPE, RRDBNet, _conv3

HEADS = "heads."  # state-dict prefix of the training-only to-RGB heads
STAGES = {4: 2, 8: 3}  # scale → number of ×2 stages


class ProgressiveRRDBNet(RRDBNet):
    """RRDBNet (same arguments; scale 4 or 8) with a to-RGB head per intermediate ×2 stage.

    `forward(x, stage, alpha)` runs stage `stage` (1 = ×2 ... `stages` = full scale) faded in by
    `alpha`; left out, they are the ones `grow` set (default: full scale, α = 1, RRDBNet's forward).

    Raises:
        ValueError: scale other than 4 or 8 (and RRDBNet's own checks).

    Example:
        >>> import torch
        >>> net = ProgressiveRRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
        >>> net(torch.rand(1, 3, 8, 8), stage=1).shape, net(torch.rand(1, 3, 8, 8)).shape
        (torch.Size([1, 3, 16, 16]), torch.Size([1, 3, 32, 32]))
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32) -> None:
        if scale not in STAGES:
            raise ValueError(f"progressive rrdbnet scale must be one of {sorted(STAGES)} (a ×2 stage first), "
                             f"got {scale!r}")
        super().__init__(num_in_ch, num_out_ch, scale, num_feat, num_block, num_grow_ch)
        self.stages = STAGES[scale]
        self.heads = nn.ModuleList(nn.Sequential(_conv3(num_feat, num_feat), nn.LeakyReLU(LRELU_SLOPE),
                                                 _conv3(num_feat, num_out_ch)) for _ in range(self.stages - 1))
        self.stage, self.alpha = self.stages, 1.0

    def grow(self, stage: int, alpha: float) -> None:
        """Set the stage and fade that a plain `forward(x)` runs (the training loop's seam)."""
        self._check(stage, alpha)
        self.stage, self.alpha = stage, float(alpha)

    def forward(self, x: Tensor, stage: int | None = None, alpha: float | None = None) -> Tensor:
        stage = self.stage if stage is None else stage
        alpha = self.alpha if alpha is None else alpha
        self._check(stage, alpha)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        ups = [self.conv_up1, self.conv_up2] + ([self.conv_up3] if self.scale == 8 else [])
        prev = feat
        for conv in ups[:stage]:
            prev, feat = feat, F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), LRELU_SLOPE)
        out = self.to_rgb(stage, feat)
        if alpha >= 1.0:
            return out
        old = F.interpolate(self.to_rgb(stage - 1, prev), scale_factor=2, mode="bicubic", align_corners=False)
        return (1.0 - alpha) * old + alpha * out

    def to_rgb(self, stage: int, feat: Tensor) -> Tensor:
        """Stage `stage`'s image from its features: RRDBNet's head for the last stage, else `heads[stage-1]`."""
        if stage == self.stages:
            return self.conv_last(F.leaky_relu(self.conv_hr(feat), LRELU_SLOPE))
        return self.heads[stage - 1](feat)

    def _check(self, stage: int, alpha: float) -> None:
        if not isinstance(stage, int) or not 1 <= stage <= self.stages:
            raise ValueError(f"progressive rrdbnet x{self.scale}: stage must be 1..{self.stages}, got {stage!r}")
        if not 0.0 <= alpha <= 1.0 or (stage == 1 and alpha != 1.0):
            raise ValueError(f"progressive rrdbnet: alpha must be in [0, 1] (1 for stage 1, which has nothing to "
                             f"fade from), got {alpha!r} at stage {stage}")


def without_heads(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A state dict without the training-only heads: a ProgressiveRRDBNet's becomes RRDBNet's, key for key
    (any other net's passes unchanged)."""
    return {k: v for k, v in state.items() if not k.startswith(HEADS)}
