"""The learned degrader as a preset step: `{name: learned, op: learned, checkpoint: OUT/degrader.pth,
strength_range: [0.8, 1.0]}` after the step that resizes to the LR size.

The step's recipe entry is the user op `pipeline.learned.op:apply_learned` with params `checkpoint`
(the path as the preset gives it), `sha256` (of the file when the recipe was drawn) and `strength`
(α, drawn per sample): the LR is quantize(x + α·G.residual_of([x, z])), z the generator's noise
channels drawn from the step's recorded seed (a degrader trained with `noise: 0`, and every one
written before the noise input existed, has none: then the seed is recorded but unused). So the
per-sample randomness is α and z (and whatever the preset draws around them), all replayable.

Bytes: the net runs on the CPU in float32 with torch's thread count set to 1 for the call (and put
back after), one image at a time, so a sample's bytes do not depend on the batch size, the worker
count or the machine's cores. They can differ between CPUs with other vector units (AVX2 vs AVX-512
code paths, `pipeline.numerics`); replay on the machine that wrote a set is exact.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io.digest import sha256_file

FUNCTION = "pipeline.learned.op:apply_learned"
DEGRADER_KIND = "realsynth-learned-degrader"  # the `kind` entry of degrader.pth
DEGRADER_FORMAT = 2  # 1 (no `format` entry): 3 input channels; 2: + the noise channels (opts num_in_ch)


def learned_preset(checkpoint: str, scale: int, interp: str, strength_range: tuple[float, float] = (0.8, 1.0),
                   name: str = "learned", jpeg_quality: int = 0) -> dict[str, Any]:
    """Preset data: resize to the LR size as the degrader's training did, the learned step, then (when
    the training had the codec in the loop, jpeg_quality > 0) a JPEG at that quality.
    `pipeline.degrade.preset.dump_preset(parse_preset(data))` is its file."""
    steps = [{"name": "resize_final", "op": "resize_lr", "interps": [interp]},
             {"name": "learned", "op": "learned", "checkpoint": str(checkpoint), "strength_range": list(strength_range)}]
    if jpeg_quality:
        steps.append({"name": "jpeg_final", "op": "jpeg", "quality_range": [jpeg_quality, jpeg_quality]})
    return {"name": name, "scale": scale, "steps": steps}


def checkpoint_digest(path: str | os.PathLike) -> str:
    """sha256 of the checkpoint file, cached per (path, size, mtime). Raises FileNotFoundError naming it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: learned degrader checkpoint not found")
    st = p.stat()
    return _digest(str(p.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def learned_sources(checkpoint: str) -> dict[str, str]:
    """sha256 of a `learned` step's checkpoint and of the code that runs it (this module, the net's),
    for the incremental degrade's fingerprint (`degrade.incremental`): a retrained degrader at the
    same path must not reuse the samples of the old one."""
    from pipeline.models import cyclegan
    return {f"learned:{checkpoint}": checkpoint_digest(checkpoint), "learned:op": sha256_file(__file__),
            "learned:net": sha256_file(cyclegan.__file__)}


def load_degrader(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """(generator in eval mode, meta) from a degrader.pth, loaded with weights_only=True.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a realsynth learned degrader.
    """
    import torch

    from pipeline.models.cyclegan import CycleGANGenerator

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: learned degrader checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same one-line error
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != DEGRADER_KIND:
        raise ValueError(f"{path}: not a learned degrader (expected kind {DEGRADER_KIND!r}; "
                         "write one with realsynth learn-degradation)")
    if ckpt.get("format", 1) not in (1, DEGRADER_FORMAT):
        raise ValueError(f"{path}: learned degrader format {ckpt.get('format')!r}; this realsynth reads "
                         f"formats 1 to {DEGRADER_FORMAT} (retrain it, or update realsynth)")
    opts = dict(ckpt["opts"])
    net = CycleGANGenerator(**opts)
    net.load_state_dict(ckpt["params"], strict=True)
    net.noise_channels = opts.get("num_in_ch", 3) - opts.get("num_out_ch", 3)
    return net.eval(), {**ckpt["meta"], "noise": net.noise_channels}


@functools.lru_cache(maxsize=4)
def _cached(path: str, sha256: str) -> Any:
    if checkpoint_digest(path) != sha256:
        raise ValueError(f"{path}: learned degrader changed since the recipe was drawn "
                         f"(sha256 {checkpoint_digest(path)[:12]}..., recipe {sha256[:12]}...)")
    return load_degrader(path)[0]


def degrade_lr(net: Any, img: np.ndarray, strength: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """x + strength·net.residual_of([x, z]), single-threaded on the CPU; z: the net's noise channels
    (`noise_channels`, set by `load_degrader`), N(0, 1) drawn from `rng` (needed when there are any).
    img: (H, W, 3) float32. Returns (H, W, 3) float32 (not clipped: the recipe's final quantize does)."""
    import torch

    noise = getattr(net, "noise_channels", 0)
    if noise and rng is None:
        raise ValueError("degrade_lr: this degrader has noise channels and needs an rng")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(img, np.float32).transpose(2, 0, 1)[None].copy())
            if noise:
                z = rng.standard_normal((1, noise, *x.shape[-2:]), dtype=np.float32)
                x_in = torch.cat([x, torch.from_numpy(z)], dim=1)
            else:
                x_in = x
            out = x + float(strength) * net.residual_of(x_in)
    finally:
        torch.set_num_threads(threads)
    return out[0].numpy().transpose(1, 2, 0).astype(np.float32, copy=True)


def apply_learned(img: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """The `learned` step (a user op, `pipeline.degrade.userops`): params checkpoint, sha256, strength.
    Raises FileNotFoundError / ValueError naming the checkpoint when it is missing or changed."""
    net = _cached(str(params["checkpoint"]), str(params["sha256"]))
    return degrade_lr(net, img, float(params["strength"]), rng)
