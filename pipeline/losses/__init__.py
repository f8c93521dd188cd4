"""Training losses: pixel (L1/L2/Charbonnier), VGG19 perceptual (+ style), GAN losses on logits."""
from __future__ import annotations

from .gan import GAN_KINDS, clip_weights, d_loss, g_loss, gradient_penalty
from .perceptual import REALESRGAN_LAYER_WEIGHTS, PerceptualLoss, VGGFeatureExtractor, load_vgg19_features
from .pixel import PIXEL_LOSSES, build_pixel_loss, charbonnier_loss, l1_loss, l2_loss

__all__ = [
    "GAN_KINDS", "clip_weights", "d_loss", "g_loss", "gradient_penalty",
    "REALESRGAN_LAYER_WEIGHTS", "PerceptualLoss", "VGGFeatureExtractor", "load_vgg19_features",
    "PIXEL_LOSSES", "build_pixel_loss", "charbonnier_loss", "l1_loss", "l2_loss",
]
