"""Presets as data: the built-ins' recipes pinned byte for byte, preset files, user ops."""
from __future__ import annotations

import hashlib

import pytest

from pipeline.degrade import DegradeConfig, sample_recipe
from pipeline.params import build

# sha256 over the recipe JSON of 50 samples (keys k0..k49, variant i % 3), recorded before presets
# became data: a data-driven sampler must consume each generator in exactly the old order.
RECIPE_JSON_PINS = {
    ("realesrgan-x4plus", None):
        "e5c2a1bd89d79b4c3ba16df56016825989f0e0143d2aaf071a4f0038927344c5",
    ("realesrgan-x2plus", None):
        "dd303a7aee2e225d596a1f9d02b2591b1a42f11d59457eb79aac644b7c5cc0e9",
    ("bsrgan", None):
        "c84659c836b2022571a71930d91f9c4aa706dc97563dca98cad9fd1a366a0698",
    ("bsrgan", 2):
        "745cb3159cf26650496871bcab090435be54edc55d3e7f18da2c72a958742a9c",
    ("realesrgan-x4plus", 1):
        "b55db4392827ac6400fef3beaa2bea0283ebb76bdb615afe4971c7ba0ab5a5ec",
}


def recipe_json_digest(preset: str, scale: int | None, **overrides) -> str:
    settings = build(DegradeConfig, {"preset": preset, **overrides}, "degrade").settings
    h = hashlib.sha256()
    for i in range(50):
        h.update(sample_recipe(settings, 11, f"k{i}", i % 3, scale=scale).to_json().encode())
    return h.hexdigest()


@pytest.mark.parametrize("preset, scale", list(RECIPE_JSON_PINS))
def test_builtin_recipe_json_is_pinned(preset, scale):
    assert recipe_json_digest(preset, scale) == RECIPE_JSON_PINS[preset, scale]


def test_builtin_recipe_json_with_overrides_is_pinned():
    x4 = recipe_json_digest("realesrgan-x4plus", None, blur2={"sigma_range": [0.5, 0.6]}, jpeg2={"prob": 0.5},
                            noise1={"gaussian_prob": 1.0}, usm={"enabled": False})
    bsrgan = recipe_json_digest("bsrgan", None, camera={"prob": 1.0}, blur1={"kernel_probs": {"iso": 1.0}})
    assert x4 == "538ba8d0563e21fb40d96b729bfd353c8c8e0e78bb064bfca8ca649281b69068"
    assert bsrgan == "30d34ac3d3ccbc1efcba69fbe99a4f41d472eea4684d5cf98ed5d088e0ed0c67"
