"""Blur kernels: normalisation, shape, isotropy, orientation, the sinc's cut-off, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.degrade.kernels import (KERNEL_KINDS, family_kernel, gaussian_kernel, generalized_gaussian_kernel,
                                      pad_kernel, plateau_kernel, pulse_kernel, sinc_kernel)


@pytest.mark.parametrize("size", [7, 13, 21])
@pytest.mark.parametrize("kind", KERNEL_KINDS)
def test_family_kernels_sum_to_one_and_are_centred(kind, size):
    k = family_kernel(kind, size, 1.7, 0.8, 0.6, 1.5)
    assert k.shape == (size, size) and k.dtype == np.float32
    assert abs(float(k.sum(dtype=np.float64)) - 1.0) < 1e-6
    assert np.unravel_index(np.argmax(k), k.shape) == (size // 2, size // 2)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-9)  # point-symmetric: correlation == convolution


@pytest.mark.parametrize("size", [7, 21])
def test_sinc_kernel_sums_to_one(size):
    k = sinc_kernel(size, math.pi / 3)
    assert k.shape == (size, size) and abs(float(k.sum(dtype=np.float64)) - 1.0) < 1e-6


@pytest.mark.parametrize("kind", ["iso", "generalized_iso", "plateau_iso"])
def test_isotropic_kinds_ignore_sigma_y_and_theta_and_are_rotation_invariant(kind):
    k = family_kernel(kind, 15, 2.0, 0.3, 1.0, 1.5)
    np.testing.assert_array_equal(k, family_kernel(kind, 15, 2.0, 2.0, 0.0, 1.5))
    np.testing.assert_allclose(k, k.T, atol=1e-9)
    np.testing.assert_allclose(k, np.rot90(k), atol=1e-9)


def _second_moments(k: np.ndarray) -> np.ndarray:
    ax = np.arange(k.shape[0]) - k.shape[0] // 2
    x, y = np.meshgrid(ax, ax)  # x along columns, y along rows
    return np.array([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])


@pytest.mark.parametrize("theta", [0.0, math.pi / 2, math.pi / 6, -math.pi / 3])
def test_anisotropic_gaussian_covariance_follows_sigmas_and_theta(theta):
    sx, sy = 2.0, 0.8
    k = gaussian_kernel(41, sx, sy, theta)  # wide enough that truncation is negligible
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    expected = rot @ np.diag([sx ** 2, sy ** 2]) @ rot.T
    np.testing.assert_allclose(_second_moments(k), expected, atol=2e-3)


def test_theta_zero_stretches_along_columns_and_half_pi_along_rows():
    wide = gaussian_kernel(21, 3.0, 0.7, 0.0)
    tall = gaussian_kernel(21, 3.0, 0.7, math.pi / 2)
    c = 10
    assert wide[c, c + 3] > wide[c + 3, c] * 10   # x = columns
    assert tall[c + 3, c] > tall[c, c + 3] * 10   # rows
    np.testing.assert_allclose(tall, wide.T, atol=1e-7)


def test_generalized_gaussian_with_beta_one_is_the_gaussian():
    np.testing.assert_allclose(generalized_gaussian_kernel(15, 1.5, 0.9, 0.4, beta=1.0),
                               gaussian_kernel(15, 1.5, 0.9, 0.4), atol=1e-7)


def test_plateau_is_flatter_topped_for_larger_beta():
    low, high = plateau_kernel(21, 2.0, beta=1.0), plateau_kernel(21, 2.0, beta=2.0)
    # half a sigma out, relative to the centre: closer to 1 for a flat top (1/(1+0.25^β))
    assert high[10, 11] / high[10, 10] == pytest.approx(1 / (1 + 0.25 ** 2), rel=1e-5)
    assert low[10, 11] / low[10, 10] == pytest.approx(1 / (1 + 0.25), rel=1e-5)
    assert high[10, 20] / high[10, 10] < low[10, 20] / low[10, 10]  # and lighter tails


def test_sinc_kernel_cuts_off_at_omega():
    omega = math.pi / 2
    k = sinc_kernel(63, omega).astype(np.float64)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(k, s=(256, 256))))
    f = np.fft.fftshift(np.fft.fftfreq(256)) * 2 * math.pi
    radius = np.hypot(*np.meshgrid(f, f))
    passband = spectrum[radius < 0.8 * omega]
    stopband = spectrum[(radius > 1.2 * omega) & (radius < math.pi)]
    assert abs(passband.mean() - 1.0) < 0.05
    assert stopband.mean() < 0.05
    centre = sinc_kernel(21, omega)
    assert centre[10, 10] == centre.max()


def test_pulse_and_padding():
    p = pulse_kernel(1)
    assert p.shape == (1, 1) and p[0, 0] == 1.0
    padded = pad_kernel(gaussian_kernel(7, 1.0), 21)
    assert padded.shape == (21, 21) and padded[7:14, 7:14].sum() == pytest.approx(1.0, abs=1e-6)
    assert padded[:7].sum() == 0 and padded[:, 14:].sum() == 0
    unit = pad_kernel(p, 21)
    assert unit[10, 10] == 1.0 and unit.sum() == 1.0


@pytest.mark.parametrize("call, message", [
    (lambda: gaussian_kernel(4, 1.0), "kernel size must be odd and positive, got 4"),
    (lambda: gaussian_kernel(7, 0.0), "sigma must be positive"),
    (lambda: generalized_gaussian_kernel(7, 1.0, beta=-1.0), "beta must be positive, got -1.0"),
    (lambda: sinc_kernel(7, 4.0), "omega must be in (0, pi], got 4.0"),
    (lambda: family_kernel("box", 7, 1.0, 1.0, 0.0, 1.0), "unknown kernel kind 'box'"),
    (lambda: pad_kernel(np.ones((23, 23), np.float32), 21), "kernel must be square with odd side <= 21"),
])
def test_errors_name_the_argument_and_value(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()
