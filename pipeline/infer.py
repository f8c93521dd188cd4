"""Inference: load a generator checkpoint and super-resolve images of any size, tile by tile.

    net, scale, info = load_generator("models/gan/generator.pth")
    sr = upscale(net, img, scale, tile=256)              # (H, W, 3) uint8 → (sH, sW, 3) uint8
    upscale_path(Path("G.pth"), Path("photos"), Path("out"), tile=256, overlap=16, device="auto")

Checkpoints: our exports (`params_ema`/`params` + `meta` {name, opts, scale}), the public Real-ESRGAN
RRDBNet / SRVGGNetCompact files (`params_ema` preferred, else `params`; `weights="params"` asks for the
raw ones) and old ESRGAN bare state dicts; without `meta` the architecture and its hyperparameters are
inferred from the keys and shapes.

Tiling: the LR image is cut into `tile`×`tile` cores, each run with `overlap` LR px of real context
on every side (where the image has them); neighbours share a band 2·overlap px wide and are
feathered across it (`_feather`), so the output has no step (seam) at a tile border, and each pixel
blends tiles that saw at least overlap/2 px of context (16: within 1/255 of untiled in the tests).
`upscale_path` (the CLI) tiles by default (`DEFAULT_TILE`): untiled, an x4 net's activations grow
with the whole image's area; tiled, with one tile's.

Modes (`upscale_image`): gray is replicated to RGB for the net and turned back into one channel
(BT.601 luma); 16-bit images are normalised by 65535 and come back 16-bit; alpha is upscaled apart
from the colour, bicubic by default (a mask is not a photo: the net, trained on photo degradations,
can invent texture in it), or through the net as a gray image with `alpha="net"` (Real-ESRGAN's mode).
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.io.atomic import atomic_write_bytes
from pipeline.models import build_generator, generator_from_state_dict
from pipeline.models.rrdbnet import checkpoint_filter_fn

__all__ = ["DEFAULT_TILE", "IMAGE_SUFFIXES", "WEIGHTS", "load_generator", "read_image_any", "resolve_device", "upscale", "upscale_image",
           "upscale_path", "write_image_any"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
ALPHA_MODES = ("bicubic", "net")
_OOM_TILES = (512, 256, 128)  # tile sizes tried, in turn, when an untiled run runs out of GPU memory
DEFAULT_TILE = 256  # LR px, upscale_path's (and the CLI's) default; 0 runs the whole image at once
WEIGHTS = ("params_ema", "params")  # the generator weights a training checkpoint carries, preferred first
Progress = Callable[[int, int], None]  # called (tiles done, tiles in this pass) after each tile


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' → CUDA when available, else CPU; 'cpu', 'cuda', 'cuda:1' as given.

    Raises:
        ValueError: CUDA asked for but not available, or an unparsable device string.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def load_generator(path: str | Path, device: str | torch.device = "cpu", *, scale: int | None = None,
                   weights: str = "params_ema") -> tuple[nn.Module, int, dict[str, Any]]:
    """Build the generator a checkpoint describes, load its weights strictly, return (net, scale, info).

    The net is in eval mode on `device` with gradients off. `info` holds `name`, `opts`, `scale`,
    `weights` ('params_ema', 'params' or 'state_dict') and `arch_from` ('meta' or 'keys').
    `scale`: the scale the caller expects (None: any). `weights`: 'params_ema' (the EMA weights, or
    `params` in a checkpoint without them: training without EMA writes only those) or 'params' (the
    raw weights, never swapped for the EMA ones); a bare state dict is used as it is.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: one line naming the file: not a torch checkpoint, no `weights` in it, an unknown
            architecture, keys or shapes that do not fit it, or a scale other than `scale`
            (``G.pth: a srvgg x2 checkpoint, expected scale 4``).
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {list(WEIGHTS)}, got {weights!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):  # torch.save: a zip archive, or a legacy pickle
        raise ValueError(f"{path}: not a loadable torch checkpoint (neither a zip archive nor a pickle)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle, zip and weights_only errors all mean "not usable"
        raise ValueError(f"{path}: not a loadable torch checkpoint ({_short(err)})") from None
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    weights = _pick_weights(ckpt, weights, path)
    meta = ckpt.get("meta")
    try:
        state = checkpoint_filter_fn({k: v for k, v in ckpt.items() if k != "meta"} if weights == "state_dict"
                                     else {weights: ckpt[weights]})
        if isinstance(meta, Mapping) and {"name", "opts", "scale"} <= set(meta):
            name, opts, ckpt_scale, arch_from = str(meta["name"]), dict(meta["opts"]), int(meta["scale"]), "meta"
        else:
            name, opts, ckpt_scale = generator_from_state_dict(state)
            arch_from = "keys"
    except (ValueError, KeyError) as err:
        msg = f"missing key {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{path}: {msg}") from None
    if scale is not None and ckpt_scale != scale:
        raise ValueError(f"{path}: a {name} x{ckpt_scale} checkpoint, expected scale {scale}")
    try:
        net = build_generator(name, scale=ckpt_scale, **opts)
        net.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError, TypeError) as err:
        raise ValueError(f"{path}: weights do not fit a {name} x{ckpt_scale} net {opts}: {_short(err)}") from None
    net.eval().requires_grad_(False).to(resolve_device(device))
    info = dict(name=name, opts=opts, scale=ckpt_scale, weights=weights, arch_from=arch_from)
    return net, ckpt_scale, info


def _pick_weights(ckpt: Mapping, weights: str, path: Path) -> str:
    """The checkpoint key to load: `weights`, 'params' for 'params_ema' when only that is present,
    'state_dict' for a checkpoint with neither."""
    present = [k for k in WEIGHTS if isinstance(ckpt.get(k), Mapping)]
    if not present:
        return "state_dict"
    chosen = weights if weights in present else ("params" if weights == "params_ema" else None)
    if chosen is None:
        raise ValueError(f"{path}: no {weights!r} weights in this checkpoint (it has {present})")
    return chosen


def _multiple(net: nn.Module) -> int:
    """Input H and W must be multiples of this (RRDBNet x2/x1 pixel-unshuffle the input by 2/4)."""
    return int(getattr(net, "unshuffle", 1) or 1)


def _run(net: nn.Module, x: torch.Tensor, scale: int, autocast: bool) -> torch.Tensor:
    """(1, C, h, w) float32 → (1, C', scale·h, scale·w) float32; pads to the net's multiple and crops."""
    h, w = x.shape[-2:]
    m = _multiple(net)
    ph, pw = -h % m, -w % m
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with ctx:
        y = net(x)
    return y[..., :h * scale, :w * scale].float()


def upscale(net: nn.Module, img: np.ndarray, scale: int, *, tile: int = 0, overlap: int = 16,
            device: str | torch.device | None = None, dtype: torch.dtype | None = None,
            progress: Progress | None = None) -> np.ndarray:
    """Super-resolve one image with `net`, whole or in overlapping tiles.

    img: (H, W, C) uint8, or float32/float64 in [0, 1]; C the net's input channels (3 for our nets).
    tile: core tile side in LR px (0: whole image); overlap: LR px of context on each side of a core,
    across which neighbouring tiles are feathered together (module docstring).
    device: where to run (default: where the net's weights are). dtype: compute dtype; default
    bfloat16 autocast on CUDA, float32 on CPU. progress: called (done, total) after each tile.
    Returns (scale·H, scale·W, C') uint8 for uint8 input (rounded), else float32 clipped to [0, 1].
    If an untiled CUDA run runs out of memory it is retried with tiles of 512, 256, then 128 px.

    Raises:
        ValueError: bad image shape/dtype, negative tile/overlap, or a net whose output is not
            `scale` times its input.
    """
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"img must be an (H, W, C) numpy array, got {getattr(img, 'shape', type(img).__name__)}")
    if img.dtype == np.uint8:
        x_np = img.astype(np.float32) / 255.0
    elif img.dtype in (np.float32, np.float64):
        x_np = img.astype(np.float32)
    else:
        raise ValueError(f"img must be uint8 or float in [0, 1], got {img.dtype}")
    if not isinstance(tile, int) or tile < 0:
        raise ValueError(f"tile must be a non-negative int, got {tile!r}")
    if not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap must be a non-negative int, got {overlap!r}")
    if device is None:
        device = next(net.parameters()).device
    device = resolve_device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    autocast = device.type == "cuda" and dtype != torch.float32
    net = net.to(device)
    x = torch.from_numpy(np.ascontiguousarray(x_np.transpose(2, 0, 1)))[None].to(device)
    with torch.inference_mode():
        try:
            y = _upscale_tensor(net, x, scale, tile, overlap, autocast, progress)
        except torch.cuda.OutOfMemoryError:
            if device.type != "cuda" or tile:
                raise
            y = None
            for t in _OOM_TILES:
                torch.cuda.empty_cache()
                with contextlib.suppress(torch.cuda.OutOfMemoryError):
                    y = _upscale_tensor(net, x, scale, t, overlap, autocast, progress)
                    break
            if y is None:
                raise
    out = y[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    if img.dtype == np.uint8:
        return np.round(out * 255.0).astype(np.uint8)
    return np.ascontiguousarray(out, dtype=np.float32)


def _upscale_tensor(net: nn.Module, x: torch.Tensor, scale: int, tile: int, overlap: int,
                    autocast: bool, progress: Progress | None = None) -> torch.Tensor:
    """(1, C, H, W) → (1, C', sH, sW): whole, or core tiles with `overlap` px of context, feathered."""
    h, w = x.shape[-2:]
    if tile == 0 or (h <= tile and w <= tile):
        tile = max(h, w)  # one tile, no cut edge: weights 1, the net's output as it is
    m = _multiple(net)
    tile, overlap = -(-tile // m) * m, -(-overlap // m) * m  # keep every cut on the net's grid
    rows, cols = _axis(h, tile, overlap, scale), _axis(w, tile, overlap, scale)
    out: torch.Tensor | None = None
    grid = [(r, c) for r in rows[0] for c in cols[0]]
    for done, (((iy0, iy1), wy), ((ix0, ix1), wx)) in enumerate(grid, 1):
        part = x[..., iy0:iy1, ix0:ix1]
        res = _run(net, part, scale, autocast)
        _check_out(res, part, scale)
        if out is None:
            out = x.new_zeros((1, res.shape[1], h * scale, w * scale), dtype=torch.float32)
        out[..., iy0 * scale:iy1 * scale, ix0 * scale:ix1 * scale] += res * (wy[:, None] * wx[None, :]).to(res.device)
        if progress is not None:
            progress(done, len(grid))
    assert out is not None  # a grid: the summed weight at (i, j) is row_sum[i] · col_sum[j]
    return out.div_((rows[1][:, None] * cols[1][None, :]).to(out.device))


def _axis(size: int, tile: int, overlap: int, scale: int) -> tuple[list, torch.Tensor]:
    """The tiles along one axis of `size` LR px, as [((start, stop), HR weights)], and the sum of
    their weights at each of the scale·size HR px (> 0 everywhere: every px lies in a core)."""
    tiles, total = [], torch.zeros(size * scale)
    for core in range(0, size, tile):
        a, b = max(0, core - overlap), min(size, core + tile + overlap)
        tiles.append(((a, b), _feather(a, b, size, overlap, scale)))
        total[a * scale:b * scale] += tiles[-1][1]
    return tiles, total


def _feather(start: int, stop: int, size: int, overlap: int, scale: int) -> torch.Tensor:
    """Blending weights, (scale·(stop - start),) float32, for a tile spanning LR px [start, stop) of an
    axis of `size` px: 0 within overlap/2 px of a cut edge (inside the image), a linear ramp over the
    next `overlap` px, then 1. Two neighbours' ramps mirror each other and sum to 1 over the band
    they share, so the output moves continuously from tile to tile; core pixels (overlap px inside
    the cut edges) weigh > 0. overlap 0: all 1, plain cropping."""
    n, ramp = (stop - start) * scale, float(max(overlap, 1) * scale)
    t = torch.arange(n, dtype=torch.float32) + 0.5  # HR pixel centres, from the tile's start
    rise = ((t - ramp / 2) / ramp).clamp(0, 1) if start > 0 and overlap else torch.ones(n)
    fall = ((n - t - ramp / 2) / ramp).clamp(0, 1) if stop < size and overlap else torch.ones(n)
    return torch.minimum(rise, fall)


def _check_out(y: torch.Tensor, x: torch.Tensor, scale: int) -> None:
    if tuple(y.shape[-2:]) != (x.shape[-2] * scale, x.shape[-1] * scale):
        raise ValueError(f"the net maps {tuple(x.shape[-2:])} to {tuple(y.shape[-2:])}, not x{scale}; "
                         "is scale the checkpoint's scale?")


def upscale_image(net: nn.Module, img: np.ndarray, scale: int, *, tile: int = 0, overlap: int = 16,
                  device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                  alpha: str = "bicubic", progress: Progress | None = None) -> np.ndarray:
    """`upscale` for images of any mode, keeping the mode.

    img: (H, W) or (H, W, 1) gray, (H, W, 2) gray + alpha, (H, W, 3) RGB or (H, W, 4) RGBA; uint8
    or uint16. Gray goes through the net as RGB and returns as BT.601 luma; alpha is upscaled
    separately (`alpha`: 'bicubic', or 'net' as a gray image: a second pass of tiles through
    `progress`). Returns the same dtype, number of
    dimensions and channels at (scale·H, scale·W).

    Raises:
        ValueError: an unsupported shape, dtype or alpha mode.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {list(ALPHA_MODES)}, got {alpha!r}")
    if not isinstance(img, np.ndarray) or img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"img must be a uint8 or uint16 numpy array, got {getattr(img, 'dtype', type(img).__name__)}")
    squeeze = img.ndim == 2
    arr = img[..., None] if squeeze else img
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"img must be (H, W) or (H, W, C) with C in 1..4, got shape {img.shape}")
    peak = 255.0 if img.dtype == np.uint8 else 65535.0
    f = arr.astype(np.float32) / peak
    channels = arr.shape[2]
    color, a = (f[..., :3], f[..., 3:]) if channels >= 3 else (f[..., :1], f[..., 1:])
    gray = color.shape[2] == 1
    kw = dict(tile=tile, overlap=overlap, device=device, dtype=dtype, progress=progress)
    sr = upscale(net, np.repeat(color, 3, axis=2) if gray else color, scale, **kw)
    if gray:
        sr = cv2.cvtColor(sr, cv2.COLOR_RGB2GRAY)[..., None]
    parts = [sr]
    if a.shape[2]:
        if alpha == "net":
            a_sr = upscale(net, np.repeat(a, 3, axis=2), scale, **kw)
            a_sr = cv2.cvtColor(a_sr, cv2.COLOR_RGB2GRAY)[..., None]
        else:
            h, w = a.shape[:2]
            a_sr = cv2.resize(a[..., 0], (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)[..., None]
        parts.append(np.clip(a_sr, 0.0, 1.0))
    out = np.round(np.concatenate(parts, axis=2) * peak).astype(img.dtype)
    return out[..., 0] if squeeze else out


def read_image_any(path: str | Path) -> np.ndarray:
    """Read an image keeping its mode: (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4)
    RGBA, uint8 or uint16, EXIF orientation applied.

    Raises:
        ValueError: the file cannot be decoded as an image, or has an unsupported depth.
    """
    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: unsupported sample type {img.dtype}; expected 8 or 16 bit")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    elif img.ndim != 2 and not (img.ndim == 3 and img.shape[2] == 2):
        raise ValueError(f"{path}: unsupported image shape {img.shape}")
    return np.ascontiguousarray(_orient(img, _exif_orientation(path)))


def _exif_orientation(path: Path) -> int:
    """EXIF orientation tag (1..8) of a file, 1 when absent or unreadable (reads the header only)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            value = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - no EXIF is the usual case
        return 1
    return value if 1 <= value <= 8 else 1


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels into the upright image EXIF orientation `orientation` describes."""
    swap = (1, 0) + tuple(range(2, img.ndim))
    ops: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
        5: lambda a: a.transpose(swap), 6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(swap), 8: lambda a: np.rot90(a, 1),
    }
    return ops[orientation](img) if orientation in ops else img


def write_image_any(path: str | Path, img: np.ndarray) -> None:
    """Write an image from `read_image_any`/`upscale_image` as PNG (8 or 16 bit, alpha kept), atomically."""
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError(f"{path}: PNG encoding failed for an image of shape {img.shape} {img.dtype}")
    atomic_write_bytes(path, buf.tobytes())


def _stderr(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)  # above a progress bar, not through it


def upscale_path(checkpoint: Path, inp: Path, out: Path, *, tile: int = DEFAULT_TILE, overlap: int = 16,
                 device: str = "auto", alpha: str = "bicubic", weights: str = "params_ema",
                 report: Callable[[str], None] = _stderr, progress: bool = True) -> int:
    """Super-resolve a file into a file, or a folder's images into a folder (same stems, `.png`).

    A file into an existing folder lands there as `<stem>.png`. In a folder, files that cannot be
    read (and names that two inputs would share) are reported through `report` and skipped;
    sub-folders and hidden files are ignored. `weights`: as in `load_generator` (a fallback from
    'params_ema' to 'params' is reported). `progress`: a tqdm bar on stderr, over the tiles of a
    file or the images of a folder. Returns the number of images written.

    Raises:
        FileNotFoundError: `checkpoint` or `inp` does not exist.
        ValueError: a bad checkpoint, or a single input file that cannot be read.
    """
    from tqdm import tqdm

    checkpoint, inp, out = Path(checkpoint), Path(inp), Path(out)
    if not inp.exists():
        raise FileNotFoundError(f"{inp}: input not found")
    net, scale, info = load_generator(checkpoint, device, weights=weights)
    if info["weights"] != weights and info["weights"] in WEIGHTS:
        report(f"upscale: {checkpoint} has no {weights}; using its {info['weights']}")
    kw = dict(tile=tile, overlap=overlap, alpha=alpha)
    if inp.is_file():
        target = out / f"{inp.stem}.png" if out.is_dir() else out
        img = read_image_any(inp)
        with tqdm(desc=f"upscale {inp.name}", unit="tile", file=sys.stderr, disable=not progress) as bar:
            sr = upscale_image(net, img, scale, progress=_tile_counter(bar), **kw)
        write_image_any(target, sr)
        return 1
    files = sorted(p for p in inp.iterdir() if p.is_file() and not p.name.startswith("."))
    out.mkdir(parents=True, exist_ok=True)
    done, taken = 0, set()
    with tqdm(files, desc="upscale", unit="image", file=sys.stderr, disable=not progress) as bar:
        for path in bar:
            name = f"{path.stem}.png"
            if name in taken:
                report(f"upscale: skipped {path}: {name} is already written from another input")
                continue
            try:
                img = read_image_any(path)
            except ValueError as err:
                report(f"upscale: skipped {err}")
                continue
            sr = upscale_image(net, img, scale, progress=_tile_postfix(bar, path.name), **kw)
            write_image_any(out / name, sr)
            taken.add(name)
            done += 1
    return done


def _tile_counter(bar) -> Progress:
    """A `Progress` that moves a tqdm bar over tiles (restarted for a second pass, e.g. alpha)."""
    def step(done: int, total: int) -> None:
        if bar.total != total or done <= bar.n:
            bar.reset(total=total)
        bar.update(done - bar.n)
    return step


def _tile_postfix(bar, name: str) -> Progress:
    """A `Progress` that shows the current image's tiles after a tqdm bar over images."""
    def step(done: int, total: int) -> None:
        bar.set_postfix_str(f"{name} tile {done}/{total}", refresh=False)
        bar.update(0)  # redraws, at most every mininterval
    return step


def _short(err: Exception) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__
