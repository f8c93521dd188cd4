"""Presets as data: the built-ins' recipes pinned byte for byte, preset files, user ops."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import cli
from pipeline.degrade import DegradeConfig, Recipe, apply_recipe, preset_settings, recipe_columns, sample_recipe
from pipeline.degrade.preset import PRESET_DIR, PRESETS, dump_preset, parse_preset
from pipeline.degrade.run import degrade_set, draw_recipes, replay_sample
from pipeline.degrade.dali_backend import cuda_visible
from pipeline.degrade.sources import read_sample, resolve_backend
from pipeline.io.images import decode_png, encode_png
from pipeline.params import ParamsError, build

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


# ---- preset files -------------------------------------------------------------------------------

def grain(img: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """A user op for the tests below: film grain of a drawn strength, `square` grain being coarser."""
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(params["strength"])
    if params["shape"] == "square":
        noise[1::2] = noise[::2][: noise[1::2].shape[0]]
    return np.clip(img + noise, 0.0, 1.0)


def wrong_shape(img: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    return img[1:]


GRAIN = {"name": "grain", "op": f"{__name__}:grain", "prob": 0.7,
         "params": {"strength": {"uniform": [0.01, 0.1]}, "shape": {"choice": ["round", "square"]}}}


def with_step(preset: str, step: dict, after: str) -> dict:
    """The built-in preset's data with `step` inserted after the top-level step `after`."""
    data = preset_settings(preset).to_data()
    at = [s["name"] for s in data["steps"]].index(after)
    data["steps"].insert(at + 1, step)
    return data


def write_preset(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("preset", PRESETS)
def test_builtin_files_are_their_own_canonical_dump(preset):
    text = (PRESET_DIR / f"{preset}.yaml").read_text()
    assert dump_preset(preset_settings(preset)) == text


@pytest.mark.parametrize("preset", PRESETS)
def test_recipes_writes_the_preset_and_feeding_it_back_draws_the_same_bytes(tmp_path, preset):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main(["recipes", str(a), "--preset", preset, "--n", "40", "--seed", "5"]) == 0
    assert (a / "preset.yaml").read_bytes() == (PRESET_DIR / f"{preset}.yaml").read_bytes()
    assert cli.main(["recipes", str(b), "--preset", str(a / "preset.yaml"), "--n", "40", "--seed", "5"]) == 0
    for name in ("recipes.parquet", "kernels.npz", "preset.yaml"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_overrides_are_written_into_the_preset_file_and_replayed_from_it(tmp_path):
    cfg = build(DegradeConfig, {"blur2": {"sigma_range": [0.5, 0.6]}, "final": {
        "order_probs": {"resize_sinc_jpeg": 1.0, "jpeg_resize_sinc": 0.0}}}, "degrade")
    draw_recipes(tmp_path / "a", cfg, n=30, seed=1, scale=4)
    text = (tmp_path / "a" / "preset.yaml").read_text()
    assert "sigma_range: [0.5, 0.6]" in text and "order_probs: {resize_sinc_jpeg: 1.0, jpeg_resize_sinc: 0.0}" in text
    again = build(DegradeConfig, {"preset": str(tmp_path / "a" / "preset.yaml")}, "degrade")
    draw_recipes(tmp_path / "b", again, n=30, seed=1, scale=4)
    table = pd.read_parquet(tmp_path / "a" / "recipes.parquet")
    assert table.equals(pd.read_parquet(tmp_path / "b" / "recipes.parquet"))
    assert (table["final_order"] == "resize_sinc_jpeg").all() and table["blur2_sigma_x"].dropna().between(0.5, 0.6).all()


def test_groups_shuffle_within_themselves_and_repeat(tmp_path):
    base = preset_settings("realesrgan-x4plus")
    steps = {s["name"]: s for s in base.to_data()["steps"]}
    data = {"name": "third-order", "scale": 4, "steps": [
        steps["usm"],
        {"name": "stage", "order": "shuffle", "repeat": 3, "before": [["blur", "noise"]],
         "steps": [{**steps["blur1"], "name": "blur"}, {**steps["noise1"], "name": "noise"},
                   {**steps["jpeg1"], "name": "jpeg"}]},
        steps["final"]]}
    cfg = build(DegradeConfig, {"preset": str(write_preset(tmp_path / "p.yaml", data))}, "degrade")
    recipes = [sample_recipe(cfg, 0, f"k{i}", 0) for i in range(200)]
    for r in recipes:
        names = [s.name for s in r.steps]
        assert names[0] == "usm" and names[-3:] in (["resize_final", "sinc_final", "jpeg_final"],
                                                   ["jpeg_final", "resize_final", "sinc_final"])
        for k in "123":  # each pass holds its own three steps, blur before noise
            assert names.index(f"blur{k}") < names.index(f"noise{k}") if f"noise{k}" in names else True
            assert max(i for i, n in enumerate(names) if n.endswith(k)) < \
                min([i for i, n in enumerate(names) if n.endswith(str(int(k) + 1))] or [len(names)])
        passes = r.order.split(";")
        assert len(passes) == 4 and passes[-1] in ("resize_sinc_jpeg", "jpeg_resize_sinc")
        cols = recipe_columns(r)  # the shuffled passes and the chosen final order, each in its column
        assert cols["bsrgan_order"] == ";".join(passes[:3]) and cols["final_order"] == passes[-1]
    assert len({r.order.split(";")[0] for r in recipes}) == 3  # blur-before-noise leaves 3 of 6 orders
    assert sample_recipe(cfg, 0, "k7", 0) == recipes[7]


def test_a_preset_derived_from_bsrgan_keeps_its_index_columns(tmp_path):
    """Columns follow the recipe's structure, not the preset's name: a calibrated bsrgan (same ranges,
    renamed) draws the same recipes and gets the same columns, `bsrgan_order` and `camera_*` included."""
    data = {**preset_settings("bsrgan").to_data(), "name": "bsrgan-calibrated"}
    derived = build(DegradeConfig, {"preset": str(write_preset(tmp_path / "p.yaml", data))}, "degrade")
    base = build(DegradeConfig, {"preset": "bsrgan"}, "degrade")
    for i in range(20):
        a, b = recipe_columns(sample_recipe(base, 0, f"k{i}", 0)), recipe_columns(sample_recipe(derived, 0, f"k{i}", 0))
        assert a.keys() == b.keys() and "bsrgan_order" in b and "camera_shot" in b
        assert json.dumps(a, default=str) == json.dumps(b, default=str)


def test_a_choice_label_may_not_hold_the_order_separators():
    data = preset_settings("realesrgan-x4plus").to_data()
    final = next(s for s in data["steps"] if s.get("order") == "choice")
    final["orders"] = {"a,b": final["orders"]["resize_sinc_jpeg"], "c": final["orders"]["jpeg_resize_sinc"]}
    final["order_probs"] = {"a,b": 0.5, "c": 0.5}
    with pytest.raises(ParamsError, match=re.escape("a label may not contain ',' or ';', got 'a,b'")):
        parse_preset(data)


# ---- user ops -----------------------------------------------------------------------------------

def test_user_op_gets_recipe_columns_and_replays(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        (photos / f"p{i}.png").write_bytes(encode_png(rng.integers(0, 256, (96, 112, 3), dtype=np.uint8)))
    preset = write_preset(tmp_path / "grain.yaml", with_step("realesrgan-x4plus", GRAIN, after="noise2"))
    cfg = build(DegradeConfig, {"preset": str(preset), "variants": 4, "workers": 1, "examples": 0}, "degrade")
    assert resolve_backend("auto", cfg.settings) == ("dali-gpu" if cuda_visible() else "reference")
    out = tmp_path / "lr"
    degrade_set(photos, out, cfg, seed=3, scale=4, progress=False)
    index = pd.read_parquet(out / "index.parquet")
    assert len(index) == 12 and {"grain_strength", "grain_shape"} <= set(index.columns)
    applied = index["grain_strength"].notna()
    assert 0 < applied.sum() < 12 and index.loc[applied, "grain_strength"].between(0.01, 0.1).all()
    assert set(index.loc[applied, "grain_shape"]) <= {"round", "square"} and index.loc[~applied, "grain_shape"].isna().all()
    for key in index["key"]:
        meta = json.loads(read_sample(out, key)["json"])
        step = next(s for s in meta["recipe"]["steps"] if s["name"] == "grain")
        assert step["op"] == f"{__name__}:grain"
        lr, same = replay_sample(out, key)
        assert same, key
        recipe = Recipe.from_dict(meta["recipe"])
        assert recipe == sample_recipe(cfg, 3, meta["hr_key"], meta["variant"])
        if step["applied"]:  # the op really ran: leaving it out changes the pixels
            off = Recipe(recipe.preset, recipe.scale, recipe.order, tuple(
                replace(s, applied=False) if s.name == "grain" else s for s in recipe.steps))
            hr = decode_png(read_sample(out, key)["hr.png"])
            assert not np.array_equal(apply_recipe(hr, off), lr)


def test_user_op_draws_are_deterministic_and_seeded_per_step():
    cfg = build(DegradeConfig, {"preset": "realesrgan-x4plus"}, "degrade")
    data = with_step("realesrgan-x4plus", GRAIN, after="usm")
    preset = parse_preset(data)
    a = [sample_recipe(preset, 0, f"k{i}", 0) for i in range(50)]
    assert a == [sample_recipe(parse_preset(data), 0, f"k{i}", 0) for i in range(50)]
    seeds = {r.step("grain").seed for r in a if r.step("grain").applied}
    assert len(seeds) == sum(r.step("grain").applied for r in a) > 20
    assert Recipe.from_json(a[0].to_json()) == a[0]
    assert sample_recipe(cfg, 0, "k0", 0) != a[0]


@pytest.mark.parametrize("op, message", [
    ("no_such_module_xyz:f", "degrade.preset: {file}: grain.op: expected an importable 'module:function', got "
                             "'no_such_module_xyz:f'"),
    ("numpy:pi", "degrade.preset: {file}: grain.op: expected a function at 'numpy:pi', got float"),
])
def test_a_user_op_that_cannot_be_called_fails_with_one_line(tmp_path, op, message):
    path = write_preset(tmp_path / "bad.yaml", with_step("realesrgan-x4plus", {**GRAIN, "op": op}, after="usm"))
    with pytest.raises(ParamsError, match=re.escape(message.format(file=path))) as err:
        build(DegradeConfig, {"preset": str(path)}, "degrade")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("params, message", [
    ({"s": {"uniform": [2, 1]}}, "grain.params.s.uniform: expected [lo, hi] with lo <= hi, got [2.0, 1.0]"),
    ({"s": {"uniform": [0, 1], "integers": [1, 2]}}, "grain.params.s: expected exactly one of"),
    ({"s": {"choice": []}}, "grain.params.s.choice: expected at least 1 value"),
])
def test_user_op_ranges_are_checked(params, message):
    data = with_step("realesrgan-x4plus", {**GRAIN, "params": params}, after="usm")
    with pytest.raises(ParamsError, match=re.escape(message)):
        parse_preset(data)


def test_a_user_op_that_resizes_is_refused_naming_it():
    preset = parse_preset(with_step("realesrgan-x4plus", {**GRAIN, "op": f"{__name__}:wrong_shape", "prob": None},
                                    after="usm"))
    with pytest.raises(ValueError, match=re.escape(f"user op {__name__}:wrong_shape: expected an array of shape")):
        apply_recipe(np.zeros((64, 64, 3), np.uint8), sample_recipe(preset, 0, "k", 0))


def test_the_dali_backend_refuses_presets_it_cannot_run(tmp_path):
    path = write_preset(tmp_path / "b.yaml", preset_settings("bsrgan").to_data())
    with pytest.raises(ParamsError, match=re.escape("degrade.backend: expected 'auto' or 'reference' with the "
                                                    "bsrgan preset (the graph implements the Real-ESRGAN step order")):
        build(DegradeConfig, {"preset": str(path), "backend": "dali"}, "degrade")
    grain = write_preset(tmp_path / "g.yaml", with_step("realesrgan-x4plus", GRAIN, after="usm"))
    assert build(DegradeConfig, {"preset": str(grain), "backend": "dali"}, "degrade").backend == "dali"  # between segments
    assert build(DegradeConfig, {"preset": str(write_preset(tmp_path / "x4.yaml", preset_settings(
        "realesrgan-x4plus").to_data())), "backend": "dali"}, "degrade").backend == "dali"
