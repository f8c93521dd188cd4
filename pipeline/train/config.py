"""`train_net` / `train_gan` params: one frozen `TrainConfig`, filled from a recipe, then the user's keys.

    cfg = TrainConfig.for_phase("gan", {"recipe": "realesrgan", "gan": {"weight": 0.05}}, "train_gan")

A **recipe** (`realesrgan` default, `esrgan`, `srgan`, `pix2pix`) gives every key its published value
for the **phase**: `net` trains the generator with the pixel loss only (Real-ESRNet, the PSNR-oriented
pre-training), `gan` adds the perceptual and adversarial losses and starts from the net phase's EMA
weights. The user's keys are merged in by `pipeline.params.merge` (nested sections such as `gan` key by
key; any value, mappings such as `opts` and `layer_weights` and lists such as `milestones` included, as a
whole; a net's `opts` are dropped when its `name` changes), and the result is validated: any problem is
one `ParamsError` line naming the dotted key.

Sources of the recipe values: Real-ESRGAN `options/train_realesrnet_x4plus.yml` and
`train_realesrgan_x4plus.yml`; BasicSR `train_RRDBNet_PSNR_x4.yml` and `train_ESRGAN_x4.yml`
(ESRGAN, Wang et al. 2018); SRGAN (Ledig et al. 2017: SRResNet-MSE, then VGG54 + 1e-3 adversarial);
pix2pix (Isola et al. 2017: U-Net + 70×70 PatchGAN, L1 λ = 100, Adam 2e-4, β1 = 0.5). A `gan.kind: wgan`
section also gets the WGAN paper's critic optimizer (`WGAN_CRITIC`) unless it sets its own.
"""
from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from pipeline.config import UsmConfig, check_threads
from pipeline.params import (Bool, Float, Int, Model, ParamsError, Str, build, check_choice, invalid, merge,
                             to_dict)

PHASES = ("net", "gan")
RECIPES = ("realesrgan", "esrgan", "srgan", "pix2pix")
GAN_KINDS = ("vanilla", "lsgan", "wgan", "wgan-gp", "hinge", "ragan")
# Real-ESRGAN's perceptual layer weights (pre-activation VGG19 features).
REALESRGAN_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
# Keys that only the gan phase reads: setting one under train_net is a mistake worth one line.
GAN_ONLY = ("discriminator", "perceptual", "gan", "lr_d", "optim_d", "d_steps", "init_from", "fake_pool_size")
# WGAN (Arjovsky et al. 2017, Algorithm 1): the clipped critic trains with RMSProp at 5e-5 (momentum-based
# optimizers made it unstable). gan.kind wgan fills these as recipe values (the user's keys still win).
WGAN_CRITIC = {"optim_d": {"name": "rmsprop"}, "lr_d": 5e-5}
# Keys added after checkpoints were written, with their off values: `to_dict` (the checkpoint's config and its
# hash) leaves a key out while it has this value, so a run started before the key existed still resumes.
ADDED_KEYS: dict[str, Any] = {"optim_d": {"name": "adam", "alpha": 0.99}, "fake_pool_size": 0, "online": False,
                              "perceptual.sha256": ""}

Weight = Annotated[Float, Field(ge=0.0)]  # a loss factor; 0 disables


def _increasing(steps: tuple[int, ...]) -> tuple[int, ...]:
    if list(steps) != sorted(set(steps)) or any(m < 1 for m in steps):
        raise invalid("", f"expected increasing positive steps, got {list(steps)}")
    return steps


class NetConfig(Model):
    name: Str = "rrdbnet"                                  # pipeline.models name
    opts: dict[Str, Any] = Field(default_factory=dict)     # constructor options, public names (num_feat, ...)


class PixelLossConfig(Model):
    kind: Literal["l1", "l2", "charbonnier"] = "l1"
    weight: Weight = 1.0         # 0 disables
    target_usm: Bool = True      # compare with the USM-sharpened HR (Real-ESRGAN l1_gt_usm)


class PerceptualConfig(Model):
    weight: Weight = 1.0         # VGG19 feature loss factor; 0 disables (no VGG weights needed then)
    layer_weights: dict[Str, Weight] = Field(default_factory=lambda: dict(REALESRGAN_LAYER_WEIGHTS))
    criterion: Literal["l1", "l2"] = "l1"
    style_weight: Weight = 0.0   # Gram-matrix style loss factor; 0 disables
    weights: Str = ""            # vgg19-dcbb9e9d.pth path; '' = torch hub cache (never downloaded)
    sha256: Str = ""             # the weights file's full sha256 for a file that is not torchvision's
                                 # (a converted one); '' = its sha256 must start with dcbb9e9d
    target_usm: Bool = True      # Real-ESRGAN percep_gt_usm

    @model_validator(mode="after")
    def _some_layer(self) -> PerceptualConfig:
        if (self.weight > 0 or self.style_weight > 0) and not self.layer_weights:
            raise invalid("layer_weights", "expected at least one VGG19 layer, got {}")
        if self.sha256 and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise invalid("sha256", f"expected '' or 64 lowercase hex digits, got {self.sha256!r}")
        return self


class GanConfig(Model):
    kind: Literal["vanilla", "lsgan", "wgan", "wgan-gp", "hinge", "ragan"] = "vanilla"
    weight: Weight = 0.1         # adversarial loss factor in the generator loss; 0 disables D entirely
    label_smoothing: Float = Field(0.0, ge=0.0, lt=1.0)  # one-sided: real target 1 - s (vanilla, lsgan); 0 disables
    gp_weight: Weight = 10.0     # wgan-gp gradient penalty λ
    clip: Float = Field(0.01, gt=0.0)  # wgan critic weight clipping to [-clip, clip]
    target_usm: Bool = False     # D's real images are USM-sharpened HR (Real-ESRGAN gan_gt_usm)
    conditional: Bool = False    # pix2pix: D sees cat(upsampled LR, image) (needs num_in_ch 6)

    @model_validator(mode="after")
    def _smoothing(self) -> GanConfig:
        if self.label_smoothing and self.kind not in ("vanilla", "lsgan"):
            raise invalid("label_smoothing", f"applies to kind vanilla or lsgan only, "
                                             f"got {self.label_smoothing!r} with kind {self.kind!r}")
        return self


Beta = Annotated[Float, Field(ge=0.0, lt=1.0)]


class OptimConfig(Model):
    name: Literal["adam", "rmsprop"] = "adam"   # adam uses `betas`; rmsprop is the WGAN paper's critic optimizer
    alpha: Float = Field(0.99, ge=0.0, lt=1.0)  # rmsprop: decay of the squared-gradient average


Positive = Annotated[Int, Field(ge=1)]
NonNegative = Annotated[Int, Field(ge=0)]


class ProgressiveConfig(Model):
    """ProSR / ProGAN progressive growing of the generator (net phase, rrdbnet x4 or x8; train.progressive)."""
    enabled: Bool = False                   # off: the generator trains at full scale from step 0
    stage_steps: tuple[Positive, ...] = (1000,)  # steps in each stage before the next grows in: [x2] for scale 4,
                                            # [x2, x4] for scale 8; the last stage runs to `iterations`
    fade_steps: NonNegative = 500           # the first steps of each new stage, with 0 < α < 1; 0 = no fade


class TrainConfig(Model):
    """One training phase. Defaults are Real-ESRGAN x4plus, gan phase; `for_phase` fills any recipe."""
    recipe: Literal["realesrgan", "esrgan", "srgan", "pix2pix"] = "realesrgan"
    phase: Literal["net", "gan"] = "gan"           # set by for_phase from the section name
    generator: NetConfig = NetConfig(name="rrdbnet")
    discriminator: NetConfig = NetConfig(name="unet_sn", opts={"num_feat": 64})
    pixel_loss: PixelLossConfig = PixelLossConfig()
    perceptual: PerceptualConfig = PerceptualConfig()
    gan: GanConfig = GanConfig()
    usm: UsmConfig = UsmConfig()
    lr_g: Float = Field(1e-4, gt=0.0)    # Adam learning rate of the generator
    lr_d: Float = Field(1e-4, gt=0.0)    # learning rate of the discriminator
    optim_d: OptimConfig = OptimConfig()  # D's optimizer; gan.kind wgan defaults to RMSProp, lr_d 5e-5 (WGAN_CRITIC)
    betas: tuple[Beta, Beta] = (0.9, 0.99)
    d_steps: Positive = 1                   # D updates per G update (WGAN critics: 5); G steps every d_steps-th step
    iterations: Positive = 400_000          # total optimisation steps (raising it later resumes, not restarts)
    batch_size: Positive = 12               # per process (per GPU); effective batch = batch_size × world size
    warmup: NonNegative = 0                    # linear lr warm-up, steps; 0 disables
    milestones: Annotated[tuple[Int, ...], AfterValidator(_increasing)] = (400_000,)
                                         # steps at which the lr is multiplied by gamma (MultiStepLR)
    gamma: Float = Field(0.5, gt=0.0, le=1.0)
    ema_decay: Float = Field(0.999, ge=0.0, lt=1.0)  # EMA of the generator weights (params_ema); 0 = params_ema is params
    ema_warmup: Bool = True              # decay min(ema_decay, 1 - (1 + step)^(-2/3)), as timm's model EMA:
                                         # early params_ema follow the trained weights, not the initialisation
    amp: Literal["auto", "off", "bf16"] = "auto"  # auto = bf16 autocast on a CUDA GPU with bf16, else off
    channels_last: Bool = False          # NHWC memory format (faster convs on tensor cores)
    compile: Bool = False                # torch.compile the training nets
    pair_pool_size: NonNegative = 180          # Real-ESRGAN's training-pair queue, samples; 0 disables
    fake_pool_size: NonNegative = 0            # past fakes D also sees (SimGAN, CycleGAN: 50), per process; 0 disables
    augment: Bool = True                 # paired flips and 90° rotations (the 8 symmetries of the square)
    online: Bool = False                 # degrade HR tiles (paths.hr) in the loader, afresh each epoch (README)
    max_nonfinite: Positive = 20            # stop after this many non-finite steps in a row (each is skipped)
    grad_clip: Float = Field(0.0, ge=0.0)  # max gradient norm of each net; 0 disables
    checkpoint_every: Positive = 5000       # steps between checkpoints (one is always written at the end)
    keep_last: Positive = 3                 # checkpoints kept
    val_every: NonNegative = 5000              # steps between validations; 0 = only at the end
    val_batches: Positive = 4               # val batches (of batch_size) scored each time
    log_every: Positive = 100               # steps between logged loss averages
    workers: NonNegative = 0                   # data-loading processes per rank; 0 = in the training process
    seed_offset: NonNegative = 0               # added to params.yaml `seed` for this phase
    init_from: Str = ""                  # gan phase: generator export to start from; '' = <paths.models>/net/generator.pth
    device: Literal["auto", "cpu", "cuda"] = "auto"
    reproducible: Bool = False           # CPU: the same bytes on any AVX2 x86-64 machine (pipeline.numerics); slower
                                         # where the machine has AVX-512 or more cores than `threads`
    threads: NonNegative = 0                   # CPU threads (0 = PyTorch's default, all cores); >= 1 with reproducible
    progressive: ProgressiveConfig = ProgressiveConfig()  # grow G x2 → x4 (→ x8); README "Progressive training"

    @classmethod
    def for_phase(cls, phase: str, section: Mapping[str, Any] | None, where: str) -> TrainConfig:
        """Fill `recipe`'s values for `phase` ('net' or 'gan'), merge `section` in, validate.

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
        base = recipe_defaults(recipe, phase)
        gan = section.get("gan")
        if (gan.get("kind", base["gan"]["kind"]) if isinstance(gan, Mapping) else base["gan"]["kind"]) == "wgan":
            base.update(copy.deepcopy(WGAN_CRITIC))
        for net in ("generator", "discriminator"):  # another architecture's options would not fit
            given = section.get(net)
            if isinstance(given, Mapping) and given.get("name", base[net]["name"]) != base[net]["name"]:
                base[net].pop("opts", None)
        return build(cls, {**merge(cls, base, section), "phase": phase}, where)

    def to_dict(self) -> dict[str, Any]:
        """As plain data (the checkpoint's config and its hash), without what a run that does not use it
        never had: the `ADDED_KEYS` at their off value and the `_OFF_BLOCKS` that are off. So such a run
        resumes from checkpoints written before those keys existed."""
        out = {k: v for k, v in to_dict(self).items() if k not in _OFF_BLOCKS or getattr(self, k).enabled}
        for dotted, off in ADDED_KEYS.items():
            *parents, key = dotted.split(".")
            section = functools.reduce(lambda d, k: d[k], parents, out)
            if section.get(key) == off:
                del section[key]
        return out

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        """Checks across keys; the nets are built on the meta device so a bad option fails at load time."""
        from pipeline.models import DISCRIMINATORS, GENERATORS  # torch import only when a train section loads
        check_choice("generator.name", self.generator.name, sorted(GENERATORS))
        check_choice("discriminator.name", self.discriminator.name, sorted(DISCRIMINATORS))
        _check_net_opts("generator", self.generator)
        _check_net_opts("discriminator", self.discriminator)
        check_threads(self.reproducible, self.threads)
        if self.pair_pool_size % self.batch_size:
            raise invalid("pair_pool_size", f"expected 0 or a multiple of batch_size ({self.batch_size}), "
                                            f"got {self.pair_pool_size}")
        _check_losses(self)
        _check_progressive(self)
        return self


def _check_losses(cfg: TrainConfig) -> None:
    """Which losses a phase may and must have."""
    if cfg.phase == "net" and (cfg.perceptual.weight or cfg.perceptual.style_weight or cfg.gan.weight):
        raise invalid("", "the net phase trains with the pixel loss only; perceptual.weight and gan.weight must be 0")
    if cfg.phase == "gan" and cfg.gan.conditional:
        in_ch = cfg.discriminator.opts.get("num_in_ch", 3)
        if in_ch != 6:
            raise invalid("discriminator.opts.num_in_ch", f"expected 6 with gan.conditional "
                                                          f"(D sees upsampled LR + image), got {in_ch!r}")
    if cfg.phase == "gan" and not (cfg.pixel_loss.weight or cfg.perceptual.weight
                                   or cfg.perceptual.style_weight or cfg.gan.weight):
        raise invalid("", "every loss weight is 0 (pixel_loss, perceptual, gan); nothing to train")
    if cfg.phase == "net" and not cfg.pixel_loss.weight:
        raise invalid("pixel_loss.weight", "expected > 0 in the net phase, got 0.0")


_OFF_BLOCKS = ("progressive",)  # settings blocks with `enabled`, left out of to_dict() while off


def _check_progressive(cfg: TrainConfig) -> None:
    """Progressive growing trains an RRDBNet from scratch: the net phase (the gan phase starts grown)."""
    if not cfg.progressive.enabled:
        return
    if cfg.phase == "gan":
        raise invalid("progressive.enabled", "a net-phase option (the gan phase starts from the grown net-phase "
                                             "export); set it under train_net")
    if cfg.generator.name != "rrdbnet":
        raise invalid("progressive.enabled", f"grows an rrdbnet generator, "
                                             f"got generator.name {cfg.generator.name!r}")


def _check_net_opts(kind: str, net: NetConfig) -> None:
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
        raise invalid(f"{kind}.opts", str(err)) from None


def recipe_defaults(recipe: str, phase: str) -> dict[str, Any]:
    """The full set of values `recipe` gives `phase`, as plain data (see the module docstring).

    Raises:
        ValueError: on an unknown recipe or phase.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {list(RECIPES)}")
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; choose from {list(PHASES)}")
    values = to_dict(TrainConfig.model_construct())  # the defaults, not validated
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

