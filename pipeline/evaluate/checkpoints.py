"""Any generator checkpoint as an upscaler: realsynth's loader first, then spandrel's.

    up, info = load_upscaler(Path("4x-SwinIR.pth"), "cpu", scale=4)
    sr = up(lr)          # (h, w, 3) uint8 RGB → (4h, 4w, 3) uint8 RGB

`pipeline.infer.load_generator` knows our exports and the public BasicSR / Real-ESRGAN RRDBNet and
SRVGGNetCompact files; anything else goes to spandrel (MIT; the core package only, not
`spandrel_extra_arches`, whose architectures carry non-commercial licences), which detects SwinIR,
HAT, RCAN, SPAN, DAT, OmniSR, … from the keys and shapes. Both read local files only. The file is read
with `torch.load(weights_only=True)` (or safetensors) here and spandrel is handed the state dict:
its own `load_from_file` unpickles with a restricted unpickler instead, and DESIGN §3 asks for
`weights_only` everywhere.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.infer import WEIGHTS, load_generator, resolve_device, upscale

__all__ = ["SpandrelNet", "Upscaler", "describe", "load_any_generator", "load_upscaler"]

Upscaler = Callable[[np.ndarray], np.ndarray]


class SpandrelNet(nn.Module):
    """A spandrel `ImageModelDescriptor` as a plain module for `pipeline.infer.upscale`: the
    descriptor pads to its size requirements, crops the padding off and clamps to [0, 1].

    x: (1, 3, H, W) float in [0, 1] → (1, 3, scale·H, scale·W)."""

    def __init__(self, descriptor: Any) -> None:
        super().__init__()
        self.model = descriptor.model      # registered, so .to() and .parameters() reach the weights
        self._descriptor = descriptor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._descriptor(x)


def load_any_generator(path: str | Path, device: str | torch.device = "cpu", *, scale: int | None = None,
                       weights: str = "params_ema") -> tuple[nn.Module, dict[str, Any]]:
    """Load a generator checkpoint with realsynth's loader, or else spandrel's; return (net, info).

    The net is in eval mode on `device`, gradients off. `info`: `name` (architecture), `opts`,
    `scale`, `weights` (the checkpoint key used, or 'state_dict'), `loader` ('realsynth' or
    'spandrel'), `tiling` ('supported', 'discouraged' or 'internal': the model needs the whole image)
    and `bfloat16` (False when the architecture's author says it breaks in bfloat16).
    `scale`: the scale the caller needs (None: any). `weights`: as in `load_generator`.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: one line naming the file: neither loader knows it, it is not a 3-channel
            image-to-image model, or its scale is not `scale`.
    """
    path = Path(path)
    try:
        net, ckpt_scale, info = load_generator(path, device, weights=weights)
        info = dict(info, loader="realsynth", tiling="supported", bfloat16=True)
        del info["arch_from"]
    except ValueError as ours:
        if not path.is_file():
            raise
        net, info = _load_spandrel(path, device, weights, ours)
        ckpt_scale = info["scale"]
    if scale is not None and ckpt_scale != scale:
        raise ValueError(f"{path}: a {info['name']} x{ckpt_scale} checkpoint, expected scale {scale}")
    return net, info


def load_upscaler(path: str | Path, device: str | torch.device = "cpu", *, scale: int | None = None,
                  weights: str = "params_ema", tile: int = 0, overlap: int = 16,
                  dtype: torch.dtype | None = None) -> tuple[Upscaler, dict[str, Any]]:
    """`load_any_generator`, wrapped as an image → image function through `pipeline.infer.upscale`.

    tile/overlap: as in `upscale` (0: whole image); a model that tiles internally always gets the
    whole image. dtype: as in `upscale` (None: bfloat16 autocast on CUDA, float32 on CPU), float32
    for a model that does not support bfloat16. Returns (upscaler, info); info adds `tile` (used).
    Raises as `load_any_generator`.
    """
    dev = resolve_device(device)
    net, info = load_any_generator(path, dev, scale=scale, weights=weights)
    if info["tiling"] == "internal":
        tile = 0
    if dtype is None and not info["bfloat16"]:
        dtype = torch.float32
    info["tile"] = tile
    s = info["scale"]

    def up(img: np.ndarray) -> np.ndarray:
        return upscale(net, img, s, tile=tile, overlap=overlap, device=dev, dtype=dtype)
    return up, info


def describe(path: str | Path, info: Mapping[str, Any]) -> str:
    """One line for reports: `G.pth`: SwinIR x4 (spandrel; tags), `params_ema` weights."""
    opts = ", ".join(f"{k}={v}" for k, v in sorted(info["opts"].items()))
    return (f"`{path}`: {info['name']} x{info['scale']} ({info['loader']}{'; ' + opts if opts else ''}), "
            f"`{info['weights']}` weights")


def _read_state(path: Path) -> Mapping:
    """The file's top-level mapping: safetensors, or `torch.load(weights_only=True)`."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path), device="cpu")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def _load_spandrel(path: Path, device, weights: str, ours: ValueError) -> tuple[nn.Module, dict[str, Any]]:
    """spandrel's architecture detection on the checkpoint's `weights` (or what it unwraps itself).
    Raises ValueError naming both loaders' reasons when neither knows the file."""
    import spandrel

    theirs = None
    try:
        ckpt = _read_state(path)
        key = weights if isinstance(ckpt.get(weights), Mapping) else None
        if key is None and weights == "params_ema" and isinstance(ckpt.get("params"), Mapping):
            key = "params"  # training without EMA writes only `params` (as load_generator)
        if key is None and any(isinstance(ckpt.get(k), Mapping) for k in WEIGHTS):
            raise ValueError(f"no {weights!r} weights in this checkpoint")  # never the other ones instead
        state = dict(ckpt[key]) if key else spandrel.canonicalize_state_dict(dict(ckpt))
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except Exception as err:  # noqa: BLE001 - unpickling, detection and shape errors all mean "unknown"
        theirs = " ".join(str(err).split())[:160] or type(err).__name__
    if theirs is not None:
        mine = str(ours).removeprefix(f"{path}: ")
        raise ValueError(f"{path}: not a generator realsynth knows ({mine}) nor one spandrel detects ({theirs})") \
            from None
    name = descriptor.architecture.name
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ValueError(f"{path}: spandrel loads it as {name}, which is not an image-to-image model (inpainting?)")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise ValueError(f"{path}: {name} maps {descriptor.input_channels} channels to "
                         f"{descriptor.output_channels}; scoring needs RGB in and out (3 → 3)")
    descriptor.eval().to(resolve_device(device))
    descriptor.model.requires_grad_(False)
    info = dict(name=name, opts={"tags": " ".join(descriptor.tags)} if descriptor.tags else {},
                scale=int(descriptor.scale), weights=key or "state_dict", loader="spandrel",
                tiling=descriptor.tiling.name.lower(), bfloat16=bool(descriptor.supports_bfloat16))
    return SpandrelNet(descriptor), info

