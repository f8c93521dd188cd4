"""SR model zoo: generators and discriminators looked up by name in plain dicts.

    net_g = build_generator("rrdbnet", scale=4, num_block=6)       # public x4plus-anime shape
    net_d = build_discriminator("unet_sn", num_feat=64)
    name, opts, scale = generator_from_state_dict(torch.load(path, weights_only=True))
    net_g, scale = load_generator(torch.load(path, weights_only=True))

Options keep the public names (RRDBNet `num_feat`, `num_block`, `num_grow_ch`; SRVGGNetCompact
`num_feat`, `num_conv`, `act_type`); the scale is always the `scale` argument (SRVGGNetCompact calls it
`upscale` inside).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .discriminators import DCGANDiscriminator, NLayerDiscriminator, UNetDiscriminatorSN, VGGStyleDiscriminator
from .rrdbnet import RRDBNet, checkpoint_filter_fn, infer_rrdbnet
from .srresnet import SRResNet, infer_srresnet
from .srvgg import SRVGGNetCompact, infer_srvgg
from .unet import UNetGenerator

__all__ = [
    "GENERATORS", "DISCRIMINATORS", "build_generator", "build_discriminator", "generator_from_state_dict",
    "load_generator", "RRDBNet", "SRVGGNetCompact", "SRResNet", "UNetGenerator", "UNetDiscriminatorSN",
    "VGGStyleDiscriminator", "NLayerDiscriminator", "DCGANDiscriminator",
]

GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "rrdbnet": RRDBNet,
    "srresnet": SRResNet,
    "srvgg": SRVGGNetCompact,
    "unet": UNetGenerator,
}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "unet_sn": UNetDiscriminatorSN,
    "vgg": VGGStyleDiscriminator,
    "patchgan": NLayerDiscriminator,
    "dcgan": DCGANDiscriminator,
}
# The constructor keyword that receives `scale` (the public SRVGGNetCompact calls it `upscale`).
_SCALE_KEYWORD = {"rrdbnet": "scale", "srresnet": "scale", "srvgg": "upscale", "unet": "scale"}


def _lookup(kind: str, registry: Mapping[str, Callable[..., nn.Module]], name: str) -> Callable[..., nn.Module]:
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose from {sorted(registry)}")
    return registry[name]


def _check_options(kind: str, name: str, ctor: Callable[..., nn.Module], opts: Mapping[str, Any],
                   reserved: tuple[str, ...] = ()) -> None:
    allowed = sorted(p for p in inspect.signature(ctor).parameters if p not in reserved)
    for key in opts:
        if key in reserved:
            raise ValueError(f"option {key!r} of {kind} {name!r} is set by the scale argument; "
                             f"pass scale=... instead")
        if key not in allowed:
            raise ValueError(f"unknown option {key!r} for {kind} {name!r}; allowed options: {allowed}")


def build_generator(name: str, scale: int = 4, **opts: Any) -> nn.Module:
    """Build generator `name` ('rrdbnet', 'srresnet', 'srvgg', 'unet') for `scale`.

    Every generator maps (B, C, H, W) → (B, C, scale·H, scale·W); see each class for the scales it
    supports and its options (defaults: the public shapes).

    Raises:
        ValueError: on an unknown name, an unknown option (naming the allowed ones) or a bad value.

    Example:
        >>> import torch
        >>> build_generator("rrdbnet", scale=2, num_feat=8, num_block=1)(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 16, 16])
    """
    ctor = _lookup("generator", GENERATORS, name)
    keyword = _SCALE_KEYWORD[name]
    _check_options("generator", name, ctor, opts, reserved=("scale", "upscale"))
    if not isinstance(scale, int) or isinstance(scale, bool):
        raise ValueError(f"generator scale must be an int, got {scale!r}")
    return ctor(**{keyword: scale}, **opts)


def build_discriminator(name: str, **opts: Any) -> nn.Module:
    """Build discriminator `name` ('dcgan', 'patchgan', 'unet_sn', 'vgg'); all return logits.

    Outputs: unet_sn (B, 1, H, W); patchgan (B, 1, h, w); vgg and dcgan (B, 1).

    Raises:
        ValueError: on an unknown name, an unknown option (naming the allowed ones) or a bad value.
    """
    ctor = _lookup("discriminator", DISCRIMINATORS, name)
    _check_options("discriminator", name, ctor, opts)
    return ctor(**opts)


def generator_from_state_dict(state_dict: Mapping[str, Any]) -> tuple[str, dict[str, Any], int]:
    """Detect the generator of a checkpoint and infer its hyperparameters and scale from shapes.

    Accepts a bare state dict or a checkpoint dict with `params_ema`/`params` (preferred in that
    order), new or old (ESRGAN `model.N`) RRDBNet keys, SRVGGNetCompact and SRResNet keys.
    `build_generator(name, scale=scale, **opts)` rebuilds the net; `load_generator` also loads it.

    Returns:
        (name, opts, scale), e.g. ('rrdbnet', {'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64,
        'num_block': 23, 'num_grow_ch': 32}, 4).

    Raises:
        ValueError: for a key layout that is none of these, or shapes that fit no supported scale.
    """
    state = checkpoint_filter_fn(state_dict)
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        name = "rrdbnet"
        opts, scale = infer_rrdbnet(state)
    elif "conv_first.weight" in state and "body.0.conv1.weight" in state:
        name = "srresnet"
        opts, scale = infer_srresnet(state)
    elif "body.0.weight" in state and state["body.0.weight"].ndim == 4 and "conv_first.weight" not in state:
        name = "srvgg"
        opts, scale = infer_srvgg(state)
    elif "down.0.0.weight" in state and "up.0.1.weight" in state:
        raise ValueError("unet checkpoint: the U-Net runs on a bicubically pre-upsampled input, so its "
                         "weights do not record the scale; build it with build_generator('unet', scale=...)")
    else:
        sample = sorted(state)[:4]
        raise ValueError("unknown generator checkpoint layout: expected RRDBNet keys (conv_first.weight, "
                         "body.0.rdb1.conv1.weight), SRVGGNetCompact keys (body.0.weight) or SRResNet keys "
                         f"(conv_first.weight, body.0.conv1.weight); got {len(state)} keys starting {sample}")
    return name, dict(opts), int(scale)


def load_generator(state_dict: Mapping[str, Any]) -> tuple[nn.Module, int]:
    """Build the generator a checkpoint describes and load its weights strictly; return (net, scale).

    The net is in eval mode. `state_dict` is as for `generator_from_state_dict`.

    Raises:
        ValueError: for an unknown layout; RuntimeError (from load_state_dict) if keys or shapes
            disagree with the inferred architecture.
    """
    name, opts, scale = generator_from_state_dict(state_dict)
    net = build_generator(name, scale=scale, **opts)
    net.load_state_dict(checkpoint_filter_fn(state_dict), strict=True)
    return net.eval(), scale

