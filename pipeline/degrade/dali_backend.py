"""The DALI backend: one `@pipeline_def` graph applies a batch of Real-ESRGAN recipes, each sample
with its own kernels, sizes, interpolations, noise and JPEG qualities (DALI conditionals pick the
per-sample branches). CPU mode (`device_id=None`) here; the GPU when one is visible.

Per-sample values enter through `external_source`, computed on the CPU from the recipe and the HR
size alone. Noise is the one random step, and DALI's own noise operators draw from per-operator
generators whose stream depends on the sample's batch position; so the standard-normal field of
every noise step is generated on the CPU from the step's own seed (`geometry.standard_normal`)
and fed in. The output of a sample therefore depends only on (HR, recipe): batch size, batch
position and thread count do not matter, and Gaussian noise is the very field the spec adds.

A preset's user ops (`module:function` steps between Real-ESRGAN's) have no DALI implementation:
the graph is cut at them into segment graphs (`STAGES` spans, float32 in and out between them) and
each op runs on the CPU in between, as on the reference backend (`dali_segments`).

Where DALI differs from the spec (parity is tested with these tolerances in mind):
- blur: `fn.filter` (CPU: OpenCV's filter2D; reflect-101) — equal to float rounding;
- resize: `fn.resize` without antialiasing for bilinear (equal to OpenCV to float rounding) and
  bicubic (DALI's cubic is not OpenCV's/torch's a = -0.75 kernel: ~2 levels mean difference on
  detailed images); `area` has no DALI filter: antialiased cubic when shrinking and linear when
  enlarging come closest to OpenCV's INTER_AREA (~3-5 levels mean difference on detailed images);
- JPEG: the spec decodes with nearest-neighbour chroma upsampling (Real-ESRGAN's DiffJPEG),
  which no DALI operator does. CPU: `fn.python_function` runs the spec's own codec
  (`jpeg.jpeg_roundtrip`; the graph already runs synchronously), bit-identical. GPU:
  `fn.jpeg_compression_distortion` (DALI's CUDA codec, close to libjpeg but not identical), still
  decoded with smooth chroma: milder than the spec (see bench/README.md, "Strength"); re-blocking
  its chroma in the graph was tried on the CPU and came no closer per pixel;
- Poisson noise: Gaussian with the Poisson variance, base/vals·scale², using the same field; `vals`
  (Real-ESRGAN's count of distinct 8-bit levels, rounded up to a power of two) is taken from the
  level range max - min + 1, since a DALI graph cannot count distinct values. Mean and variance of
  the noise match the spec; its discreteness at very dark pixels does not.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from .geometry import crop_to_scale, plan_shapes, standard_normal, usm_sigma
from .jpeg import jpeg_roundtrip
from .dali_segments import STAGES, run_segmented, user_op_plan
from .recipe import Camera, Recipe, UserOp

_GRAPH_STEPS = ("usm", "blur1", "resize1", "noise1", "jpeg1", "blur2", "resize2", "noise2", "jpeg2")
_NOISE_FIELDS = ("on", "gaussian", "gray", "level", "z")
_FINAL = {"resize_sinc_jpeg": ("resize_final", "sinc_final", "jpeg_final"),
          "jpeg_resize_sinc": ("jpeg_final", "resize_final", "sinc_final")}


def cuda_device_count() -> int:
    """CUDA devices this process may use, counted without creating a CUDA context or importing
    torch: NVML's count (fork-safe; NVML ignores CUDA_VISIBLE_DEVICES, so the list's length caps
    it), else the driver's cuDeviceGetCount. 0 when CUDA_VISIBLE_DEVICES is empty or negative, and
    on any failure."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and (visible.strip() == "" or visible.strip().startswith("-")):
        return 0
    if not os.path.exists("/dev/nvidiactl"):
        return 0
    import ctypes
    count = ctypes.c_uint(0)
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() == 0:
            try:
                if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0:
                    listed = len([d for d in visible.split(",") if d.strip()]) if visible else count.value
                    return min(count.value, listed)
            finally:
                nvml.nvmlShutdown()
    except (OSError, AttributeError):
        pass
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        n = ctypes.c_int(0)
        return n.value if cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(n)) == 0 else 0
    except (OSError, AttributeError):
        return 0


def cuda_visible() -> bool:
    """Whether a CUDA device is usable (see `cuda_device_count`)."""
    return cuda_device_count() > 0


def gpu_device_id(env: Mapping[str, str] = os.environ, count: int | None = None) -> int:
    """The GPU a graph runs on: torchrun's LOCAL_RANK modulo the `count` visible devices (asked
    when None), so the DDP ranks of a training run that degrades online spread over the machine's
    GPUs instead of stacking them on the first; 0 outside torchrun (a Ray actor sees only its own GPU).

    Raises ValueError when LOCAL_RANK is not a non-negative integer."""
    local = env.get("LOCAL_RANK", "0")
    if not local.strip().isdigit():
        raise ValueError(f"LOCAL_RANK must be a non-negative integer, got {local!r}")
    count = cuda_device_count() if count is None else count
    return int(local) % count if count > 0 else 0


def _cpu_steps() -> tuple[type, ...]:
    from .steps import LearnedStep
    from .userops import UserStep
    return (UserStep, LearnedStep)  # both recorded as user ops, run on the CPU between graph segments


def _structure(preset) -> list:
    """A preset's steps without their values (names, ops, resize bases, group orders), its top-level
    user ops left out: the graph runs those between its stages (`dali_segments`)."""
    out = []
    for item in preset.items:
        if isinstance(item, _cpu_steps()):
            continue
        steps = getattr(item, "steps", (item,))
        out.append((item.name, getattr(item, "order", None), getattr(item, "orders", None), item.scales
                    if not hasattr(item, "steps") else None,
                    [(s.name, s.op, getattr(s, "relative_to", None), s.scales) for s in steps]))
    return out


def graph_problem(preset) -> str | None:
    """Why the graph cannot run `preset` (its steps, user ops between them aside, are not
    Real-ESRGAN's, ranges aside), else None."""
    from .preset import preset_settings
    inside = next((item.name for item in preset.items for s in getattr(item, "steps", ()) if isinstance(s, _cpu_steps())),
                  None)
    if inside is not None:
        return f"the graph runs user ops between its steps, not inside the group {inside}"
    if _structure(preset) == _structure(preset_settings("realesrgan-x4plus")):
        return None
    return "the graph implements the Real-ESRGAN step order only"


def check_graph_recipe(recipe: Recipe) -> None:
    """Raise ValueError unless `recipe` has the Real-ESRGAN structure the graph implements."""
    names = [s.name for s in recipe.steps if not isinstance(s, UserOp)]  # run between segments
    if recipe.order not in _FINAL or any(isinstance(s, Camera) for s in recipe.steps):
        raise ValueError(f"the dali backend runs the realesrgan presets; recipe of preset {recipe.preset!r} "
                         f"needs backend='reference'")
    head = [n for n in names if n in _GRAPH_STEPS]
    tail = names[len(head):]
    if head != [n for n in _GRAPH_STEPS if n in head] or tuple(tail) != _FINAL[recipe.order] or \
            not {"blur1", "resize1", "blur2", "resize2"} <= set(head):
        raise ValueError(f"the dali backend cannot run a recipe with steps {names}")


def _sample_inputs(hr: np.ndarray, recipe: Recipe) -> dict[str, Any]:
    """Everything the graph needs for one sample, as numpy arrays keyed by external_source name, and
    `_ops`: its user ops' plan (`dali_segments.user_op_plan`)."""
    check_graph_recipe(recipe)
    hr = crop_to_scale(hr, recipe.scale)
    shapes = plan_shapes(recipe, hr.shape[:2])
    shape_at = {step.name: shapes[i] for i, step in enumerate(recipe.steps)}
    shape_after = {step.name: shapes[i + 1] for i, step in enumerate(recipe.steps)}
    f32, i32 = np.float32, np.int32
    d: dict[str, np.ndarray] = {"hr": np.ascontiguousarray(hr)}
    usm = recipe.step("usm")
    d["usm_on"] = np.array(usm is not None)
    d["usm_size"] = np.array(usm.size if usm else 3, i32)
    d["usm_sigma"] = np.array(usm_sigma(usm.size) if usm else 0.8, f32)
    d["usm_weight"] = np.array(usm.weight if usm else 0.0, f32)
    d["usm_threshold"] = np.array(usm.threshold if usm else 0.0, f32)
    for name, key in (("blur1", "k1"), ("blur2", "k2"), ("sinc_final", "kf")):
        step = recipe.step(name)
        d[key] = np.ascontiguousarray(step.kernel, dtype=f32)
    for name, key in (("resize1", "r1"), ("resize2", "r2"), ("resize_final", "rf")):
        step = recipe.step(name)
        d[f"{key}_size"] = np.array(shape_after[name], f32)
        d[f"{key}_area"] = np.array(step.interp == "area")
        d[f"{key}_interp"] = np.array(_interp_code(step.interp), i32)
    for name, key in (("noise1", "n1"), ("noise2", "n2")):
        step = recipe.step(name)
        on = step is not None
        h, w = shape_at[name] if on else (1, 1)
        d[f"{key}_on"] = np.array(on)
        d[f"{key}_gaussian"] = np.array(on and step.kind == "gaussian")
        d[f"{key}_gray"] = np.array(on and step.gray)
        d[f"{key}_level"] = np.array(0.0 if not on else step.level / 255.0 if step.kind == "gaussian" else step.level, f32)
        d[f"{key}_z"] = standard_normal(step.seed, (h, w, 1 if step.gray else 3)) if on else np.zeros((1, 1, 1), f32)
    for name, key in (("jpeg1", "j1"), ("jpeg2", "j2"), ("jpeg_final", "jf")):
        step = recipe.step(name)
        d[f"{key}_on"] = np.array(step is not None)
        d[f"{key}_quality"] = np.array(step.quality if step else 100, i32)
    d["resize_first"] = np.array(recipe.order == "resize_sinc_jpeg")
    d["_ops"] = user_op_plan(recipe)  # where its user ops run (not a graph input)
    return d


def _spec_jpeg(img: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """The spec's JPEG on one sample, (H, W, 3) uint8 in and out (the CPU graph's `fn.python_function`)."""
    return jpeg_roundtrip(img, int(quality))


def _interp_code(interp: str) -> int:
    from nvidia.dali import types
    return int({"area": types.INTERP_LINEAR, "bilinear": types.INTERP_LINEAR,
                "bicubic": types.INTERP_CUBIC}[interp])


# The graph's stages, in order: a segment graph runs a span of them (`dali_segments`). Each with the
# external_source inputs it reads.
STAGE_INPUTS = {
    "usm": ("usm_on", "usm_size", "usm_sigma", "usm_weight", "usm_threshold"), "blur1": ("k1",),
    "resize1": ("r1_size", "r1_area", "r1_interp"), "noise1": tuple(f"n1_{f}" for f in _NOISE_FIELDS),
    "jpeg1": ("j1_on", "j1_quality"), "blur2": ("k2",), "resize2": ("r2_size", "r2_area", "r2_interp"),
    "noise2": tuple(f"n2_{f}" for f in _NOISE_FIELDS), "jpeg2": ("j2_on", "j2_quality"),
    "final": ("rf_size", "rf_area", "rf_interp", "kf", "jf_quality", "resize_first")}
INPUT_NAMES = ("hr", *[n for stage in STAGES for n in STAGE_INPUTS[stage]])
_HWC = ("hr", "x", "n1_z", "n2_z")


def span_inputs(span: tuple[int, int], float_in: bool) -> tuple[str, ...]:
    """The external_source names of the graph of stages STAGES[a:b]: its image (`hr` uint8, or `x`
    float32 from a user op or an earlier segment), then each stage's."""
    return ("x" if float_in else "hr", *[n for stage in STAGES[span[0]:span[1]] for n in STAGE_INPUTS[stage]])


def _graph_ops(gpu: bool):
    """The graph's building blocks (called while a `pipeline_def` traces): `stage(name, x, inp)`
    applies one of STAGES, `on_device`, `quantize`, `to_float`."""
    from nvidia.dali import fn, types
    import nvidia.dali.math as dmath

    def on_device(node):
        return node.gpu() if gpu else node

    def quantize(x):  # float [0, 1] → uint8, rounded half away from zero like the spec
        return fn.cast(dmath.clamp(x * 255.0, 0.0, 255.0), dtype=types.UINT8)

    def to_float(img):
        return fn.cast(img, dtype=types.FLOAT) * (1.0 / 255.0)

    def resize(x, size, area, interp):
        if area:  # closest DALI filters to OpenCV's INTER_AREA: antialiased cubic down, linear up
            y = fn.resize(x, size=size, antialias=True, min_filter=types.INTERP_CUBIC,
                          mag_filter=types.INTERP_LINEAR)
        else:
            y = fn.resize(x, size=size, antialias=False, interp_type=fn.cast(interp, dtype=types.INTERP_TYPE))
        return y

    def jpeg(x, quality):
        if not gpu:
            return to_float(fn.python_function(quantize(x), quality, function=_spec_jpeg, num_outputs=1,
                                               output_layouts="HWC"))
        return to_float(fn.jpeg_compression_distortion(quantize(x), quality=quality))

    def noise(x, on, gaussian, gray, level, z):
        z = on_device(z)
        level = on_device(level)
        if on:
            if gaussian:
                y = dmath.clamp(x + z * level, 0.0, 1.0)
            else:
                if gray:
                    base = x[:, :, 0:1] * 0.299 + x[:, :, 1:2] * 0.587 + x[:, :, 2:3] * 0.114
                else:
                    base = x
                base_q = quantize(base)
                levels = fn.cast(fn.reductions.max(base_q), dtype=types.FLOAT) - \
                    fn.cast(fn.reductions.min(base_q), dtype=types.FLOAT) + 1.0
                vals = dmath.pow(2.0, dmath.ceil(dmath.log2(levels) - 1e-4))
                base = to_float(base_q)
                y = dmath.clamp(x + z * dmath.sqrt(base / vals) * level, 0.0, 1.0)
        else:
            y = x
        return y

    def usm(x, inp):
        if inp["usm_on"]:
            size, sigma = inp["usm_size"], inp["usm_sigma"]
            blurred = fn.gaussian_blur(x, window_size=size, sigma=sigma)
            residual = x - blurred
            mask = fn.cast(dmath.abs(residual) * 255.0 > on_device(inp["usm_threshold"]), dtype=types.FLOAT)
            soft = fn.gaussian_blur(mask, window_size=size, sigma=sigma)
            sharp = dmath.clamp(x + on_device(inp["usm_weight"]) * residual, 0.0, 1.0)
            x = x + soft * (sharp - x)
        return x

    def jpeg_if(x, on, quality):
        if on:
            x = jpeg(x, quality)
        return x

    def final(x, inp):
        if inp["resize_first"]:
            x = resize(x, inp["rf_size"], inp["rf_area"], inp["rf_interp"])
            x = fn.filter(x, inp["kf"], border="reflect_101")
            x = jpeg(x, inp["jf_quality"])
        else:
            x = jpeg(x, inp["jf_quality"])
            x = resize(x, inp["rf_size"], inp["rf_area"], inp["rf_interp"])
            x = fn.filter(x, inp["kf"], border="reflect_101")
        return x

    def stage(name, x, inp):
        k = name[-1]
        if name == "usm":
            return usm(x, inp)
        if name.startswith("blur"):
            return fn.filter(x, inp[f"k{k}"], border="reflect_101")
        if name.startswith("resize"):
            return resize(x, inp[f"r{k}_size"], inp[f"r{k}_area"], inp[f"r{k}_interp"])
        if name.startswith("noise"):
            return noise(x, *(inp[f"n{k}_{f}"] for f in _NOISE_FIELDS))
        if name.startswith("jpeg"):
            return jpeg_if(x, inp[f"j{k}_on"], inp[f"j{k}_quality"])
        return final(x, inp)

    return stage, on_device, quantize, to_float


def _build_pipeline(batch_size: int, gpu: bool, num_threads: int, span: tuple[int, int] = (0, len(STAGES)),
                    float_in: bool = False, float_out: bool = False):
    """The degradation graph (see module docstring) of stages STAGES[a:b], for at most `batch_size`
    samples: from the uint8 HR (or float32 `x` when `float_in`) to uint8 LR (float32, unclipped,
    when `float_out`: a user op or a later segment goes on from it)."""
    from nvidia.dali import fn, pipeline_def

    stage, on_device, quantize, to_float = _graph_ops(gpu)
    names = span_inputs(span, float_in)

    @pipeline_def(enable_conditionals=True)
    def graph():
        inp = {n: fn.external_source(name=n, layout="HWC") if n in _HWC else fn.external_source(name=n) for n in names}
        x = on_device(inp["x"]) if float_in else to_float(on_device(inp["hr"]))
        for name in STAGES[span[0]:span[1]]:
            x = stage(name, x, inp)
        return x if float_out else quantize(x)

    pipe = graph(batch_size=batch_size, num_threads=num_threads, device_id=gpu_device_id() if gpu else None,
                 prefetch_queue_depth=1, exec_async=False, exec_pipelined=False)
    pipe.build()
    return pipe


class DaliDegrader:
    """A built degradation graph for batches of up to `batch_size` samples.

    device: `cpu`, `gpu` or `auto` (GPU when `cuda_visible()`). Build it in the process that uses
    it: DALI must not be started before a fork. Recipes with user ops run as segment graphs, each
    built on first use and kept (`dali_segments`). `num_threads` runs DALI's CPU operators; the
    per-sample work around the graph (`prepare`) runs in the executor its caller passes, so that a
    process keeps one thread pool for it and for its own decode/encode.
    """

    def __init__(self, batch_size: int = 32, device: str = "auto", num_threads: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if device not in ("auto", "cpu", "gpu"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
        self.gpu = cuda_visible() if device == "auto" else device == "gpu"
        self.batch_size = batch_size
        self.num_threads = num_threads or os.cpu_count() or 1
        whole = ((0, len(STAGES)), False, False)  # (span, float_in, float_out)
        self._pipes = {whole: _build_pipeline(batch_size, self.gpu, self.num_threads, *whole)}

    @property
    def device(self) -> str:
        return "gpu" if self.gpu else "cpu"

    def prepare(self, hrs: Sequence[np.ndarray], recipes: Sequence[Recipe],
                pool: Executor | None = None) -> list[dict[str, Any]]:
        """The graph's inputs for each sample: recipe → arrays and noise fields, one sample per task
        of `pool` (NumPy releases the GIL), or in this thread when None. Thread-safe; may run ahead
        of `run_prepared`.

        hrs: (H, W, 3) uint8 RGB tiles. Returns one dict per sample, keyed by INPUT_NAMES.

        Raises:
            ValueError: mismatched lengths, more samples than `batch_size`, non-RGB uint8 tiles or
                a recipe the graph cannot run.
            TooSmallError: a tile smaller than its recipe needs.
        """
        if len(hrs) != len(recipes):
            raise ValueError(f"got {len(hrs)} images but {len(recipes)} recipes")
        if not 0 < len(hrs) <= self.batch_size:
            raise ValueError(f"batch must hold 1..{self.batch_size} samples, got {len(hrs)}")
        for hr in hrs:
            if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
                raise ValueError(f"hr must be (H, W, 3) uint8 RGB, got {hr.shape} {hr.dtype}")
        if pool is None or len(hrs) == 1:
            return [_sample_inputs(hr, r) for hr, r in zip(hrs, recipes)]
        return list(pool.map(_sample_inputs, hrs, recipes))

    def run_prepared(self, samples: Sequence[dict[str, Any]], pool: Executor | None = None) -> list[np.ndarray]:
        """Run the graph on inputs from `prepare` → LR tiles ((h, w, 3) uint8 RGB), same order;
        user ops between segment graphs on `pool` (in this thread when None)."""
        return run_segmented(samples, self._run_span, pool)

    def _run_span(self, samples: Sequence[dict[str, Any]], span: tuple[int, int], xs: list[np.ndarray] | None,
                  float_out: bool) -> list[np.ndarray]:
        """The graph of STAGES[a:b] on `samples` (from `xs`, float32, when given), its outputs on the host."""
        key = (span, xs is not None, float_out)
        if key not in self._pipes:
            self._pipes[key] = _build_pipeline(self.batch_size, self.gpu, self.num_threads, *key)
        pipe = self._pipes[key]
        for name in span_inputs(span, xs is not None):
            pipe.feed_input(name, xs if name == "x" else [s[name] for s in samples])
        (out,) = pipe.run()
        if self.gpu:
            out = out.as_cpu()
        return [np.array(out[i]) for i in range(len(samples))]

    def run(self, hrs: Sequence[np.ndarray], recipes: Sequence[Recipe],
            pool: Executor | None = None) -> list[np.ndarray]:
        """Degrade HR tiles ((H, W, 3) uint8 RGB) with their recipes → LR tiles, same order.
        Errors: see `prepare`."""
        return self.run_prepared(self.prepare(hrs, recipes, pool), pool)
