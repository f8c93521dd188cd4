"""Override keys from before presets were data fail with one line naming their new spelling."""
from __future__ import annotations

import pytest

from pipeline.config import load_params
from pipeline.degrade import DegradeConfig
from pipeline.degrade.renamed import RENAMED
from pipeline.params import ParamsError, build

# every key the old `degrade:` section took that the built-in presets no longer take, with an old value
OLD = {
    ("realesrgan-x4plus", "final", "interps"): (["area"], "degrade.resize_final.interps"),
    ("realesrgan-x4plus", "final", "sinc_prob"): (0.5, "degrade.sinc_final.prob"),
    ("realesrgan-x4plus", "final", "size_range"): ([7, 9], "degrade.sinc_final.size_range"),
    ("realesrgan-x4plus", "final", "omega_range"): ([1.0, 2.0], "degrade.sinc_final.omega_range"),
    ("realesrgan-x4plus", "final", "jpeg_quality_range"): ([40, 60], "degrade.jpeg_final.quality_range"),
    ("realesrgan-x4plus", "final", "resize_first_prob"):
        (0.7, "degrade.final.order_probs ({resize_sinc_jpeg: p, jpeg_resize_sinc: 1 - p})"),
    ("realesrgan-x2plus", "final", "sinc_prob"): (0.5, "degrade.sinc_final.prob"),
    ("bsrgan", "final", "interps"): (["area"], "degrade.resize_final.interps"),
    ("bsrgan", "final", "jpeg_quality_range"): ([40, 60], "degrade.jpeg_final.quality_range"),
    ("bsrgan", "resize1", "scale_range"): ([0.2, 1.0], "degrade.resize1.min_scale (the low end of the old [lo, hi])"),
}


@pytest.mark.parametrize("preset, step, key", list(OLD))
def test_an_old_key_names_its_new_spelling(preset, step, key):
    value, new = OLD[preset, step, key]
    with pytest.raises(ParamsError) as err:
        build(DegradeConfig, {"preset": preset, step: {key: value}}, "degrade")
    assert str(err.value) == f"degrade.{step}.{key}: renamed — use {new}"


def test_every_renamed_key_is_tested():
    assert {(step, key) for _, step, key in OLD} == set(RENAMED)


def test_the_new_spelling_is_accepted_and_means_the_old_value():
    cfg = build(DegradeConfig, {"sinc_final": {"prob": 0.5}, "jpeg_final": {"quality_range": [40, 60]},
                                "final": {"order_probs": {"resize_sinc_jpeg": 0.7, "jpeg_resize_sinc": 0.3}}},
                "degrade")
    assert cfg.settings.step("sinc_final").prob == 0.5 and cfg.settings.step("jpeg_final").quality_range == (40, 60)
    assert cfg.settings.step("final").order_probs == {"resize_sinc_jpeg": 0.7, "jpeg_resize_sinc": 0.3}
    assert build(DegradeConfig, {"preset": "bsrgan", "resize1": {"min_scale": 0.2}}, "degrade") \
        .settings.step("resize1").min_scale == 0.2


def test_a_key_the_step_still_takes_is_not_renamed():
    """x4plus's resize1 is a `resize` step, which has a scale_range of its own."""
    cfg = build(DegradeConfig, {"resize1": {"scale_range": [0.2, 1.0]}}, "degrade")
    assert cfg.settings.step("resize1").scale_range == (0.2, 1.0)


def test_an_old_key_for_a_step_the_preset_lacks_says_so():
    with pytest.raises(ParamsError) as err:
        build(DegradeConfig, {"preset": "bsrgan", "final": {"sinc_prob": 0.1}}, "degrade")
    assert str(err.value) == ("degrade.final.sinc_prob: renamed — use degrade.sinc_final.prob; the bsrgan preset "
                              "has no step sinc_final with prob")


def test_an_old_key_in_params_yaml_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("degrade:\n  final: {sinc_prob: 0.8, jpeg_quality_range: [30, 95]}\n")
    with pytest.raises(ParamsError) as err:
        load_params(path, sections=("degrade",))
    assert str(err.value) == f"{path}: degrade.final.sinc_prob: renamed — use degrade.sinc_final.prob"
    assert "\n" not in str(err.value)
