"""Recipe sampling (seeding, distributions, presets), serialisation, columns, and degrade params."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from pipeline.degrade import DegradeConfig, Recipe, preset_settings, recipe_columns, sample_recipe
from pipeline.degrade.recipe import BASE_COLUMNS, BSRGAN_COLUMNS, Blur, Resize, kernel_decimals, padded_kernels
from pipeline.degrade.run import draw_recipes
from pipeline.params import ParamsError, build

N_DRAWS = 20_000
PI = math.pi

DESIGN_COLUMNS = [f"blur{s}_{k}" for s in (1, 2) for k in ("kind", "size", "sigma_x", "sigma_y", "theta", "beta", "omega")] \
    + [f"resize{s}_{k}" for s in (1, 2) for k in ("mode", "scale", "interp")] \
    + [f"noise{s}_{k}" for s in (1, 2) for k in ("kind", "gray", "level")] \
    + ["jpeg1_quality", "jpeg2_quality", "final_order", "final_kind", "final_size", "final_omega", "final_interp",
       "final_jpeg_quality"]


def cfg_of(**data) -> DegradeConfig:
    return build(DegradeConfig, data, "degrade")


@pytest.fixture(scope="module")
def draws() -> pd.DataFrame:
    cfg = cfg_of()
    return pd.DataFrame([recipe_columns(sample_recipe(cfg, 7, f"tile{i}", 0)) for i in range(N_DRAWS)])


def share(values: pd.Series, name) -> float:
    return float((values == name).mean())


# ---- seeding ------------------------------------------------------------------------------------

def test_seed_digests_are_fixed_across_processes_and_versions():
    from pipeline.seeding import sha256_int, stable_hash

    assert sha256_int("abc") == 16919744041952114874  # sha256("abc")[:8], little-endian: recipes
    assert stable_hash("abc") == 16919744041952114874 >> 1  # 63 bits: patch windows, order, augmentation
    assert sha256_int("abc", "big") == 0xBA7816BF8F01CFEA  # ingest's tile cap


def test_recipe_depends_only_on_seed_key_variant():
    a = sample_recipe(cfg_of(), 3, "k", 1)
    assert sample_recipe(cfg_of(batch_size=1, workers=2, variants=4, backend="reference"), 3, "k", 1) == a
    assert sample_recipe(cfg_of(), 3, "k", 2) != a
    assert sample_recipe(cfg_of(), 4, "k", 1) != a
    assert sample_recipe(cfg_of(), 3, "k2", 1) != a


def test_json_round_trip_keeps_kernels_bit_exact():
    for i in range(20):
        r = sample_recipe(cfg_of(), 0, f"k{i}", 0)
        back = Recipe.from_json(r.to_json())
        assert back == r
        for a, b in zip(r.steps, back.steps):
            if isinstance(a, Blur):
                assert a.kernel.dtype == b.kernel.dtype == np.float32 and np.array_equal(a.kernel, b.kernel)
    data = r.to_dict()
    assert data["version"] == 1 and data["preset"] == "realesrgan-x4plus" and data["scale"] == 4
    assert [s["name"] for s in data["steps"]][:3] == ["usm", "blur1", "resize1"]



def test_kernel_decimals_are_each_values_shortest_float32_decimal():
    # formatting each distinct value once must give what formatting every value gives
    kernels = [s.kernel for i in range(200) for s in sample_recipe(cfg_of(), 1, f"k{i}", 0).steps
               if isinstance(s, Blur)]
    odd = np.array([[0.0, -0.0, 1e-30], [-0.1, 0.1, np.float32(1) / 3], [5e-5, 2.0 ** -20, 0.0]], np.float32)
    for kernel in kernels + [odd]:
        assert kernel_decimals(kernel) == [[float(str(v)) for v in row] for row in kernel]
    assert [math.copysign(1, v) for v in kernel_decimals(odd)[0][:2]] == [1, -1]
    assert {k for k in (s.kind for i in range(200) for s in sample_recipe(cfg_of(), 1, f"k{i}", 0).steps
                        if isinstance(s, Blur))} >= {"iso", "aniso", "generalized_iso", "plateau_aniso", "sinc"}

def test_columns_are_exactly_design_section_4():
    cols = recipe_columns(sample_recipe(cfg_of(), 0, "k", 0))
    assert list(cols) == DESIGN_COLUMNS == list(BASE_COLUMNS)
    assert math.isnan(cols["jpeg2_quality"])  # Real-ESRGAN has no stage-2 JPEG besides the final one


def test_padded_kernels_are_21x21_and_skipped_blur_is_the_unit_pulse():
    cfg = cfg_of(blur2={"prob": 0.0}, sinc_final={"prob": 0.0})
    k = padded_kernels(sample_recipe(cfg, 0, "k", 0))
    assert {n: v.shape for n, v in k.items()} == {"blur1": (21, 21), "blur2": (21, 21), "final": (21, 21)}
    pulse = np.zeros((21, 21), np.float32)
    pulse[10, 10] = 1
    assert np.array_equal(k["blur2"], pulse) and np.array_equal(k["final"], pulse)
    assert abs(k["blur1"].sum() - 1) < 1e-5


# ---- distributions (Real-ESRGAN x4plus defaults) ------------------------------------------------

TOL = 0.015  # ≈ 4 standard errors at 20k draws


def test_blur_families_and_sinc_follow_the_configured_probabilities(draws):
    blur1 = draws["blur1_kind"]
    assert share(blur1, "sinc") == pytest.approx(0.1, abs=TOL)
    family = blur1[blur1 != "sinc"]
    for kind, p in {"iso": 0.45, "aniso": 0.25, "generalized_iso": 0.12, "generalized_aniso": 0.03,
                    "plateau_iso": 0.12, "plateau_aniso": 0.03}.items():
        assert share(family, kind) == pytest.approx(p, abs=TOL), kind
    blur2 = draws["blur2_kind"]
    assert share(blur2, "none") == pytest.approx(0.2, abs=TOL)
    assert share(blur2[blur2 != "none"], "sinc") == pytest.approx(0.1, abs=TOL)


def test_kernel_sizes_sigmas_betas_and_omegas_stay_in_their_ranges(draws):
    sizes = draws["blur1_size"]
    assert set(sizes.unique()) == {7, 9, 11, 13, 15, 17, 19, 21}
    assert sizes.value_counts(normalize=True).max() < 1 / 8 + TOL
    for col, lo, hi in (("blur1_sigma_x", 0.2, 3.0), ("blur1_sigma_y", 0.2, 3.0), ("blur2_sigma_x", 0.2, 1.5),
                        ("blur1_theta", -PI, PI), ("final_jpeg_quality", 30, 95)):
        v = draws[col].dropna()
        assert v.min() >= lo and v.max() <= hi, col
    gaussian = draws["noise1_kind"] == "gaussian"
    assert draws.loc[gaussian, "noise1_level"].between(1.0, 30.0).all()
    assert draws.loc[~gaussian, "noise1_level"].between(0.05, 3.0).all()
    iso = draws[draws["blur1_kind"] == "iso"]
    assert (iso["blur1_sigma_x"] == iso["blur1_sigma_y"]).all() and (iso["blur1_theta"] == 0).all()
    gen = draws.loc[draws["blur1_kind"].str.startswith("generalized"), "blur1_beta"]
    assert gen.between(0.5, 4.0).all() and (gen < 1).mean() == pytest.approx(0.5, abs=0.05)
    plateau = draws.loc[draws["blur1_kind"].str.startswith("plateau"), "blur1_beta"]
    assert plateau.between(1.0, 2.0).all()
    sinc = draws[draws["blur1_kind"] == "sinc"]
    small, large = sinc[sinc["blur1_size"] < 13], sinc[sinc["blur1_size"] >= 13]
    assert small["blur1_omega"].min() >= PI / 3 and large["blur1_omega"].min() >= PI / 5
    assert (large["blur1_omega"] < PI / 3).any()
    final = draws.loc[draws["final_kind"] == "sinc", "final_omega"]
    assert final.between(PI / 3, PI).all()
    q = draws["jpeg1_quality"]
    assert q.min() == 30 and q.max() == 95 and (q == q.round()).all()


def test_resize_noise_and_final_branches_follow_the_configured_probabilities(draws):
    for col, probs in (("resize1_mode", {"up": 0.2, "down": 0.7, "keep": 0.1}),
                       ("resize2_mode", {"up": 0.3, "down": 0.4, "keep": 0.3}),
                       ("resize1_interp", {"area": 1 / 3, "bilinear": 1 / 3, "bicubic": 1 / 3}),
                       ("final_interp", {"area": 1 / 3, "bilinear": 1 / 3, "bicubic": 1 / 3}),
                       ("noise1_kind", {"gaussian": 0.5, "poisson": 0.5}),
                       ("noise2_kind", {"gaussian": 0.5, "poisson": 0.5}),
                       ("final_kind", {"sinc": 0.8, "none": 0.2}),
                       ("final_order", {"resize_sinc_jpeg": 0.5, "jpeg_resize_sinc": 0.5})):
        for name, p in probs.items():
            assert share(draws[col], name) == pytest.approx(p, abs=TOL), (col, name)
    assert draws["noise1_gray"].mean() == pytest.approx(0.4, abs=TOL)
    up = draws.loc[draws["resize1_mode"] == "up", "resize1_scale"]
    down = draws.loc[draws["resize1_mode"] == "down", "resize1_scale"]
    assert up.between(1.0, 1.5).all() and down.between(0.15, 1.0).all()
    assert (draws.loc[draws["resize1_mode"] == "keep", "resize1_scale"] == 1.0).all()
    poisson = draws.loc[draws["noise2_kind"] == "poisson", "noise2_level"]
    assert poisson.between(0.05, 2.5).all()


def test_overrides_replace_preset_values():
    cfg = cfg_of(blur2={"sigma_range": [0.5, 0.6], "sinc_prob": 0.0, "prob": 1.0}, sinc_final={"prob": 0.0},
                 resize1={"mode_probs": {"up": 1.0}})
    assert cfg.settings.step("blur2").sigma_range == (0.5, 0.6) and cfg.settings.step("blur1").sigma_range == (0.2, 3.0)
    rows = pd.DataFrame([recipe_columns(sample_recipe(cfg, 0, f"k{i}", 0)) for i in range(300)])
    assert rows["blur2_sigma_x"].between(0.5, 0.6).all()
    assert (rows["final_kind"] == "none").all() and (rows["resize1_mode"] == "up").all()


def test_overrides_merge_into_the_preset_key_by_key_and_replace_mappings_whole():
    cfg = cfg_of(blur1={"kernel_probs": {"iso": 1.0}}, blur2=None, noise1={})
    blur1 = cfg.settings.step("blur1")
    assert blur1.kernel_probs == {"iso": 1.0} and blur1.sigma_range == (0.2, 3.0)
    assert cfg.settings == cfg_of(blur1={"kernel_probs": {"iso": 1.0}}).settings  # empty groups change nothing
    assert cfg.settings.step("blur2") == preset_settings("realesrgan-x4plus").step("blur2")


def test_x2plus_differs_from_x4plus_only_in_scale():
    x2, x4 = cfg_of(preset="realesrgan-x2plus"), cfg_of()
    same = {"name": "x", "scale": 0}
    assert {**x2.settings.to_data(), **same} == {**x4.settings.to_data(), **same}
    assert sample_recipe(x2, 0, "k", 0).scale == 2


def test_bsrgan_recipes_shuffle_with_the_final_downsample_after_the_first():
    cfg = cfg_of(preset="bsrgan")
    recipes = [sample_recipe(cfg, 1, f"k{i}", 0) for i in range(2000)]
    orders = set()
    for r in recipes:
        names = [s.name for s in r.steps]
        assert names.index("resize1") < names.index("resize_final") and names[-1] == "jpeg_final"
        assert "usm" not in names
        orders.add(r.order)
    assert len(orders) > 500  # the seven slots really are shuffled per sample
    rows = pd.DataFrame([recipe_columns(r) for r in recipes])
    assert set(BSRGAN_COLUMNS) <= set(rows.columns)
    assert rows["down0_interp"].notna().mean() == pytest.approx(0.25, abs=0.04)
    assert rows["camera_shot"].notna().mean() == pytest.approx(0.25, abs=0.04)
    assert rows["jpeg1_quality"].notna().mean() == pytest.approx(0.9, abs=0.03)
    assert rows["resize2_mode"].isna().all() and rows["final_order"].isna().all()
    assert all(r.step("down0") is None for r in (sample_recipe(cfg, 1, f"k{i}", 0, scale=2) for i in range(100)))


def test_draw_recipes_writes_table_kernels_and_report(tmp_path):
    out = tmp_path / "recipes"
    draw_recipes(out, cfg_of(), n=40, seed=3, scale=4)
    table = pd.read_parquet(out / "recipes.parquet")
    assert list(table.columns) == ["key"] + DESIGN_COLUMNS and len(table) == 40
    kernels = np.load(out / "kernels.npz")
    assert sorted(kernels.files) == ["blur1", "blur2", "final"]
    for name in kernels.files:
        assert kernels[name].shape == (40, 21, 21) and kernels[name].dtype == np.float32
        np.testing.assert_allclose(kernels[name].sum(axis=(1, 2)), 1.0, atol=1e-5)
    skipped = (table["blur2_kind"] == "none").to_numpy()
    assert skipped.any() and (kernels["blur2"][skipped][:, 10, 10] == 1).all()
    assert table.loc[0, "blur1_kind"] == recipe_columns(sample_recipe(cfg_of(), 3, "000000", 0))["blur1_kind"]
    assert "recipe_histograms.png" in (out / "report.md").read_text() and (out / "recipe_histograms.png").stat().st_size


# ---- params errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("data, message", [
    ({"blur1": {"sigma_range": [-1, 2]}}, "degrade.blur1.sigma_range: expected [lo, hi] with 0.001 <= lo <= hi, got [-1.0, 2.0]"),
    ({"noise1": {"sigma_range": [5, 1]}}, "degrade.noise1.sigma_range: expected [lo, hi] with 0.0 <= lo <= hi, got [5.0, 1.0]"),
    ({"resize1": {"mode_probs": {"up": 0.5, "down": 0.6, "keep": 0.1}}},
     "degrade.resize1.mode_probs: expected probabilities in [0, 1] summing to 1.0, got [0.5, 0.6, 0.1]"),
    ({"blur2": {"kernel_probs": {"iso": 0.5, "aniso": 0.4}}}, "degrade.blur2.kernel_probs: expected probabilities"),
    ({"blur2": {"kernel_probs": {"box": 1.0}}}, "degrade.blur2.kernel_probs: expected kernel families"),
    ({"sinc_final": {"size_range": [8, 21]}}, "degrade.sinc_final.size_range[0]: expected an odd integer in [1, 21], got 8"),
    ({"blur1": {"size_range": [7, 23]}}, "degrade.blur1.size_range[1]: expected an odd integer in [1, 21], got 23"),
    ({"usm": {"size": 50}}, "degrade.usm.size: expected an odd integer in [3, inf], got 50"),
    ({"jpeg1": {"quality_range": [0, 95]}}, "degrade.jpeg1.quality_range: expected [lo, hi] with 1 <= lo <= hi <= 100, got [0, 95]"),
    ({"jpeg_final": {"quality_range": [30, 101]}}, "degrade.jpeg_final.quality_range: expected [lo, hi] with 1 <= lo <= hi <= 100"),
    ({"noise2": {"gray_prob": 1.5}}, "degrade.noise2.gray_prob: expected 0.0 <= value <= 1.0, got 1.5"),
    ({"blur1": {"sigma_range": [1]}}, "degrade.blur1.sigma_range: expected a list of 2 values, got [1]"),
    ({"resize_final": {"interps": ["nearest"]}},
     "degrade.resize_final.interps[0]: expected one of ['area', 'bilinear', 'bicubic'], got 'nearest'"),
    ({"usm": {"enabled": "yes"}}, "degrade.usm.enabled: expected true or false, got 'yes'"),
    ({"blur1": 5}, "degrade.blur1: expected a mapping of keys, got 5"),
    ({"blur1": {"beta_plateau_range": [1.5, 2.0]}}, "degrade.blur1.beta_plateau_range: expected [lo, hi] with 0 < lo <= 1 <= hi"),
    ({"blur1": {"sigma": 1.0}}, "degrade.blur1.sigma: unknown key"),
    ({"preset": "esrgan"}, "degrade.preset: expected one of ['realesrgan-x4plus', 'realesrgan-x2plus', 'bsrgan', 'video', 'camera', 'web'] or a preset file, got 'esrgan'"),
    ({"variants": 0}, "degrade.variants: expected 1 <= value, got 0"),
    ({"preset": "bsrgan", "resize2": {"scale_range": [0.5, 1.0]}}, "degrade.resize2: not a step of the bsrgan preset; its steps: ['down0'"),
    ({"preset": "bsrgan", "resize1": {"mode_probs": {"down": 1.0}}}, "degrade.resize1.mode_probs: unknown key"),
    ({"final": {"sinc_prob": 0.5}}, "degrade.final.sinc_prob: renamed — use degrade.sinc_final.prob"),
    ({"final": {"sinc_pro": 0.5}}, "degrade.final.sinc_pro: unknown key; allowed keys: ['before', 'name'"),
    ({"final": {"order_probs": {"resize_sinc_jpeg": 0.5}}}, "degrade.final: a choice group needs `orders` and"),
    ({"blur1": {"op": "noise"}}, "degrade.blur1.op: set by the preset, not overridable"),
    ({"preset": "no/such.yaml"}, "degrade.preset: expected one of ['realesrgan-x4plus', 'realesrgan-x2plus', 'bsrgan', 'video', 'camera', 'web'] "
                                 "or a preset file, got 'no/such.yaml'"),
    ({"camera": {"prob": 0.5}}, "degrade.camera: not a step of the realesrgan-x4plus preset"),
    ({"preset": "bsrgan", "backend": "dali"}, "degrade.backend: expected 'auto' or 'reference' with the bsrgan preset"),
])
def test_bad_params_fail_with_one_line_naming_the_key(data, message):
    with pytest.raises(ParamsError, match=re.escape(message)) as err:
        cfg_of(**data)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("scale", [0, 5, 16])
def test_scale_outside_the_supported_set_is_rejected(scale):
    with pytest.raises(ParamsError, match=re.escape(f"scale: expected one of [1, 2, 3, 4, 8], got {scale}")):
        sample_recipe(cfg_of(), 0, "k", 0, scale=scale)


def test_resize_steps_record_their_base():
    r = sample_recipe(cfg_of(), 0, "k", 0)
    assert r.step("resize1").relative_to == "input" and r.step("resize2").relative_to == "lr"
    assert isinstance(r.step("resize_final"), Resize) and r.step("resize_final").scale == 1.0


def test_recipes_are_a_contract_pinned_by_their_drawn_values():
    """Recipes are stored and replayed, so a refactor of the sampler must not move a single draw.
    Pinned: every drawn scalar of 200 recipes per preset (kernels excluded: they are functions of
    these, and their last float bits belong to NumPy/SciPy). Change the pin only on purpose."""
    import hashlib
    import json
    h = hashlib.sha256()
    for preset in ("realesrgan-x4plus", "realesrgan-x2plus", "bsrgan"):
        settings = build(DegradeConfig, {"preset": preset}, "degrade").settings
        for i in range(200):
            cols = recipe_columns(sample_recipe(settings, 7, f"k{i}", i % 3, scale=4))
            h.update(json.dumps(cols, sort_keys=True, default=str).encode())
    assert h.hexdigest() == "573afdce9ee57594a2cedeb852b2c2026ad318976675ba348ef3449c0ec5e6bd"
