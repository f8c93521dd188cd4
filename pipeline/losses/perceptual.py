"""Perceptual (VGG19 feature) loss, as Real-ESRGAN trains with it; never downloads anything.

Features are taken **before** the ReLU (`conv5_4`, not `relu5_4`), as ESRGAN argues: pre-activation
features are denser and keep brightness consistent. Inputs are RGB in [0, 1], normalised with the
ImageNet mean/std the torchvision weights expect.

Weights: torchvision's `vgg19-dcbb9e9d.pth` (the full ImageNet VGG19 state dict; only its
`features.*` tensors are used). Looked up at the explicit `weights` path if given, else in torch's
hub cache, `torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth` (`$TORCH_HOME/hub/...`, default
`~/.cache/torch/hub/...`). The file's sha256 must start with `dcbb9e9d` (torchvision's naming rule);
another file (a user-converted one, a test's random stand-in) passes only with its full `sha256` given
(`train_*.perceptual.sha256`), or with `check_hash=False`.

    loss_fn = PerceptualLoss()                  # Real-ESRGAN layer weights, L1
    loss = loss_fn(net_g(lr), hr)
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from pipeline.io.digest import sha256_file

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_SHA256_PREFIX = "dcbb9e9d"
# Real-ESRGAN's perceptual layer weights (options/train_realesrgan_x4plus.yml).
REALESRGAN_LAYER_WEIGHTS: dict[str, float] = {
    "conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CRITERIA = ("l1", "l2")

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _vgg19_features_skeleton() -> nn.Sequential:
    """torchvision's vgg19().features with uninitialised (empty) CPU tensors, built without the
    cost of initialising the 120M-parameter classifier."""
    with torch.device("meta"):
        features = torchvision.models.vgg19(weights=None).features
    return features.to_empty(device="cpu")


@functools.cache
def _layer_names() -> tuple[str, ...]:
    with torch.device("meta"):
        features = torchvision.models.vgg19(weights=None).features
    names, block, idx = [], 1, 0
    for module in features:
        if isinstance(module, nn.Conv2d):
            idx += 1
            names.append(f"conv{block}_{idx}")
        elif isinstance(module, nn.ReLU):
            names.append(f"relu{block}_{idx}")
        else:
            names.append(f"pool{block}")
            block, idx = block + 1, 0
    return tuple(names)


def vgg19_layer_names() -> list[str]:
    """Names of the 37 modules of vgg19().features: conv1_1, relu1_1, conv1_2, relu1_2, pool1, ..."""
    return list(_layer_names())


def default_vgg19_path() -> Path:
    """Where torchvision would cache the weights: `torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def find_vgg19_weights(weights: str | Path | None = None) -> Path:
    """Return the VGG19 weights file: `weights` if given, else the torch hub cache path.

    Raises:
        FileNotFoundError: one line naming the expected path and how to obtain the file.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"VGG19 weights not found at {path} (train_*.perceptual.weights): download {VGG19_FILE} "
                f"from torchvision ({VGG19_URL}) and put it at {path}, or set train_*.perceptual.weights=<file>")
        return path
    path = default_vgg19_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG19 weights not found at {path}: download {VGG19_FILE} from torchvision ({VGG19_URL}) and put "
            f"it at {path}, or set train_*.perceptual.weights=<file>")
    return path


def cached_sha256(path: Path) -> str:
    """`sha256_file`, cached per path, size and mtime (the VGG19 file is checked at every loss build)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_file(path)
    return _HASH_CACHE[key]


def load_vgg19_features(weights: str | Path | None = None, *, check_hash: bool = True,
                        last_layer: str = "conv5_4", sha256: str | None = None) -> nn.Sequential:
    """Load torchvision's VGG19 `features` from a local file, cut after `last_layer`, frozen in eval.

    The file is loaded with `weights_only=True`; its `features.N.*` tensors go into
    `torchvision.models.vgg19(weights=None).features` with `strict=True` (other keys, e.g.
    `classifier.*`, are ignored). ReLUs are made out-of-place so pre-activation outputs survive.

    Raises:
        FileNotFoundError: if the file is missing (see `find_vgg19_weights`).
        ValueError: if check_hash and the sha256 is not `sha256` (given) or does not start with dcbb9e9d
            (None), if the file holds no
            `features.*` tensors, or if last_layer is not a vgg19 layer name.
        RuntimeError: from load_state_dict, if the features tensors do not fit VGG19.
    """
    names = vgg19_layer_names()
    if last_layer not in names:
        raise ValueError(f"unknown vgg19 layer {last_layer!r}; choose from {names}")
    path = find_vgg19_weights(weights)
    if check_hash:
        digest = cached_sha256(path)
        if sha256 is not None and digest != sha256:
            raise ValueError(f"{path}: sha256 {digest} is not the expected {sha256} "
                             f"(train_*.perceptual.sha256)")
        if sha256 is None and not digest.startswith(VGG19_SHA256_PREFIX):
            raise ValueError(f"{path}: sha256 {digest[:8]}... does not match torchvision's {VGG19_FILE} "
                             f"(expected prefix {VGG19_SHA256_PREFIX}); pass check_hash=False for a converted file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a VGG19 state dict, got {type(state).__name__}")
    features_state = {k.removeprefix("features."): v for k, v in state.items()
                      if isinstance(k, str) and k.startswith("features.")}
    if not features_state:
        raise ValueError(f"{path}: no 'features.N.weight' tensors; expected torchvision's vgg19 state dict")
    features = _vgg19_features_skeleton()
    features.load_state_dict(features_state, strict=True)
    features = features[: names.index(last_layer) + 1]
    for module in features:
        if isinstance(module, nn.ReLU):
            module.inplace = False
    features.requires_grad_(False)
    return features.eval()


def gram_matrix(feat: Tensor) -> Tensor:
    """(B, C, H, W) → (B, C, C) Gram matrix normalised by C·H·W."""
    b, c, h, w = feat.shape
    flat = feat.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class VGGFeatureExtractor(nn.Module):
    """Frozen VGG19 returning the named layers' outputs for ImageNet-normalised [0, 1] RGB input.

    Args:
        layers: vgg19 layer names (`conv1_2`, `relu3_4`, `pool2`, ...).
        weights: path of vgg19-dcbb9e9d.pth; None looks in the torch hub cache.
        check_hash: verify the sha256 (prefix dcbb9e9d, or `sha256` when given).
        sha256: the file's full sha256, for a file that is not torchvision's.

    forward: (B, 3, H, W) float in [0, 1] → {name: (B, C_l, H_l, W_l)}.

    Raises:
        ValueError, FileNotFoundError: as `load_vgg19_features`; ValueError on an unknown layer name.
    """

    def __init__(self, layers: list[str] | tuple[str, ...], weights: str | Path | None = None,
                 check_hash: bool = True, sha256: str | None = None) -> None:
        super().__init__()
        names = vgg19_layer_names()
        unknown = [name for name in layers if name not in names]
        if unknown or not layers:
            raise ValueError(f"unknown vgg19 layer {unknown[0] if unknown else None!r}; choose from {names}")
        self.layers = tuple(layers)
        last = max(layers, key=names.index)
        self.vgg = load_vgg19_features(weights, check_hash=check_hash, last_layer=last, sha256=sha256)
        self._index = {names.index(name): name for name in layers}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        """The VGG stays in eval mode whatever the mode of the enclosing module."""
        super().train(mode)
        self.vgg.eval()
        return self

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG features need (B, 3, H, W) RGB input, got shape {tuple(x.shape)}")
        feat = (x - self.mean) / self.std
        out = {}
        for i, module in enumerate(self.vgg):
            feat = module(feat)
            if i in self._index:
                out[self._index[i]] = feat
        return out


class PerceptualLoss(nn.Module):
    """VGG19 perceptual loss plus optional style (Gram) loss.

    loss = perceptual_weight · Σ_l w_l · crit(φ_l(x), φ_l(hr))
         + style_weight · Σ_l w_l · crit(G(φ_l(x)), G(φ_l(hr)))

    with φ_l the pre-activation VGG19 features, G the Gram matrix, crit the mean L1 (or L2).

    Args:
        layer_weights: {vgg19 layer: weight}; default Real-ESRGAN's {conv1_2: 0.1, conv2_2: 0.1,
            conv3_4: 1, conv4_4: 1, conv5_4: 1}.
        weights: path of vgg19-dcbb9e9d.pth; None looks in the torch hub cache.
        check_hash: verify the file's sha256 (prefix dcbb9e9d, or `sha256` when given).
        sha256: the file's full sha256, for a file that is not torchvision's.
        perceptual_weight: factor of the feature term (0 disables it).
        style_weight: factor of the Gram term (0, the default, disables it).
        criterion: 'l1' or 'l2'.

    forward(x, hr): (B, 3, H, W) each, in [0, 1] → scalar. No gradient flows into hr.

    Raises:
        ValueError: on an unknown layer or criterion, a negative weight, or a bad weights file;
        FileNotFoundError: if the weights file is missing (the message names the path).
    """

    def __init__(self, layer_weights: Mapping[str, float] | None = None, weights: str | Path | None = None,
                 *, check_hash: bool = True, perceptual_weight: float = 1.0, style_weight: float = 0.0,
                 criterion: str = "l1", sha256: str | None = None) -> None:
        super().__init__()
        layer_weights = dict(REALESRGAN_LAYER_WEIGHTS if layer_weights is None else layer_weights)
        if criterion not in CRITERIA:
            raise ValueError(f"perceptual criterion must be one of {list(CRITERIA)}, got {criterion!r}")
        for name, value in {**layer_weights, "perceptual_weight": perceptual_weight,
                            "style_weight": style_weight}.items():
            if not value >= 0:
                raise ValueError(f"perceptual loss weight {name} must be >= 0, got {value!r}")
        self.layer_weights = layer_weights
        self.perceptual_weight = perceptual_weight
        self.style_weight = style_weight
        self.criterion = F.l1_loss if criterion == "l1" else F.mse_loss
        self.extractor = VGGFeatureExtractor(list(layer_weights), weights=weights, check_hash=check_hash,
                                             sha256=sha256)

    def forward(self, x: Tensor, hr: Tensor) -> Tensor:
        if x.shape != hr.shape:
            raise ValueError(f"perceptual loss: x and hr shapes differ, got {tuple(x.shape)} and {tuple(hr.shape)}")
        feats_x = self.extractor(x)
        with torch.no_grad():
            feats_hr = self.extractor(hr.detach())
        loss = x.new_zeros(())
        for name, w in self.layer_weights.items():
            if self.perceptual_weight > 0:
                loss = loss + self.perceptual_weight * w * self.criterion(feats_x[name], feats_hr[name])
            if self.style_weight > 0:
                loss = loss + self.style_weight * w * self.criterion(gram_matrix(feats_x[name]),
                                                                       gram_matrix(feats_hr[name]))
        return loss
