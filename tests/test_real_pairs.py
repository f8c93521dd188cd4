"""`realsynth pairs`: captured HR/LR pairs paired by name, scale-checked, registered, cropped or
refused with a reason; and the shard stage mixing the real-pair set into training."""
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data
import yaml

from pipeline.config import ShardConfig, parse_params
from pipeline.data.synthetic import write_synthetic_sets
from pipeline.io.images import decode_png
from pipeline.io.shards import ShardSet
from pipeline import cli
from pipeline.pairs import Limits, align_pair, import_pairs, match_files, pair_stem, scale_of
from pipeline.params import ParamsError
from pipeline.shard import make_pairs
from pipeline.shard.pairs import real_counts
from stages import shard as shard_stage

S = 4
HR_SIDE = (320, 384)  # GT crop (h, w): LR 80x96, enough for the 3x3 local check


def _photo(name):
    img = getattr(skimage.data, name)()
    return np.ascontiguousarray(np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img[..., :3])


def _area(img, s=S):
    return cv2.resize(img, (img.shape[1] // s, img.shape[0] // s), interpolation=cv2.INTER_AREA)


def _crop(img, dy=0, dx=0, y=40, x=40):
    h, w = HR_SIDE
    return np.ascontiguousarray(img[y + dy:y + dy + h, x + dx:x + dx + w])


def _write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def _rotated(img, degrees):
    h, w = img.shape[:2]
    return cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1), (w, h))


def make_capture(root):
    """GT/ and LQ/ folders made from real photos: GT = a photo crop, LQ = INTER_AREA / 4 of a crop that
    is where GT is (good), or shifted, rotated, of another photo, at another scale; plus files without
    a partner and a corrupt one. Returns (gt, lq, {stem: HR shift of the LQ crop}) of the good pairs."""
    gt, lq = root / "GT", root / "LQ"
    astro, coffee, rocket, camera, brick = (_photo(n) for n in ("astronaut", "coffee", "rocket", "camera", "brick"))
    good = {"astro": (astro, 0, 0), "coffee": (coffee, 8, 0), "0003": (rocket, 9, -5), "shoot/cam": (camera, -6, 3)}
    lq_names = {"astro": "astro_x4", "coffee": "coffee_LR", "0003": "0003x4", "shoot/cam": "shoot/cam_LR4"}
    gt_names = {"coffee": "coffee_HR", "shoot/cam": "shoot/cam_HR"}
    for stem, (img, dy, dx) in good.items():
        _write(gt / f"{gt_names.get(stem, stem)}.png", _crop(img))
        _write(lq / f"{lq_names[stem]}.png", _area(_crop(img, dy, dx)))
    _write(gt / "far.png", _crop(coffee, x=100))                       # shifted 12 LR px: refused
    _write(lq / "far_x4.png", _area(_crop(coffee, 0, 48, x=100)))
    _write(gt / "tilt.png", _crop(astro))                              # rotated 2 degrees: refused
    _write(lq / "tilt_x4.png", _area(_crop(_rotated(astro, 2))))
    _write(gt / "other.png", _crop(brick))                             # another photo: refused
    _write(lq / "other_x4.png", _area(_crop(rocket)))
    _write(gt / "half.png", _crop(rocket))                             # made at x2: wrong scale
    _write(lq / "half_x4.png", _area(_crop(rocket), 2))
    _write(gt / "lonely.png", _crop(camera))                           # no LQ partner
    _write(lq / "stray_x4.png", _area(_crop(astro)))                   # no GT partner
    _write(gt / "broken.png", _crop(astro))                            # corrupt GT: truncated PNG
    (gt / "broken.png").write_bytes((gt / "broken.png").read_bytes()[:5000])
    _write(lq / "broken_x4.png", _area(_crop(astro)))
    return gt, lq, {stem: (dy, dx) for stem, (_, dy, dx) in good.items()}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("capture")
    gt, lq, good = make_capture(root)
    stats = import_pairs(gt, lq, root / "real", scale=S, workers=1)
    return gt, lq, good, root / "real", stats


def _rejects(out, root):
    df = pd.read_csv(out / "rejects.csv")
    return {Path(p).relative_to(root).as_posix(): r for p, r in zip(df["path"], df["reason"])}


def test_good_pairs_are_imported_pixel_exact_and_aligned(imported):
    gt, lq, good, out, stats = imported
    assert (stats.pairs, stats.scale) == (len(good), S)
    real = ShardSet(out)
    index = real.index.set_index("key")
    assert sorted(index["lr_key"].str.rsplit("-", n=1).str[0]) == sorted(s.replace("/", "_") for s in good)
    for key, row in index.iterrows():
        stem = next(s for s in good if key.startswith(s.replace("/", "_") + "-"))
        hr, lr = decode_png(real.read(key, ["hr.png"])["hr.png"]), decode_png(real.read(key, ["lr.png"])["lr.png"])
        # crops of the files' pixels, nothing resampled
        src_hr = cv2.cvtColor(cv2.imread(str(row["source"])), cv2.COLOR_BGR2RGB)
        src_lr = cv2.cvtColor(cv2.imread(str(row["lr_source"])), cv2.COLOR_BGR2RGB)
        assert np.array_equal(hr, src_hr[row["hr_y"]:row["hr_y"] + row["height"], row["hr_x"]:row["hr_x"] + row["width"]])
        assert np.array_equal(lr, src_lr[row["lr_y"]:row["lr_y"] + row["lr_height"], row["lr_x"]:row["lr_x"] + row["lr_width"]])
        # aligned: the LQ was INTER_AREA of a crop shifted by whole HR px, so the aligned crops match exactly
        assert (row["shift_hr_y"], row["shift_hr_x"]) == good[stem], key
        assert np.array_equal(_area(hr), lr), key
        assert hr.shape[:2] == (lr.shape[0] * S, lr.shape[1] * S)
        assert max(abs(row["residual_y"]), abs(row["residual_x"])) < 0.05 and row["response"] > 0.9
        info = json.loads(real.read(key, ["json"])["json"])
        assert info["key"] == key and info["shift_hr_y"] == good[stem][0]
    assert set(index["split"]) == {"train", "val"}
    assert index["source_sha256"].str.len().eq(64).all() and (index["scale_from"] == "given").all()


def test_bad_pairs_are_refused_with_their_reasons(imported):
    gt, _, _, out, stats = imported
    reasons = _rejects(out, gt.parent)
    assert stats.rejected == len(reasons) == 7
    assert re.match(r"misaligned by \(-?0\.0\d, 1[12]\.\d\d\) LR px \(dy, dx\); at most 8.0 is realigned \(pair of .*far.png\)$",
                    reasons["LQ/far_x4.png"])
    assert reasons["LQ/tilt_x4.png"].startswith("not a pure shift: local shifts differ by up to ")
    assert reasons["LQ/other_x4.png"].startswith("no reliable match (phase-correlation response 0.")
    assert reasons["LQ/half_x4.png"].startswith("wrong scale: HR 384x320 is x2 by x2 of LR 192x160, expected x4")
    assert reasons["GT/lonely.png"].startswith("no LR partner (nothing in ")
    assert reasons["LQ/stray_x4.png"].startswith("no HR partner (nothing in ")
    assert reasons["GT/broken.png"].startswith("corrupt") or reasons["GT/broken.png"].startswith("truncated")
    assert "## Rejected" in (out / "report.md").read_text() and "resampled: nothing" in (out / "report.md").read_text()


def _params(tmp_path, real, **shard):
    root = tmp_path / "sets"
    hr, lr = write_synthetic_sets(root, photos=4, val_photos=1, tiles_per_photo=2, tile=64, scale=S, variants=1)
    params = {"seed": 0, "scale": S,
              "paths": {"hr": str(hr), "lr": str(lr), "pairs": str(tmp_path / "pairs"), "real": str(real.parent)},
              "shard": {"patch_size": 32, "patches_per_pair": 3, "val_patches_per_pair": 2, "min_shards": 2,
                        "workers": 1, "real_pairs": str(real), "real_fraction": 0.25, **shard}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path / "params.yaml"


def test_the_shard_stage_mixes_real_pairs_into_training(imported, tmp_path, capsys):
    *_, real, _ = imported
    shard_stage.main(["--params", str(_params(tmp_path, real))])
    assert "real pairs in" in capsys.readouterr().out
    real_index = ShardSet(real).index
    for split in ("train", "val"):
        pairs = ShardSet(tmp_path / "pairs" / split)
        index = pairs.index
        is_real = index["source"].str.startswith(f"{real}:")
        synthetic = int((~is_real).sum())
        expected = round(synthetic * 0.25 / 0.75) if (real_index["split"] == split).any() else 0
        assert int(is_real.sum()) == expected > 0, split
        assert index.loc[is_real, "blur1_kind"].isna().all() and index.loc[~is_real, "blur1_kind"].notna().all()
        assert set(index.loc[is_real, "source_sha256"]) <= set(real_index.loc[real_index["split"] == split, "source_sha256"])
        for row in np.flatnonzero(is_real.to_numpy())[:6]:
            hr, lr = pairs.image_at(row, "hr.png"), pairs.image_at(row, "lr.png")
            assert hr.shape == (32, 32, 3) and np.array_equal(_area(hr), lr)   # still aligned, pixel exact
            assert json.loads(pairs.read_at(row, "json"))["recipe"] == {}
    report = (tmp_path / "pairs" / "report.md").read_text()
    assert f"real pairs from {real}" in report


def test_real_pairs_must_match_the_scale_and_lie_in_paths_real(imported, tmp_path):
    *_, real, _ = imported
    with pytest.raises(ValueError, match=r"real pairs at scale \[4\], but scale is 2$"):
        make_pairs(*[ShardSet(d).path for d in write_synthetic_sets(tmp_path / "x2", photos=2, val_photos=1,
                                                                     tiles_per_photo=1, tile=32, scale=2, variants=1)],
                   tmp_path / "out", ShardConfig(patch_size=16, workers=1, real_pairs=str(real)), seed=0, scale=2)
    with pytest.raises(ParamsError, match=r"^shard.real_pairs: expected '' or a set inside paths.real \('data/real'\)"):
        parse_params({"shard": {"real_pairs": "captures/canon"}}, sections=("shard",))
    with pytest.raises(ParamsError, match=r"^shard.real_fraction: expected > 0 when shard.real_pairs is set"):
        parse_params({"shard": {"real_pairs": "data/real/canon", "real_fraction": 0}}, sections=("shard",))


@pytest.mark.parametrize("synthetic, fraction, pairs, counts", [
    (30, 0.25, 4, [3, 3, 2, 2]), (30, 0.25, 0, []), (0, 0.5, 2, [0, 0]), (9, 0.5, 2, [5, 4])])
def test_real_counts_make_the_fraction(synthetic, fraction, pairs, counts):
    assert real_counts(synthetic, fraction, pairs) == counts


def test_cli_detects_the_scale_refuses_a_full_out_and_errors_in_one_line(imported, tmp_path, capsys):
    gt, lq, good, *_ = imported
    out = tmp_path / "real"
    assert cli.main(["pairs", str(gt), str(lq), str(out), "--workers", "1"]) == 0   # no --scale: x4 detected
    assert capsys.readouterr().out.startswith(f"pairs: {len(good)} pairs (x4; train ")
    index = ShardSet(out).index
    assert (index["scale"] == 4).all() and (index["scale_from"] == "detected").all()
    reasons = _rejects(out, gt.parent)
    assert reasons["LQ/half_x4.png"] == "scale x2, but most pairs are x4 (pass --scale to choose)"
    assert cli.main(["pairs", str(gt), str(lq), str(out)]) == 1                       # OUT not empty
    assert capsys.readouterr().err == f"realsynth: error: {out}: folder exists and is not empty (4 entries); " \
                                      "pass --force to replace it\n"
    assert cli.main(["pairs", str(gt), str(tmp_path / "nowhere"), str(tmp_path / "o2")]) == 1
    assert capsys.readouterr().err == f"realsynth: error: {tmp_path / 'nowhere'}: no such folder\n"
    assert cli.main(["pairs", str(gt), str(lq), str(tmp_path / "o3"), "--scale", "5"]) == 1
    assert capsys.readouterr().err.startswith("realsynth: error: --scale: expected one of [1, 2, 3, 4, 8], got 5")


def test_names_pair_by_stem_without_role_and_scale_suffixes(tmp_path):
    assert {pair_stem(n) for n in ("0001.png", "0001x4.png", "0001_x4.png")} == {"0001"}
    assert {pair_stem(n) for n in ("a/Canon_001_HR.png", "a/Canon_001_LR4.png", "a/Canon_001_x1.tif")} == {"a/Canon_001"}
    assert pair_stem("box4.png") == "box4" and pair_stem("lr.png") == "lr" and pair_stem("b_GT.jpg") == pair_stem("b_LQ.png")
    for name in ("a.png", "a_LR.png"):
        _write(tmp_path / "LQ" / name, np.zeros((24, 24, 3), np.uint8))
    _write(tmp_path / "GT" / "a.png", np.zeros((96, 96, 3), np.uint8))
    pairs, rejects = match_files(tmp_path / "GT", tmp_path / "LQ")
    assert pairs == [] and [(p.name, r) for p, r in rejects] == [
        ("a.png", "ambiguous: 2 LR files pair as 'a' (a.png, a_LR.png)"),
        ("a_LR.png", "ambiguous: 2 LR files pair as 'a' (a.png, a_LR.png)")]
    assert scale_of((400, 448), (100, 112), None, 8) == 4
    assert scale_of((403, 448), (100, 112), 4, 0.5) == "no integer scale: HR 448x403 is x4 by x4.03 of LR 112x100; " \
                                                        "expected one of [1, 2, 3, 4, 8] (within 0.5 LR px a side)"


def test_scale_one_refuses_a_sub_pixel_residual_above_the_bound():
    img = _crop(_photo("astronaut"))
    moved = cv2.warpAffine(img, np.float32([[1, 0, -0.4], [0, 1, 0]]), img.shape[1::-1], flags=cv2.INTER_LINEAR)
    assert align_pair(img, moved, 1).startswith("misaligned by a residual (")
    assert not isinstance(align_pair(img, moved, 1, Limits(max_residual=0.45)), str)
