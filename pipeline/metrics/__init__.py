"""Image-quality metrics: PSNR/SSIM (BasicSR conventions), NIQE (MATLAB-matching), LPIPS (local weights).

Images are HWC uint8 RGB NumPy arrays. `niqe_available` / `lpips_available` return
``(ok, reason)`` so a caller can report a metric as skipped instead of failing.
"""
from pipeline.metrics.color import rgb_to_y
from pipeline.metrics.lpips import lpips, lpips_available
from pipeline.metrics.niqe import niqe, niqe_available
from pipeline.metrics.psnr_ssim import psnr, ssim

__all__ = ["lpips", "lpips_available", "niqe", "niqe_available", "psnr", "rgb_to_y", "ssim"]
