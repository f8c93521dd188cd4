"""Blur kernels of Real-ESRGAN's degradation model, as pure NumPy builders.

Every builder returns a (K, K) float32 kernel, K odd, centred on pixel (K // 2, K // 2), summing to 1.
Coordinates: `x` runs along columns (left → right), `y` along rows (top → bottom); the kernel is
used as a correlation (`cv2.filter2D`), which equals convolution for these point-symmetric kernels.

Anisotropic kernels take `sigma_x`, `sigma_y` (standard deviations along the kernel's own axes)
and `theta` (radians): the covariance is Σ = R(θ) diag(σx², σy²) R(θ)ᵀ with R the rotation
[[cos, -sin], [sin, cos]] acting on (x, y). So θ = 0 stretches along x, θ = π/2 along y, and with
rows pointing down a positive θ turns the long axis clockwise on screen.

    >>> k = gaussian_kernel(21, 2.0, 1.0, 0.5)
    >>> k.shape, round(float(k.sum()), 5)
    ((21, 21), 1.0)
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special

KERNEL_KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
MAX_SIZE = 21  # kernels are stored zero-padded to this size (kernels.npz)


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")


def _check_sigmas(sigma_x: float, sigma_y: float) -> None:
    if not (sigma_x > 0 and sigma_y > 0):
        raise ValueError(f"sigma must be positive, got sigma_x={sigma_x}, sigma_y={sigma_y}")


@functools.lru_cache(maxsize=None)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float64 coordinates of a (size, size) kernel's pixels relative to its centre;
    x varies along columns, y along rows. Cached, read-only."""
    ax = np.arange(size, dtype=np.float64) - size // 2
    x, y = np.meshgrid(ax, ax)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """(K, K) float64 Mahalanobis term d² = [x y] Σ⁻¹ [x y]ᵀ on the centred pixel grid."""
    x, y = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    # Rotate the grid into the kernel's own axes (Rᵀ [x, y]) and scale by the sigmas.
    u = c * x + s * y
    v = -s * x + c * y
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalise(kernel: np.ndarray) -> np.ndarray:
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Bivariate Gaussian exp(-d²/2); isotropic when `sigma_y` is None.

    Returns (size, size) float32 summing to 1. Raises ValueError on an even size or sigma <= 0.
    """
    _check_size(size)
    sigma_y = sigma_x if sigma_y is None else sigma_y
    _check_sigmas(sigma_x, sigma_y)
    return _normalise(np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta)))


def _shaped_form(size: int, sigma_x: float, sigma_y: float | None, theta: float, beta: float) -> np.ndarray:
    """(d²)^β on the kernel grid, after validating size, sigmas and β (shared by the β families)."""
    _check_size(size)
    sigma_y = sigma_x if sigma_y is None else sigma_y
    _check_sigmas(sigma_x, sigma_y)
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")
    return np.power(_quadratic_form(size, sigma_x, sigma_y, theta), beta)


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0,
                                beta: float = 1.0) -> np.ndarray:
    """Generalized Gaussian exp(-(d²)^β / 2): β < 1 peaky with heavy tails, β > 1 flat-topped.

    Raises ValueError on an even size, sigma <= 0 or beta <= 0.
    """
    return _normalise(np.exp(-0.5 * _shaped_form(size, sigma_x, sigma_y, theta, beta)))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0,
                   beta: float = 1.0) -> np.ndarray:
    """Plateau kernel 1 / (1 + (d²)^β): flat top, polynomial tails.

    Raises ValueError on an even size, sigma <= 0 or beta <= 0.
    """
    return _normalise(1.0 / (_shaped_form(size, sigma_x, sigma_y, theta, beta) + 1.0))


def sinc_kernel(size: int, omega: float) -> np.ndarray:
    """Circular low-pass (2-D sinc) kernel ω J1(ω r) / (2π r), cut-off `omega` in radians/pixel.

    The continuous kernel passes frequencies with |f| < ω and stops the rest; truncated to
    `size` it rings (the artefact it is there to imitate). Raises ValueError on an even size or
    omega outside (0, π].
    """
    _check_size(size)
    if not 0 < omega <= math.pi + 1e-12:
        raise ValueError(f"omega must be in (0, pi], got {omega}")
    x, y = _grid(size)
    r = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = omega * special.j1(omega * r) / (2 * np.pi * r)
    kernel[size // 2, size // 2] = omega ** 2 / (4 * np.pi)  # limit r → 0
    return _normalise(kernel)


def pulse_kernel(size: int = 1) -> np.ndarray:
    """The identity kernel: a 1 at the centre of a (size, size) zero array."""
    _check_size(size)
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, size // 2] = 1.0
    return kernel


def family_kernel(kind: str, size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """Build one of `KERNEL_KINDS` from its parameters (isotropic kinds ignore sigma_y/theta)."""
    if kind not in KERNEL_KINDS:
        raise ValueError(f"unknown kernel kind {kind!r}; choose from {list(KERNEL_KINDS)}")
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sigma_y, theta = sigma_x, 0.0
    if kind in ("iso", "aniso"):
        return gaussian_kernel(size, sigma_x, sigma_y, theta)
    if kind.startswith("generalized"):
        return generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, beta)
    return plateau_kernel(size, sigma_x, sigma_y, theta, beta)


def pad_kernel(kernel: np.ndarray, size: int = MAX_SIZE) -> np.ndarray:
    """Zero-pad a centred (K, K) kernel to (size, size), K <= size, both odd."""
    k = kernel.shape[0]
    _check_size(size)
    if kernel.ndim != 2 or kernel.shape[1] != k or k % 2 == 0 or k > size:
        raise ValueError(f"kernel must be square with odd side <= {size}, got shape {kernel.shape}")
    p = (size - k) // 2
    return np.pad(kernel.astype(np.float32), p)
