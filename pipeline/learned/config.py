"""A learn-degradation run's settings (`LearnConfig`) and what its loop carries (`Run`).

Two methods (`method`), both training G: clean LR (X) → the real LR's style (Y):
- `dsgan` (the default; Fritsche et al. 2019, "Frequency Separation for Real-World Super-Resolution"):
  one generator and one discriminator; a low-frequency L1 between G(x) and x keeps content and
  colour, the adversarial loss sees only the high frequencies (`dsgan.py`);
- `cyclegan` (Zhu et al. 2017, as Bulat et al. 2018 / Lugmayr et al. 2019): two generators, two
  discriminators, cycle and identity L1 (`cycle.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.seeding import stable_hash
from pipeline.train.pool import ImagePool

from .data import INTERPS

METHODS = ("dsgan", "cyclegan")


@dataclass(frozen=True)
class LearnConfig:
    """A learn-degradation run. Raises ValueError (naming the key) on a bad value."""
    scale: int = 4              # SR factor: X is the HR downscaled by it
    interp: str = "area"        # HR → clean LR resize (the preset's `resize_lr` must use the same)
    method: str = "dsgan"
    crop: int = 32              # LR px, square crops from both domains
    batch_size: int = 4
    steps: int = 400
    save_every: int = 50        # steps between training checkpoints
    seed: int = 0
    num_feat: int = 32          # generator width
    num_block: int = 4          # generator ResNet blocks
    num_down: int = 0           # generator downsamplings (the paper: 2)
    noise: int = 3              # N(0, 1) input channels of G (`nets.with_noise`); 0: deterministic G
    jpeg_quality: int = 0       # the codec in the loop and the preset's final jpeg step; 0: none
    d_feat: int = 32            # PatchGAN width
    d_layers: int = 2           # PatchGAN stride-2 convs (crop must be >= 3·2^d_layers)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_low: float = 1.0       # dsgan: L1 of the low frequencies of G(x) and x
    lambda_adv: float = 0.002     # dsgan: weight of the adversarial loss on the high frequencies
    low_sigma: float = 1.5        # dsgan: σ (LR px) of the Gaussian that splits low from high
    lambda_cycle: float = 10.0    # cyclegan
    lambda_identity: float = 0.5  # cyclegan: × lambda_cycle, the paper's convention; 0 disables
    pool_size: int = 50           # past fakes shown to the discriminators; 0 disables
    threads: int = 1              # torch CPU threads during the run: part of what decides the bytes
    holdout: float = 0.25         # share of every image held out (an edge band) for checkpoint selection; 0: none
    eval_every: int = 50          # steps between selection scores (`select.py`)
    strength_range: tuple[float, float] = (0.8, 1.0)  # the preset's α, as scored and as written

    def __post_init__(self) -> None:
        positive = ("scale", "crop", "batch_size", "steps", "save_every", "num_feat", "d_feat", "d_layers", "threads",
                    "eval_every")
        for key in positive:
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key}: expected a positive integer, got {getattr(self, key)!r}")
        for key in ("seed", "num_block", "num_down", "pool_size", "noise", "jpeg_quality"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                raise ValueError(f"{key}: expected an integer >= 0, got {getattr(self, key)!r}")
        for key in ("lr", "lambda_cycle", "lambda_identity", "lambda_low", "lambda_adv", "low_sigma"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key}: expected a number >= 0, got {getattr(self, key)!r}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout: expected a share in [0, 1), got {self.holdout!r}")
        lo, hi = self.strength_range
        if not 0 <= lo <= hi:
            raise ValueError(f"strength_range: expected 0 <= lo <= hi, got {list(self.strength_range)}")
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {list(METHODS)}, got {self.method!r}")
        if self.interp not in INTERPS:
            raise ValueError(f"interp: expected one of {list(INTERPS)}, got {self.interp!r}")
        if self.jpeg_quality > 100:
            raise ValueError(f"jpeg_quality: expected 0 (none) or a libjpeg quality in [1, 100], got {self.jpeg_quality}")
        if self.crop < 3 * 2 ** self.d_layers:
            raise ValueError(f"crop: expected at least {3 * 2 ** self.d_layers} px for d_layers={self.d_layers}, "
                             f"got {self.crop}")

    def generator_opts(self) -> dict[str, Any]:
        """G's constructor options (`CycleGANGenerator`); the noise channels are extra inputs."""
        return {"num_in_ch": 3 + self.noise, "num_out_ch": 3, "num_feat": self.num_feat,
                "num_block": self.num_block, "num_down": self.num_down}


@dataclass
class Run:
    """What the loop carries: the nets (g, d for dsgan; g, f, dx, dy for cyclegan), the optimizers of
    the generators and of the discriminators, the pools of past fakes, losses, the next step, the
    selection curve ([step, distance]) and the best step's G weights (`select.py`)."""
    nets: dict[str, nn.Module]
    optim_g: torch.optim.Optimizer
    optim_d: torch.optim.Optimizer
    pools: dict[str, ImagePool]
    history: list[list[float]]
    step: int = 0
    curve: list[list[float]] = field(default_factory=list)
    best_params: dict[str, Any] | None = None


def fake_pool(cfg: LearnConfig, domain: str) -> ImagePool:
    """The pool of past fakes of `domain` ("x", "y"), its draws seeded by (seed, domain) alone."""
    return ImagePool(cfg.pool_size, seed=stable_hash(f"learned_pool/{cfg.seed}/{domain}"))
