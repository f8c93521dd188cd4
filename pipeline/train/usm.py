"""Unsharp masking of training targets on the device (Real-ESRGAN sharpens its HR on the GPU).

Real-ESRGAN trains the pixel and perceptual losses against a USM-sharpened HR (`l1_gt_usm`,
`percep_gt_usm`); the stored HR stays the original tile, so the loop sharpens each batch
itself. The op is the one of `pipeline.degrade` (NumPy/OpenCV) written for (B, C, H, W) tensors:

    blur     = G * x                          G: size×size Gaussian, σ from the size as OpenCV's
    residual = x - blur                          getGaussianKernel(size, 0): 0.3·((size-1)/2 - 1) + 0.8
    mask     = G * [|residual|·255 > threshold]   (a soft mask of the edges)
    out      = mask · clip(x + weight·residual, 0, 1) + (1 - mask) · x

Borders are reflected without repeating the edge pixel (OpenCV's BORDER_REFLECT_101, torch's
'reflect'), as `cv2.GaussianBlur`'s default. Real-ESRGAN's `radius=50` is size 51 (it bumps an even
radius to the next odd size).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


# cv2.getGaussianKernel(size, 0) for size <= 9 is a fixed table, not the sampled Gaussian.
_OPENCV_SMALL = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
                 7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
                 9: [v / 256 for v in (4, 13, 30, 51, 60, 51, 30, 13, 4)]}


def gaussian_kernel1d(size: int, sigma: float = 0.0, *, device: torch.device | None = None,
                      dtype: torch.dtype = torch.float32) -> Tensor:
    """A normalised (size,) Gaussian; sigma <= 0 gives what `cv2.getGaussianKernel(size, 0)` gives.

    Raises:
        ValueError: if size is not odd and positive.

    Example:
        >>> gaussian_kernel1d(51).sum().item()  # doctest: +ELLIPSIS
        1.0...
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    if sigma <= 0 and size in _OPENCV_SMALL:  # OpenCV's fixed tables for sigma <= 0
        return torch.tensor(_OPENCV_SMALL[size], device=device, dtype=dtype)
    if sigma <= 0:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    t = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return (k / k.sum()).to(dtype)


def blur_separable(x: Tensor, kernel: Tensor) -> Tensor:
    """Filter every channel of x (B, C, H, W) with the outer product of `kernel` (K,), reflect-101 border.

    Returns (B, C, H, W). Raises ValueError if H or W is not larger than K // 2 (reflection needs it).
    """
    pad = kernel.numel() // 2
    h, w = x.shape[-2:]
    if pad >= h or pad >= w:
        raise ValueError(f"blur of size {kernel.numel()} needs images larger than {pad} px per side, got {h}x{w}")
    c = x.shape[1]
    k = kernel.to(device=x.device, dtype=x.dtype)
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def usm_sharp(x: Tensor, weight: float = 0.5, threshold: float = 10.0, size: int = 51) -> Tensor:
    """Unsharp-mask a batch the way Real-ESRGAN sharpens its training targets.

    Args:
        x: (B, C, H, W) float in [0, 1]; H, W > size // 2.
        weight: amount of the residual added back (0 returns x unchanged).
        threshold: edges are where |x - blur|·255 exceeds it (8-bit levels).
        size: odd Gaussian size in px (σ from the size, as OpenCV).

    Returns:
        (B, C, H, W) float in [0, 1], same dtype and device.

    Raises:
        ValueError: if x is not 4-D, size is not odd and positive, weight < 0, or the image is too small.

    Example:
        >>> usm_sharp(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """
    if x.ndim != 4:
        raise ValueError(f"usm_sharp expects (B, C, H, W), got shape {tuple(x.shape)}")
    if weight < 0:
        raise ValueError(f"usm weight must be >= 0, got {weight}")
    kernel = gaussian_kernel1d(size, device=x.device)
    blur = blur_separable(x, kernel)
    residual = x - blur
    mask = (residual.abs() * 255 > threshold).to(x.dtype)
    soft_mask = blur_separable(mask, kernel)
    sharp = (x + weight * residual).clamp(0, 1)
    return soft_mask * sharp + (1 - soft_mask) * x
