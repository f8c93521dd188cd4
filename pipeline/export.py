"""ONNX export of a generator checkpoint: dynamic height and width, checked with onnxruntime.

    info = export_checkpoint("models/gan/generator.pth", "G.onnx")      # fp32, opset 17
    sess = onnxruntime.InferenceSession("G.onnx", providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": x})[0]     # (N, 3, H, W) float32 RGB in [0, 1] → (N, 3, sH, sW)

The graph takes and gives what the generator does: input `input`, (N, C, H, W) RGB in [0, 1]; output
`output`, (N, C', scale·H, scale·W), not clipped (clip to [0, 1] and round as `upscale` does);
float32, or float16 throughout with `fp16`. N, H and W are free. RRDBNet x2 and x1 pixel-unshuffle
their input, so H and W must be multiples of 2 and 4; for them the graph reflect-pads the input up
to the multiple and crops the output, as `pipeline.infer` does, so any size of at least 4 px works.
The model's metadata carries `realsynth.arch`, `realsynth.opts` (JSON), `realsynth.scale`,
`realsynth.weights` and `realsynth.dtype`, so a deployment can read the scale off the file.

Exporter: the TorchScript-based one (`dynamo=False`): it handles dynamic H and W with symbolic
shapes and needs nothing beyond `onnx`; the dynamo exporter would add `onnxscript` and
`torch.export` range constraints on H and W. Every export is verified before it is written:
onnxruntime (CPU) runs it at two sizes other than the traced one, odd sizes included, and its
output must be within `tolerance` of the float32 PyTorch net's (`check_onnx`).
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import io
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DEFAULT_OPSET", "OPSETS", "TOLERANCE", "check_onnx", "export_checkpoint", "to_onnx"]

DEFAULT_OPSET = 17
OPSETS = range(11, 21)  # 11: Pad with runtime pads; 20: the TorchScript exporter's newest
# largest |ONNX - PyTorch float32| accepted by the check, in [0, 1] units: 1 grey level for float32;
# float16 rounds every activation to 11 significant bits, so it gets a wider margin
TOLERANCE = {"float32": 1 / 255, "float16": 4 / 255}
CHECK_SIZES = ((19, 28), (28, 13))  # (H, W) run by check_onnx: odd, and other than the traced size
# traced at an odd size: a net that pads to a multiple of 2^k only when it must (UNet) then records
# its pad, which for an odd size is needed whenever it is needed for any size
_TRACE_SIZE = 23


class _PadToMultiple(nn.Module):
    """Reflect-pad H and W up to a multiple of `multiple`, run `net`, crop the output back to
    scale·(H, W): the export form of `pipeline.infer._run` for nets that pixel-unshuffle."""

    def __init__(self, net: nn.Module, multiple: int, scale: int) -> None:
        super().__init__()
        self.net, self.multiple, self.scale = net, multiple, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        pad_h = (self.multiple - h % self.multiple) % self.multiple
        pad_w = (self.multiple - w % self.multiple) % self.multiple
        y = self.net(F.pad(x, (0, pad_w, 0, pad_h), mode="reflect"))
        return y[..., : h * self.scale, : w * self.scale]


def _exportable(net: nn.Module, scale: int) -> nn.Module:
    multiple = int(getattr(net, "unshuffle", 1) or 1)
    return _PadToMultiple(net, multiple, scale) if multiple > 1 else net


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the legacy exporter's deprecation notice and the tracer's notes on shape checks (RRDBNet
    asserts H and W are multiples; the pad above makes that true for every size)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        yield


def to_onnx(net: nn.Module, scale: int, *, opset: int = DEFAULT_OPSET, fp16: bool = False,
            metadata: dict[str, str] | None = None) -> bytes:
    """Serialise `net` (eval mode, any device) to an ONNX model with dynamic N, H and W.

    The net is copied to the CPU (in float16 with `fp16`); `net` itself is left as it was.
    metadata: extra string properties stored in the model.
    Returns the model's bytes.

    Raises:
        ValueError: `opset` outside `OPSETS`, or the exporter refuses the net (one line).
    """
    if not isinstance(opset, int) or opset not in OPSETS:
        raise ValueError(f"opset must be an int in {OPSETS.start}..{OPSETS.stop - 1}, got {opset!r}")
    import onnx

    dtype = torch.float16 if fp16 else torch.float32
    module = _exportable(copy.deepcopy(net).to("cpu", dtype).eval(), scale)
    gen = torch.Generator().manual_seed(0)  # the trace's values do not matter; the global RNG stays untouched
    x = torch.rand(1, _first_conv_channels(net), _TRACE_SIZE, _TRACE_SIZE, generator=gen).to(dtype)
    kw: dict[str, Any] = dict(input_names=["input"], output_names=["output"], opset_version=opset,
                              dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                            "output": {0: "batch", 2: "out_height", 3: "out_width"}})
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kw["dynamo"] = False
    buf = io.BytesIO()
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(module, (x,), buf, **kw)
    except Exception as err:  # noqa: BLE001 - the exporter raises many kinds; all mean "not exportable"
        raise ValueError(f"ONNX export failed at opset {opset}: {' '.join(str(err).split())[:300]}") from None
    model = onnx.load_from_string(buf.getvalue())
    props = {"realsynth.scale": str(scale), "realsynth.dtype": "float16" if fp16 else "float32", **(metadata or {})}
    onnx.helper.set_model_props(model, props)
    return model.SerializeToString()


def _first_conv_channels(net: nn.Module) -> int:
    """The input channels the net expects (its first conv's, before any pixel-unshuffle)."""
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    return conv.in_channels // int(getattr(net, "unshuffle", 1) or 1) ** 2


def _smooth_image(h: int, w: int, channels: int, seed: int) -> np.ndarray:
    """(1, C, H, W) float32 in [0, 1]: blurred noise, a stand-in for a photo's structure."""
    import cv2

    noise = np.random.default_rng(seed).random((h, w, channels)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), 1.5).reshape(h, w, channels)
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None])


def check_onnx(model: bytes | str | Path, net: nn.Module, scale: int, *,
               sizes: Sequence[tuple[int, int]] = CHECK_SIZES, seed: int = 0) -> float:
    """Run the ONNX `model` with onnxruntime (CPU) and `net` in float32 PyTorch on smooth random
    images of each (H, W) in `sizes`; return the largest |difference| of the outputs, clipped to
    [0, 1] as `upscale` clips them (in [0, 1] units: 1/255 is one grey level).

    The model's input dtype (float32 or float16) is read from the model.

    Raises:
        ValueError: an output of the wrong shape (the dynamic axes do not work).
    """
    import onnxruntime as ort

    src = model if isinstance(model, bytes) else str(model)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    np_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    ref_net = next(net.parameters())
    worst = 0.0
    for i, (h, w) in enumerate(sizes):
        x = _smooth_image(h, w, _first_conv_channels(net), seed + i)
        with torch.no_grad():
            ref = _exportable(net, scale)(torch.from_numpy(x).to(ref_net.device, torch.float32)).float().cpu().numpy()
        got = sess.run(None, {inp.name: x.astype(np_dtype)})[0]
        if got.shape != ref.shape:
            raise ValueError(f"the ONNX model maps (1, {x.shape[1]}, {h}, {w}) to {got.shape}, "
                             f"PyTorch to {ref.shape}")
        diff = np.abs(np.clip(got.astype(np.float32), 0, 1) - np.clip(ref, 0, 1)).max()
        worst = max(worst, float(diff))
    return worst


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, opset: int = DEFAULT_OPSET,
                      fp16: bool = False, weights: str = "params_ema") -> dict[str, Any]:
    """Export the generator in `checkpoint` (anything `pipeline.infer.load_generator` loads) to
    `out`, verified by `check_onnx` before it is written (atomically: `out` is whole or untouched).

    weights: 'params_ema' or 'params', as `upscale --weights`. Returns `load_generator`'s info plus
    `opset`, `dtype`, `max_diff` (the check's, in [0, 1] units) and `bytes`. Overwrites `out`;
    refusing to is the caller's choice.

    Raises:
        FileNotFoundError: no checkpoint.
        ValueError: a bad checkpoint or opset, a failed export, or a check beyond `TOLERANCE`.
    """
    from pipeline.infer import load_generator
    from pipeline.io.atomic import atomic_write_bytes

    checkpoint, out = Path(checkpoint), Path(out)
    net, scale, info = load_generator(checkpoint, "cpu", weights=weights)
    dtype = "float16" if fp16 else "float32"
    meta = {"realsynth.arch": info["name"], "realsynth.opts": json.dumps(info["opts"], sort_keys=True),
            "realsynth.weights": info["weights"]}
    data = to_onnx(net, scale, opset=opset, fp16=fp16, metadata=meta)
    diff = check_onnx(data, net, scale)
    if not diff <= TOLERANCE[dtype]:
        raise ValueError(f"{checkpoint}: the {dtype} ONNX model differs from PyTorch by {diff * 255:.2f} grey "
                         f"levels, more than {TOLERANCE[dtype] * 255:.0f}; nothing written")
    atomic_write_bytes(out, data)
    return {**info, "opset": opset, "dtype": dtype, "max_diff": diff, "bytes": len(data)}
