"""`train_net` / `train_gan` params: one frozen `TrainConfig`, filled from a recipe, then the user's keys.

    cfg = TrainConfig.for_phase("gan", {"recipe": "realesrgan", "gan": {"weight": 0.05}}, "train_gan")

A **recipe** (`realesrgan` default, `esrgan`, `srgan`, `pix2pix`) gives every key its published value
for the **phase**: `net` trains the generator with the pixel loss only (Real-ESRNet, the PSNR-oriented
pre-training), `gan` adds the perceptual and adversarial losses and starts from the net phase's EMA
weights. The user's keys then replace the recipe's one by one (nested sections key by key; `opts`,
`layer_weights`, `milestones` and `betas` as a whole), and the result is validated: any problem is one
`ParamsError` line naming the dotted key.

Sources of the recipe values: Real-ESRGAN `options/train_realesrnet_x4plus.yml` and
`train_realesrgan_x4plus.yml`; BasicSR `train_RRDBNet_PSNR_x4.yml` and `train_ESRGAN_x4.yml`
(ESRGAN, Wang et al. 2018); SRGAN (Ledig et al. 2017: SRResNet-MSE, then VGG54 + 1e-3 adversarial);
pix2pix (Isola et al. 2017: U-Net + 70×70 PatchGAN, L1 λ = 100, Adam 2e-4, β1 = 0.5).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.params import ParamsError, build, check_choice, check_range, to_dict

PHASES = ("net", "gan")
RECIPES = ("realesrgan", "esrgan", "srgan", "pix2pix")
GAN_KINDS = ("vanilla", "lsgan", "wgan", "wgan-gp", "hinge", "ragan")
# Real-ESRGAN's perceptual layer weights (pre-activation VGG19 features).
REALESRGAN_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
# Keys that only the gan phase reads: setting one under train_net is a mistake worth one line.
GAN_ONLY = ("discriminator", "perceptual", "gan", "lr_d", "d_steps", "init_from")
# Keys replaced as a whole rather than merged key by key with the recipe's.
WHOLE = ("opts", "layer_weights", "milestones", "betas")


@dataclass(frozen=True)
class NetConfig:
    name: str = "rrdbnet"                                  # pipeline.models name
    opts: dict[str, Any] = field(default_factory=dict)     # constructor options, public names (num_feat, ...)


@dataclass(frozen=True)
class PixelLossConfig:
    kind: Literal["l1", "l2", "charbonnier"] = "l1"
    weight: float = 1.0          # 0 disables
    target_usm: bool = True      # compare with the USM-sharpened HR (Real-ESRGAN l1_gt_usm)

    def validate(self, where: str) -> None:
        check_range(f"{where}.weight", self.weight, lo=0.0)


@dataclass(frozen=True)
class PerceptualConfig:
    weight: float = 1.0          # VGG19 feature loss factor; 0 disables (no VGG weights needed then)
    layer_weights: dict[str, float] = field(default_factory=lambda: dict(REALESRGAN_LAYER_WEIGHTS))
    criterion: Literal["l1", "l2"] = "l1"
    style_weight: float = 0.0    # Gram-matrix style loss factor; 0 disables
    weights: str = ""            # vgg19-dcbb9e9d.pth path; '' = torch hub cache (never downloaded)
    target_usm: bool = True      # Real-ESRGAN percep_gt_usm

    def validate(self, where: str) -> None:
        check_range(f"{where}.weight", self.weight, lo=0.0)
        check_range(f"{where}.style_weight", self.style_weight, lo=0.0)
        if (self.weight > 0 or self.style_weight > 0) and not self.layer_weights:
            raise ParamsError(f"{where}.layer_weights: expected at least one VGG19 layer, got {{}}")
        for name, w in self.layer_weights.items():
            check_range(f"{where}.layer_weights.{name}", w, lo=0.0)


@dataclass(frozen=True)
class GanConfig:
    kind: Literal["vanilla", "lsgan", "wgan", "wgan-gp", "hinge", "ragan"] = "vanilla"
    weight: float = 0.1          # adversarial loss factor in the generator loss; 0 disables D entirely
    label_smoothing: float = 0.0  # one-sided: real target 1 - s (vanilla, lsgan); 0 disables
    gp_weight: float = 10.0      # wgan-gp gradient penalty λ
    clip: float = 0.01           # wgan critic weight clipping to [-clip, clip]
    target_usm: bool = False     # D's real images are USM-sharpened HR (Real-ESRGAN gan_gt_usm)
    conditional: bool = False    # pix2pix: D sees cat(upsampled LR, image) (needs num_in_ch 6)

    def validate(self, where: str) -> None:
        check_range(f"{where}.weight", self.weight, lo=0.0)
        check_range(f"{where}.label_smoothing", self.label_smoothing, lo=0.0, hi=1.0, hi_open=True)
        if self.label_smoothing and self.kind not in ("vanilla", "lsgan"):
            raise ParamsError(f"{where}.label_smoothing: applies to kind vanilla or lsgan only, "
                              f"got {self.label_smoothing!r} with kind {self.kind!r}")
        check_range(f"{where}.gp_weight", self.gp_weight, lo=0.0)
        check_range(f"{where}.clip", self.clip, lo=0.0, lo_open=True)


@dataclass(frozen=True)
class UsmConfig:
    size: int = 51               # Gaussian size, px (odd); Real-ESRGAN radius 50
    weight: float = 0.5
    threshold: float = 10.0      # 8-bit levels

    def validate(self, where: str) -> None:
        if self.size < 1 or self.size % 2 == 0:
            raise ParamsError(f"{where}.size: expected an odd integer >= 1, got {self.size!r}")
        check_range(f"{where}.weight", self.weight, lo=0.0)
        check_range(f"{where}.threshold", self.threshold, lo=0.0)


@dataclass(frozen=True)
class TrainConfig:
    """One training phase. Defaults are Real-ESRGAN x4plus, gan phase; `for_phase` fills any recipe."""
    recipe: Literal["realesrgan", "esrgan", "srgan", "pix2pix"] = "realesrgan"
    phase: Literal["net", "gan"] = "gan"           # set by for_phase from the section name
    generator: NetConfig = field(default_factory=lambda: NetConfig("rrdbnet", {}))
    discriminator: NetConfig = field(default_factory=lambda: NetConfig("unet_sn", {"num_feat": 64}))
    pixel_loss: PixelLossConfig = field(default_factory=PixelLossConfig)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    usm: UsmConfig = field(default_factory=UsmConfig)
    lr_g: float = 1e-4                   # Adam learning rate of the generator
    lr_d: float = 1e-4                   # Adam learning rate of the discriminator
    betas: tuple[float, float] = (0.9, 0.99)
    d_steps: int = 1                     # D updates per G update (WGAN critics: 5); G steps every d_steps-th step
    iterations: int = 400_000            # total optimisation steps (raising it later resumes, not restarts)
    batch_size: int = 12                 # per process (per GPU); effective batch = batch_size × world size
    warmup: int = 0                      # linear lr warm-up, steps; 0 disables
    milestones: tuple[int, ...] = (400_000,)  # steps at which the lr is multiplied by gamma (MultiStepLR)
    gamma: float = 0.5
    ema_decay: float = 0.999             # EMA of the generator weights (params_ema); 0 = params_ema is params
    ema_warmup: bool = True              # decay min(ema_decay, 1 - (1 + step)^(-2/3)), as timm's model EMA:
                                         # early params_ema follow the trained weights, not the initialisation
    amp: Literal["auto", "off", "bf16"] = "auto"  # auto = bf16 autocast on a CUDA GPU with bf16, else off
    channels_last: bool = False          # NHWC memory format (faster convs on tensor cores)
    compile: bool = False                # torch.compile the training nets
    pair_pool_size: int = 180            # Real-ESRGAN's training-pair queue, samples; 0 disables
    augment: bool = True                 # paired flips and 90° rotations (the 8 symmetries of the square)
    max_nonfinite: int = 20              # stop after this many non-finite steps in a row (each is skipped)
    grad_clip: float = 0.0               # max gradient norm of each net; 0 disables
    checkpoint_every: int = 5000         # steps between checkpoints (one is always written at the end)
    keep_last: int = 3                   # checkpoints kept
    val_every: int = 5000                # steps between validations; 0 = only at the end
    val_batches: int = 4                 # val batches (of batch_size) scored each time
    log_every: int = 100                 # steps between logged loss averages
    workers: int = 0                     # data-loading processes per rank; 0 = in the training process
    seed_offset: int = 0                 # added to params.yaml `seed` for this phase
    init_from: str = ""                  # gan phase: generator export to start from; '' = <paths.models>/net/generator.pth
    device: Literal["auto", "cpu", "cuda"] = "auto"
    reproducible: bool = False           # CPU: the same bytes on any AVX2 x86-64 machine (pipeline.numerics); slower
                                         # where the machine has AVX-512 or more cores than `threads`
    threads: int = 0                     # CPU threads (0 = PyTorch's default, all cores); >= 1 with reproducible

    @classmethod
    def for_phase(cls, phase: str, section: Mapping[str, Any] | None, where: str) -> TrainConfig:
        """Fill `recipe`'s values for `phase` ('net' or 'gan'), apply `section` on top, validate.

        Raises:
            ParamsError: one line naming the dotted key (unknown key, bad value, a gan-only key in the
                net phase, or `phase` set by hand to the other phase).
        """
        check_choice(f"{where}.phase", phase, PHASES)
        section = {} if section is None else section
        if not isinstance(section, Mapping):
            raise ParamsError(f"{where}: expected a mapping of keys, got {section!r}")
        recipe = section.get("recipe", "realesrgan")
        check_choice(f"{where}.recipe", recipe, RECIPES)
        if section.get("phase", phase) != phase:
            raise ParamsError(f"{where}.phase: expected {phase!r} (fixed by the section), got {section['phase']!r}")
        if phase == "net":
            for key in GAN_ONLY:
                if key in section:
                    raise ParamsError(f"{where}.{key}: not used by the net phase (pixel loss only); "
                                      f"set it under train_gan")
        data = merge(recipe_defaults(recipe, phase), section)
        data["phase"] = phase
        return build(cls, data, where)

    def validate(self, where: str) -> None:
        from pipeline.models import DISCRIMINATORS, GENERATORS  # torch import only when a train section loads
        check_choice(f"{where}.generator.name", self.generator.name, sorted(GENERATORS))
        check_choice(f"{where}.discriminator.name", self.discriminator.name, sorted(DISCRIMINATORS))
        _check_net_opts(f"{where}.generator.opts", "generator", self.generator)
        _check_net_opts(f"{where}.discriminator.opts", "discriminator", self.discriminator)
        for key in ("lr_g", "lr_d"):
            check_range(f"{where}.{key}", getattr(self, key), lo=0.0, lo_open=True)
        for i, b in enumerate(self.betas):
            check_range(f"{where}.betas[{i}]", b, lo=0.0, hi=1.0, hi_open=True)
        for key in ("d_steps", "iterations", "batch_size", "max_nonfinite", "checkpoint_every", "keep_last",
                    "val_batches", "log_every"):
            check_range(f"{where}.{key}", getattr(self, key), lo=1)
        for key in ("warmup", "pair_pool_size", "val_every", "workers", "seed_offset", "threads"):
            check_range(f"{where}.{key}", getattr(self, key), lo=0)
        if list(self.milestones) != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise ParamsError(f"{where}.milestones: expected increasing positive steps, got {list(self.milestones)}")
        check_range(f"{where}.gamma", self.gamma, lo=0.0, hi=1.0, lo_open=True)
        check_range(f"{where}.ema_decay", self.ema_decay, lo=0.0, hi=1.0, hi_open=True)
        check_range(f"{where}.grad_clip", self.grad_clip, lo=0.0)
        if self.reproducible and self.threads < 1:
            raise ParamsError(f"{where}.threads: expected >= 1 with reproducible: true (the thread count "
                              f"changes CPU float sums), got {self.threads}")
        if self.pair_pool_size % self.batch_size:
            raise ParamsError(f"{where}.pair_pool_size: expected 0 or a multiple of batch_size "
                              f"({self.batch_size}), got {self.pair_pool_size}")
        if self.phase == "net" and (self.perceptual.weight or self.perceptual.style_weight or self.gan.weight):
            raise ParamsError(f"{where}: the net phase trains with the pixel loss only; "
                              f"perceptual.weight and gan.weight must be 0")
        if self.phase == "gan" and self.gan.conditional:
            in_ch = self.discriminator.opts.get("num_in_ch", 3)
            if in_ch != 6:
                raise ParamsError(f"{where}.discriminator.opts.num_in_ch: expected 6 with gan.conditional "
                                  f"(D sees upsampled LR + image), got {in_ch!r}")
        if self.phase == "gan" and not (self.pixel_loss.weight or self.perceptual.weight
                                        or self.perceptual.style_weight or self.gan.weight):
            raise ParamsError(f"{where}: every loss weight is 0 (pixel_loss, perceptual, gan); nothing to train")
        if self.phase == "net" and not self.pixel_loss.weight:
            raise ParamsError(f"{where}.pixel_loss.weight: expected > 0 in the net phase, got 0.0")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def _check_net_opts(where: str, kind: str, net: NetConfig) -> None:
    """Build the net on the meta device (no memory, no time) so a bad option fails at load time."""
    import torch

    from pipeline.models import build_discriminator, build_generator
    try:
        with torch.device("meta"):
            if kind == "generator":
                build_generator(net.name, **net.opts)
            else:
                build_discriminator(net.name, **net.opts)
    except (ValueError, TypeError) as err:
        raise ParamsError(f"{where}: {err}") from None


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` applied: mappings merged key by key, except the WHOLE keys and the `opts` of a
    net whose `name` the user changed (another architecture's options would not fit)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key not in WHOLE:
            sub = dict(out[key])
            if "name" in value and value["name"] != sub.get("name"):
                sub.pop("opts", None)
            out[key] = merge(sub, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def recipe_defaults(recipe: str, phase: str) -> dict[str, Any]:
    """The full set of values `recipe` gives `phase`, as plain data (see the module docstring).

    Raises:
        ValueError: on an unknown recipe or phase.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {list(RECIPES)}")
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; choose from {list(PHASES)}")
    values = to_dict(TrainConfig())
    values["recipe"] = recipe
    values.update(copy.deepcopy(_RECIPES[recipe][phase]))
    if phase == "net":  # Real-ESRNet style: the pixel loss alone
        values["perceptual"] = {**values["perceptual"], "weight": 0.0, "style_weight": 0.0}
        values["gan"] = {**values["gan"], "weight": 0.0}
    return values


_RRDB_X4PLUS = {"name": "rrdbnet", "opts": {"num_feat": 64, "num_block": 23, "num_grow_ch": 32}}
_PIXEL_L1 = {"kind": "l1", "weight": 1.0, "target_usm": False}

# Per recipe and phase, the values that differ from the dataclass defaults (Real-ESRGAN x4plus, gan).
_RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "realesrgan": {
        "net": {"generator": _RRDB_X4PLUS, "lr_g": 2e-4, "iterations": 1_000_000, "milestones": [1_000_000]},
        "gan": {"generator": _RRDB_X4PLUS,
                "discriminator": {"name": "unet_sn", "opts": {"num_feat": 64, "skip_connection": True}}},
    },
    "esrgan": {
        # RRDB_PSNR: lr 2e-4 halved every 200k of 1M steps, batch 16, GT 128.
        "net": {"generator": _RRDB_X4PLUS, "pixel_loss": _PIXEL_L1, "lr_g": 2e-4, "iterations": 1_000_000,
                "milestones": [200_000, 400_000, 600_000, 800_000], "batch_size": 16, "pair_pool_size": 0},
        # ESRGAN: L1 1e-2 + perceptual conv5_4 1.0 + relativistic GAN 5e-3; lr 1e-4 halved at 50k..300k.
        "gan": {"generator": _RRDB_X4PLUS,
                "discriminator": {"name": "vgg", "opts": {"num_feat": 64, "input_size": 128}},
                "pixel_loss": {**_PIXEL_L1, "weight": 1e-2},
                "perceptual": {"weight": 1.0, "layer_weights": {"conv5_4": 1.0}, "target_usm": False},
                "gan": {"kind": "ragan", "weight": 5e-3, "target_usm": False},
                "iterations": 400_000, "milestones": [50_000, 100_000, 200_000, 300_000], "batch_size": 16,
                "pair_pool_size": 0},
    },
    "srgan": {
        # SRResNet-MSE: 1e6 steps at 1e-4; then SRGAN: VGG54 (after ReLU, MSE) + 1e-3 adversarial,
        # 1e5 steps at 1e-4 and 1e5 at 1e-5. Adam β = (0.9, 0.999); no EMA in the paper.
        "net": {"generator": {"name": "srresnet", "opts": {"num_feat": 64, "num_block": 16}},
                "pixel_loss": {"kind": "l2", "weight": 1.0, "target_usm": False},
                "lr_g": 1e-4, "betas": [0.9, 0.999], "iterations": 1_000_000, "milestones": [1_000_000],
                "gamma": 0.1, "batch_size": 16, "ema_decay": 0.0, "pair_pool_size": 0},
        "gan": {"generator": {"name": "srresnet", "opts": {"num_feat": 64, "num_block": 16}},
                "discriminator": {"name": "vgg", "opts": {"num_feat": 64, "input_size": 128}},
                "pixel_loss": {"kind": "l2", "weight": 0.0, "target_usm": False},
                "perceptual": {"weight": 1.0, "layer_weights": {"relu5_4": 1.0}, "criterion": "l2",
                               "target_usm": False},
                "gan": {"kind": "vanilla", "weight": 1e-3, "target_usm": False},
                "lr_g": 1e-4, "lr_d": 1e-4, "betas": [0.9, 0.999], "iterations": 200_000,
                "milestones": [100_000], "gamma": 0.1, "batch_size": 16, "ema_decay": 0.0,
                "pair_pool_size": 0},
    },
    "pix2pix": {
        # U-Net G + 70×70 PatchGAN on cat(input, image); L1 λ = 100 against GAN 1; Adam 2e-4, β1 0.5.
        # pix2pix decays the lr linearly over its second half; here a single ×0.1 step at mid-run.
        "net": {"generator": {"name": "unet", "opts": {"ngf": 64, "depth": 8}},
                "pixel_loss": _PIXEL_L1, "lr_g": 2e-4, "betas": [0.5, 0.999], "iterations": 200_000,
                "milestones": [100_000], "gamma": 0.1, "batch_size": 1, "ema_decay": 0.0,
                "pair_pool_size": 0},
        "gan": {"generator": {"name": "unet", "opts": {"ngf": 64, "depth": 8}},
                "discriminator": {"name": "patchgan", "opts": {"num_in_ch": 6, "num_feat": 64, "n_layers": 3}},
                "pixel_loss": {**_PIXEL_L1, "weight": 100.0},
                "perceptual": {"weight": 0.0},
                "gan": {"kind": "vanilla", "weight": 1.0, "target_usm": False, "conditional": True},
                "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999], "iterations": 200_000,
                "milestones": [100_000], "gamma": 0.1, "batch_size": 1, "ema_decay": 0.0,
                "pair_pool_size": 0},
    },
}

