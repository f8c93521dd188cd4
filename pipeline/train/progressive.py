"""ProSR's curriculum over scales for the training loop: the stage, fade α and target size of each step.

    growth = Growth.of(cfg, scale=4, tag="train_net", say=print)   # None unless cfg.progressive.enabled
    t = growth.step(net_g, step, t)     # G set to the step's stage and α; its targets at the stage's scale

Curriculum (ProSR, Wang et al. 2018; fade-in from ProGAN, Karras et al. 2018): stage 1 (×2) trains for
`stage_steps[0]` steps; then stage 2 (×4) starts, its first `fade_steps` steps fading it in with
α = i / (fade_steps + 1) at its i-th step (so 0 < α < 1 throughout the fade, and 1 after); for scale 8,
stage 3 (×8) follows after `stage_steps[1]` steps of stage 2 in the same way. The last stage runs to
`iterations`. Stage and α are pure functions of the step, as the lr is (`steps.lr_at`), so a run killed
mid-fade resumes at the same α; each checkpoint records the next step's stage (`scheduler.progressive`).

Progressive patch size: the LR patch is the same at every stage and the target is the HR patch
downscaled to the stage's scale (bicubic, antialiased): the ×2 stage learns from HR patches of side
2·LR, the ×4 stage (scale 4) from the full patch.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from pipeline.models.prosr import STAGES, ProgressiveRRDBNet
from pipeline.train.config import TrainConfig
from pipeline.train.steps import Targets


@dataclass(frozen=True)
class Stage:
    stage: int    # 1 = ×2, 2 = ×4, 3 = ×8
    alpha: float  # this stage's fade-in: 1 once faded in (and always for stage 1)

    @property
    def factor(self) -> int:
        """The stage's output scale against the LR input."""
        return 2 ** self.stage


def stage_at(step: int, stage_steps: Sequence[int], fade_steps: int) -> Stage:
    """The stage and α of 0-based `step` (see the module docstring).

    >>> stage_at(499, [500], 100), stage_at(500, [500], 100), stage_at(600, [500], 100)
    (Stage(stage=1, alpha=1.0), Stage(stage=2, alpha=0.009900990099009901), Stage(stage=2, alpha=1.0))
    """
    start, stage = 0, 1
    for length in stage_steps:
        if step < start + length:
            break
        start, stage = start + length, stage + 1
    i = step - start + 1  # 1-based step within the stage
    alpha = i / (fade_steps + 1) if stage > 1 and i <= fade_steps else 1.0
    return Stage(stage, alpha)


def downscale(img: Tensor, factor: int) -> Tensor:
    """(B, C, H, W) in [0, 1] → (B, C, H/factor, W/factor): bicubic with antialiasing, clamped to [0, 1]."""
    if factor == 1:
        return img
    h, w = img.shape[-2:]
    return F.interpolate(img, size=(h // factor, w // factor), mode="bicubic", align_corners=False,
                         antialias=True).clamp_(0, 1)


class Growth:
    """The loop's view of the curriculum for one run: `step` sets G's stage and shrinks the targets."""

    def __init__(self, stage_steps: Sequence[int], fade_steps: int, scale: int, tag: str,
                 say: Callable[..., None]) -> None:
        self.stage_steps, self.fade_steps, self.scale = tuple(stage_steps), fade_steps, scale
        self.tag, self.say = tag, say
        self._last: Stage | None = None  # the previous step's stage, to say when a new one begins

    @classmethod
    def of(cls, cfg: TrainConfig, *, scale: int, tag: str, say: Callable[..., None]) -> Growth | None:
        """The run's curriculum, or None when `cfg.progressive.enabled` is off.

        Raises:
            ValueError: a scale with no ×2 stages to grow (not 4 or 8), `stage_steps` with the wrong number of
                entries for the scale, or a middle stage shorter than its fade. A last stage that does not
                finish fading in by `iterations` is only a warning: a run may stop early and resume.
        """
        p = cfg.progressive
        if not p.enabled:
            return None
        key = f"{tag}.progressive"
        if scale not in STAGES:
            raise ValueError(f"{key}.enabled: grows ×2 stages up to scale 4 or 8, got scale {scale}")
        want = STAGES[scale] - 1
        if len(p.stage_steps) != want:
            raise ValueError(f"{key}.stage_steps: expected {want} entr{'y' if want == 1 else 'ies'} for scale "
                             f"{scale} (steps of the x2{' and x4' if want == 2 else ''} stage), "
                             f"got {list(p.stage_steps)}")
        if any(n < p.fade_steps for n in p.stage_steps[1:]):
            raise ValueError(f"{key}.stage_steps: each stage after the first must last at least fade_steps "
                             f"({p.fade_steps}) steps, got {list(p.stage_steps)}")
        if sum(p.stage_steps) + p.fade_steps > cfg.iterations:  # iterations is operational: a run may stop early
            say(f"{tag}: warning: the x{scale} stage starts at step {sum(p.stage_steps)} and fades in over "
                f"{p.fade_steps} steps, past iterations {cfg.iterations}: the export is not the grown net "
                f"(a longer run resumes)")
        return cls(p.stage_steps, p.fade_steps, scale, tag, say)

    def at(self, step: int) -> Stage:
        return stage_at(step, self.stage_steps, self.fade_steps)

    def step(self, net: ProgressiveRRDBNet, step: int, t: Targets) -> Targets:
        """Set `net` (the plain G, not a compiled or DDP wrapper) to `step`'s stage and α; return `t` with
        every HR-sized target downscaled to the stage's scale."""
        s = self.at(step)
        net.grow(s.stage, s.alpha)
        if self._last is None or s.stage != self._last.stage:
            fade = f", fading in over {self.fade_steps} steps" if s.alpha < 1 else ""
            self.say(f"{self.tag}: step {step}: stage {s.stage} of {len(self.stage_steps) + 1} "
                     f"(x{s.factor}, alpha {s.alpha:.3f}{fade})")
        self._last = s
        shrink = self.scale // s.factor
        if shrink == 1:
            return t
        done: dict[int, Tensor] = {}  # the targets are often one tensor: downscale it once

        def small(x: Tensor | None) -> Tensor | None:
            if x is None:
                return None
            if id(x) not in done:
                done[id(x)] = downscale(x, shrink)
            return done[id(x)]
        return dataclasses.replace(t, pixel=small(t.pixel), perceptual=small(t.perceptual), real=small(t.real),
                                   lr_up=small(t.lr_up))

    def record(self, step: int) -> dict[str, Any]:
        """For the checkpoint: the stage and α that 0-based `step` (the resumed run's first) trains at."""
        s = self.at(step)
        return {"progressive": {"stage": s.stage, "alpha": s.alpha, "factor": s.factor,
                                "stage_steps": list(self.stage_steps), "fade_steps": self.fade_steps}}
