"""LPIPS (Zhang et al. 2018) with torchmetrics' network, from local files only — never downloads.

LPIPS needs two files: the ImageNet backbone that torchvision would fetch into
``torch.hub.get_dir()/checkpoints/`` (``alexnet-owt-7be5be79.pth`` for net 'alex'), and the
linear calibration layers, which torchmetrics ships inside the package
(``torchmetrics/functional/image/lpips_models/alex.pth``). `LearnedPerceptualImagePatchSimilarity`
always asks torchvision for the pretrained backbone, which downloads when the file is missing; so
here the same network (`_NoTrainLpips`, the module that class wraps) is built with a random backbone
and both files are loaded explicitly, with `weights_only=True` and strict key checks.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# net → torchvision weights enum holding the backbone's file name (reading `.url` fetches nothing).
BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}
MIN_SIDE = 32  # smallest input every backbone accepts


def lpips(a: np.ndarray, b: np.ndarray, net: str = "alex",
          weights_dir: str | os.PathLike | None = None) -> float:
    """LPIPS distance between two images (0 for identical ones; lower is more similar).

    a, b: (H, W, 3) uint8 RGB, same shape, H and W >= 32. net: 'alex', 'vgg' or 'squeeze'.
    weights_dir: directory holding the torchvision backbone file; default
    ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``). Runs on CPU in float32.

    Raises:
        ValueError: bad `net`, dtype or shapes.
        FileNotFoundError: a weights file is missing (the message names it and where it goes).
        ImportError: torchmetrics or torchvision is not installed.
    """
    for name, img in (("a", a), ("b", b)):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
            raise ValueError(f"{name} must be a uint8 numpy array, got {getattr(img, 'dtype', type(img).__name__)}")
        if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < MIN_SIDE:
            raise ValueError(f"{name} must be (H, W, 3) with H, W >= {MIN_SIDE}, got shape {img.shape}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    backbone, linear = lpips_files(net, weights_dir)
    _require(backbone, linear)
    import torch

    model = _load_model(net, *_file_key(backbone), *_file_key(linear))
    x = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2).float() / 255.0  # (2, 3, H, W) in [0, 1]
    with torch.inference_mode():
        return float(model(x[:1], x[1:], normalize=True).item())


def lpips_available(weights_dir: str | os.PathLike | None = None, net: str = "alex") -> tuple[bool, str]:
    """(True, "") when `lpips(..., net=net, weights_dir=weights_dir)` can run, else (False, reason)."""
    try:
        _require(*lpips_files(net, weights_dir))
    except (FileNotFoundError, ValueError, ImportError) as err:
        return False, str(err)
    return True, ""


def lpips_files(net: str = "alex", weights_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Paths of (backbone checkpoint, linear-layer weights) for `net`; existence is not checked.

    Raises:
        ValueError: unknown `net`.
        ImportError: torchmetrics or torchvision is not installed.
    """
    if net not in BACKBONES:
        raise ValueError(f"unknown LPIPS net {net!r}; choose from {sorted(BACKBONES)}")
    import torch

    try:
        import torchmetrics.functional.image.lpips as tm_lpips
        import torchvision
    except ImportError as err:
        raise ImportError(f"LPIPS needs torchmetrics and torchvision installed ({err})") from None

    url = getattr(torchvision.models, BACKBONES[net]).DEFAULT.url
    folder = Path(weights_dir) if weights_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    return folder / url.rsplit("/", 1)[-1], Path(tm_lpips.__file__).parent / "lpips_models" / f"{net}.pth"


def _require(backbone: Path, linear: Path) -> None:
    if not backbone.is_file():
        raise FileNotFoundError(f"LPIPS backbone weights not found: {backbone}; put torchvision's "
                                f"{backbone.name} there (or pass weights_dir); realsynth never downloads")
    if not linear.is_file():
        raise FileNotFoundError(f"LPIPS linear weights not found: {linear} (shipped with torchmetrics; "
                                "reinstall torchmetrics)")


def _file_key(path: Path) -> tuple[str, int, int]:
    """Cache key of a file: resolved path, mtime and size, so a replaced file is reloaded."""
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=4)
def _load_model(net: str, backbone: str, _b_mtime: int, _b_size: int,
                linear: str, _l_mtime: int, _l_size: int) -> torch.nn.Module:
    import torch
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    model = _NoTrainLpips(pretrained=False, net=net, pnet_rand=True)  # nothing loaded, nothing fetched
    lin_state = torch.load(linear, map_location="cpu", weights_only=True)
    result = model.load_state_dict(lin_state, strict=False)
    # `net.*` is the backbone (loaded below); `lins.k.*` aliases `link.*`, which the file holds.
    missing = [k for k in result.missing_keys if not k.startswith(("net.", "lins."))]
    if missing or result.unexpected_keys:
        raise ValueError(f"{linear}: not LPIPS linear weights for net '{net}' "
                         f"(missing {missing}, unexpected {result.unexpected_keys})")
    state = torch.load(backbone, map_location="cpu", weights_only=True)
    # torchmetrics splits torchvision's `features.N.*` into `slice{k}.N.*` (`slices.k.N.*` for squeeze).
    remapped = {}
    for key in model.net.state_dict():
        source = "features." + re.sub(r"^(slice\d+|slices\.\d+)\.", "", key)
        if source not in state:
            raise ValueError(f"{backbone}: not a torchvision {BACKBONES[net]} checkpoint (no '{source}')")
        remapped[key] = state[source]
    model.net.load_state_dict(remapped, strict=True)
    return model.eval()
