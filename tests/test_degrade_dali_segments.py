"""User ops on the DALI path: the graph cut at each user op into segment graphs, the op run on the CPU
in between, within the DALI-vs-reference tolerances of tests/test_degrade_backends.py (CPU mode)."""
from __future__ import annotations

import re
from dataclasses import replace

import cv2
import numpy as np
import pytest

from pipeline.degrade import DegradeConfig, apply_recipe, preset_settings, sample_recipe
from pipeline.degrade.dali_segments import END, user_op_plan
from pipeline.degrade.preset import apply_overrides, parse_preset
from pipeline.degrade.recipe import Recipe, UserOp
from pipeline.params import ParamsError, build

GAUSSIAN = {"noise1": {"gaussian_prob": 1.0}, "noise2": {"gaussian_prob": 1.0}}  # as the whole-recipe parity test


def grain(img: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(params["s"]), 0.0, 1.0)


def contrast(img: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    return (img - np.float32(0.5)) * np.float32(params["c"]) + np.float32(0.5)


def keep(img: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    return img.copy()


OPS = {"grain": {"s": {"uniform": [0.04, 0.08]}}, "contrast": {"c": {"uniform": [0.5, 0.7]}}, "keep": {}}


def with_ops(*placed: tuple[str | None, str]) -> object:
    """x4plus (Gaussian noise) with user op `op` after each top-level step `after` (None: first)."""
    data = preset_settings("realesrgan-x4plus").to_data()
    for k, (after, op) in enumerate(placed):
        names = [s["name"] for s in data["steps"]]
        data["steps"].insert(0 if after is None else names.index(after) + 1,
                             {"name": f"u{k}", "op": f"{__name__}:{op}", "params": OPS[op]})
    return apply_overrides(parse_preset(data), GAUSSIAN)


@pytest.fixture(scope="module")
def photo(fixtures) -> np.ndarray:
    bgr = cv2.imread(str(fixtures / "pairs" / "gt" / "baboon.png"), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:96, :96, ::-1])


@pytest.fixture(scope="module")
def degrader():
    pytest.importorskip("nvidia.dali")
    from pipeline.degrade.dali_backend import DaliDegrader
    return DaliDegrader(8, "cpu", num_threads=2)


def test_user_op_plan_places_each_op_before_the_next_graph_stage():
    recipe = sample_recipe(with_ops((None, "keep"), ("jpeg1", "grain"), ("final", "contrast")), 0, "k", 0)
    assert [(cut, op.name) for cut, op in user_op_plan(recipe)] == [(0, "u0"), (5, "u1"), (END, "u2")]
    no_jpeg1 = replace(recipe, steps=tuple(s for s in recipe.steps if s.name != "jpeg1"))
    assert [cut for cut, _ in user_op_plan(no_jpeg1)] == [0, 5, END]   # jpeg1 absent: the same cut
    no_noise1 = replace(recipe, steps=tuple(s for s in recipe.steps if s.name not in ("noise1", "jpeg1")))
    assert user_op_plan(no_noise1) == user_op_plan(recipe)
    inside = [s for s in recipe.steps if not isinstance(s, UserOp)]
    inside.insert(len(inside) - 1, UserOp("u9", f"{__name__}:keep", {}, 1))
    with pytest.raises(ValueError, match="runs user ops between stages, not inside the final one"):
        user_op_plan(Recipe(recipe.preset, 4, recipe.order, tuple(inside)))


@pytest.mark.parametrize("placed", [
    [("jpeg1", "grain")], [(None, "contrast")], [("final", "contrast")],
    [("usm", "contrast"), ("noise2", "grain"), ("final", "contrast")],
], ids=["middle", "first", "last", "three"])
def test_user_ops_between_dali_segments_match_the_reference_backend(degrader, photo, placed):
    """The stated whole-recipe tolerance: median mean-abs-difference <= 3 levels, worst <= 15."""
    recipes = [sample_recipe(with_ops(*placed), 0, f"k{i}", 0) for i in range(8)]
    assert all(any(isinstance(s, UserOp) and s.applied for s in r.steps) for r in recipes)
    lrs = degrader.run([photo] * 8, recipes)
    means = [np.abs(lr.astype(int) - apply_recipe(photo, r)).mean() for lr, r in zip(lrs, recipes)]
    assert np.median(means) <= 3 and max(means) <= 15
    # and the op really ran there: the reference without it is further away than the tolerance
    off = [replace(r, steps=tuple(replace(s, applied=False) if isinstance(s, UserOp) else s for s in r.steps))
           for r in recipes]
    away = [np.abs(lr.astype(int) - apply_recipe(photo, r)).mean() for lr, r in zip(lrs, off)]
    assert np.median(away) > 1.5 * np.median(means)


def test_cutting_the_graph_changes_no_byte(degrader, photo):
    """A user op that returns its input: the segment graphs hand the float image on unchanged, so the
    bytes are the whole graph's without the op."""
    recipes = [sample_recipe(with_ops(("usm", "keep"), ("jpeg1", "keep"), ("noise2", "keep")), 0, f"k{i}", 0)
               for i in range(8)]
    plain = [replace(r, steps=tuple(s for s in r.steps if not isinstance(s, UserOp))) for r in recipes]
    for a, b in zip(degrader.run([photo] * 8, recipes), degrader.run([photo] * 8, plain)):
        assert np.array_equal(a, b)


def test_a_batch_mixing_plans_and_single_samples_give_the_same_bytes(degrader, photo):
    recipes = [sample_recipe(with_ops(("noise1", "grain")), 0, f"k{i}", 0) for i in range(8)]
    recipes[3] = sample_recipe(preset_settings("realesrgan-x4plus"), 0, "plain", 0)
    assert len({tuple(c for c, _ in user_op_plan(r)) for r in recipes}) >= 2   # noise1 absent in some: 2 plans
    batch = degrader.run([photo] * 8, recipes)
    for i in (0, 3, 5):
        assert np.array_equal(degrader.run([photo], [recipes[i]])[0], batch[i])


def test_the_dali_backend_takes_presets_with_user_ops_between_steps(tmp_path):
    import yaml
    path = tmp_path / "g.yaml"
    data = with_ops(("jpeg1", "grain")).to_data()
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert build(DegradeConfig, {"preset": str(path), "backend": "dali"}, "degrade").backend == "dali"
    final = next(s for s in data["steps"] if s["name"] == "final")
    final["steps"].insert(1, {"name": "u9", "op": f"{__name__}:keep"})
    final["orders"] = {label: [*order, "u9"] for label, order in final["orders"].items()}
    data["steps"] = [s for s in data["steps"] if s["name"] != "u0"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ParamsError, match=re.escape("degrade.backend: expected 'auto' or 'reference' with the "
                                                    "realesrgan-x4plus preset (the graph runs user ops between its "
                                                    "steps, not inside the group final), got 'dali'")):
        build(DegradeConfig, {"preset": str(path), "backend": "dali"}, "degrade")


def test_a_user_op_preset_through_the_dali_stage_path_replays_and_ignores_batch_size(tmp_path):
    """degrade_set on dali-cpu: the same bytes over batch sizes, and `replay_sample` remakes each sample."""
    pytest.importorskip("nvidia.dali")
    import yaml

    from pipeline.degrade.run import degrade_set, replay_sample
    from pipeline.io.images import encode_png
    from pipeline.io.shards import ShardSet

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        (photos / f"p{i}.png").write_bytes(encode_png(rng.integers(0, 256, (96, 112, 3), dtype=np.uint8)))
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(with_ops(("noise1", "grain"), ("final", "contrast")).to_data(), sort_keys=False))
    sets = []
    for batch in (1, 4):
        cfg = build(DegradeConfig, {"preset": str(path), "backend": "dali", "variants": 2, "batch_size": batch,
                                    "workers": 2, "examples": 0}, "degrade")
        out = tmp_path / f"lr{batch}"
        assert degrade_set(photos, out, cfg, seed=3, scale=4, progress=False)["backend"] == "dali-cpu"
        sets.append(ShardSet(out))
    keys = sorted(sets[0].index["key"])
    assert len(keys) == 6
    for key in keys:
        assert sets[0].read(key) == sets[1].read(key)
        assert replay_sample(tmp_path / "lr1", key)[1], key
