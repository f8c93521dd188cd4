"""The evaluate stage: metric conventions, skipped models/metrics, outputs, determinism, the stage module."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.config import EvaluateConfig
from pipeline.evaluate import bicubic, evaluate
from pipeline.evaluate.grids import HEADER, comparison_grid, textured_window
from pipeline.evaluate.pairs import val_pairs
from pipeline.io.images import decode_png, encode_png
from pipeline.io.shards import Sample, write_shard_set
from pipeline.metrics import niqe, psnr, ssim
from pipeline.models import build_generator

SCALE = 4
TINY = dict(num_feat=8, num_block=1, num_grow_ch=4)
# (key, split, y, x, side) of HR tiles cut from baboon; the 100 px tile is too small for NIQE after the crop
TILES = [("a0", "val", 0, 0, 128), ("a1", "val", 0, 200, 128), ("b0", "val", 300, 100, 128),
         ("b1", "val", 352, 364, 128), ("c0", "val", 200, 380, 100), ("t0", "train", 100, 100, 128)]


def make_sets(root, baboon: np.ndarray, tiles=TILES, lr_split: bool = True):
    hr_samples, lr_samples = [], []
    for key, split, y, x, side in tiles:
        hr = np.ascontiguousarray(baboon[y:y + side, x:x + side])
        lr = cv2.resize(hr, (side // SCALE, side // SCALE), interpolation=cv2.INTER_AREA)
        hr_samples.append(Sample(key, {"hr.png": encode_png(hr)}, dict(split=split, height=side, width=side)))
        cols = dict(hr_key=key, variant=0, **(dict(split=split) if lr_split else {}))
        lr_samples.append(Sample(f"{key}v0", {"lr.png": encode_png(lr)}, cols))
    write_shard_set(root / "hr", hr_samples, set_name="hr")
    write_shard_set(root / "lr", lr_samples, set_name="lr")
    return root / "hr", root / "lr"


def tiny_checkpoint(path, name="rrdbnet", scale=SCALE, opts=None, seed=0):
    torch.manual_seed(seed)
    opts = opts or (TINY if name == "rrdbnet" else dict(num_feat=8, num_conv=1))
    net = build_generator(name, scale=scale, **opts)
    if name == "rrdbnet":  # a random RRDBNet's output is flat black; give it some spread (NIQE needs it)
        with torch.no_grad():
            net.conv_last.bias.fill_(0.5)
            net.conv_last.weight.mul_(8)
    sd = net.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": sd, "params": sd, "meta": {"name": name, "opts": opts, "scale": scale}}, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory, fixtures):
    root = tmp_path_factory.mktemp("evaluate")
    baboon = cv2.imread(str(fixtures / "pairs" / "gt" / "baboon.png"))[..., ::-1].copy()
    hr_dir, lr_dir = make_sets(root, baboon)
    net = tiny_checkpoint(root / "models" / "net" / "generator.pth")
    (root / "no_lpips").mkdir()
    cfg = EvaluateConfig(niqe_params=str(fixtures / "niqe" / "niqe_pris_params.npz"),
                         lpips_weights=str(root / "no_lpips"), grid_crop=48, grid_images=3, device="cpu")
    return dict(root=root, hr=hr_dir, lr=lr_dir, net=net, gan=root / "models" / "gan" / "generator.pth",
                cfg=cfg, baboon=baboon)


@pytest.fixture(scope="module")
def first_run(data):
    out = data["root"] / "eval1"
    metrics = evaluate(data["hr"], data["lr"], {"net": data["net"], "gan": data["gan"]}, out, data["cfg"],
                       scale=SCALE, seed=0)
    return out, metrics


def val_images(data):
    for key, split, y, x, side in TILES:
        if split == "val":
            hr = data["baboon"][y:y + side, x:x + side]
            yield f"{key}v0", cv2.resize(hr, (side // SCALE,) * 2, interpolation=cv2.INTER_AREA), hr


def test_metrics_json_structure(first_run):
    out, metrics = first_run
    text = (out / "metrics.json").read_text()
    assert json.loads(text) == metrics
    assert text == json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    assert set(metrics) == {"bicubic", "net"}  # gan: no checkpoint yet
    for entry in metrics.values():
        # no LPIPS weights → no lpips key; no real-world folder → no realworld_niqe
        assert set(entry) == {"psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y", "niqe"}
        assert all(round(v, 4) == v for v in entry.values())


def test_bicubic_metrics_follow_basicsr_conventions(data, first_run):
    """Default crop_border = scale; Y = BT.601; the NIQE mean skips the tile too small for NIQE."""
    _, metrics = first_run
    up = bicubic(SCALE)
    values = {k: [] for k in ("psnr_rgb", "psnr_y", "ssim_y", "niqe")}
    for _, lr, hr in val_images(data):
        sr = up(lr)
        assert np.array_equal(sr, cv2.resize(lr, hr.shape[1::-1], interpolation=cv2.INTER_CUBIC))
        values["psnr_rgb"].append(psnr(sr, hr, crop_border=SCALE))
        values["psnr_y"].append(psnr(sr, hr, crop_border=SCALE, y_channel=True))
        values["ssim_y"].append(ssim(sr, hr, crop_border=SCALE, y_channel=True))
        if hr.shape[0] - 2 * SCALE >= 96:
            values["niqe"].append(niqe(sr, crop_border=SCALE, params=data["cfg"].niqe_params))
    assert len(values["niqe"]) == 4
    for name, vals in values.items():
        assert metrics["bicubic"][name] == round(float(np.mean(vals)), 4), name


def test_report_names_what_was_skipped(data, first_run):
    out, _ = first_run
    report = (out / "report.md").read_text()
    assert f"{data['gan']} not found" in report
    assert "metric `lpips`" in report and "alexnet" in report
    assert "`niqe` of bicubic: undefined on 1 image(s) (c0v0)" in report  # 100 px tile: NaN there, not a crash
    assert "| Bicubic |" in report and "| Real-ESRNet |" in report
    assert "![val grid](grids/val.png)" in report
    assert "INTER_CUBIC" in report


def test_per_image_table_and_plot_data(first_run):
    out, metrics = first_run
    per_image = pd.read_parquet(out / "per_image.parquet")
    assert list(per_image.columns) == ["set", "key", "model", "psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y",
                                       "niqe", "lpips"]
    assert len(per_image) == 2 * 5 and set(per_image["model"]) == {"bicubic", "net"}
    assert per_image["lpips"].isna().all()
    assert per_image.loc[per_image["key"] == "c0v0", "niqe"].isna().all()
    wide = pd.read_csv(out / "plots" / "per_image_psnr.csv")
    assert list(wide.columns) == ["n", "key", "bicubic", "net", "gan"] and len(wide) == 5
    assert wide["gan"].isna().all()  # requested but not trained yet: the column is there, empty
    assert wide["bicubic"].mean() == pytest.approx(metrics["bicubic"]["psnr_y"], abs=1e-3)
    by_model = pd.read_csv(out / "plots" / "by_model.csv")
    assert list(by_model.columns) == ["model", "psnr_y", "ssim_y", "niqe"]
    assert list(by_model["model"]) == ["bicubic", "net"]


def test_grid_layout(first_run):
    out, _ = first_run
    grid = decode_png((out / "grids" / "val.png").read_bytes())
    cell = 48 * 6  # 48 px crops, enlarged by round(288 / 48)
    assert grid.shape == (HEADER + 3 * (cell + 4) + 4, 4 * (cell + 4) + 4, 3)  # LR | bicubic | net | HR
    assert grid[:HEADER].min() < 128  # the header row carries text


def test_same_inputs_same_bytes(data, first_run):
    out1, _ = first_run
    out2 = data["root"] / "eval2"
    evaluate(data["hr"], data["lr"], {"net": data["net"], "gan": data["gan"]}, out2, data["cfg"], scale=SCALE, seed=0)
    files = sorted(p.relative_to(out1) for p in out1.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out2) for p in out2.rglob("*") if p.is_file())
    for rel in files:
        assert (out1 / rel).read_bytes() == (out2 / rel).read_bytes(), rel


def test_crop_border_setting_is_used(data, tmp_path):
    cfg = EvaluateConfig(crop_border=0, niqe_params="", lpips_weights=str(tmp_path), device="cpu")
    metrics = evaluate(data["hr"], data["lr"], {}, tmp_path / "eval", cfg, scale=SCALE, seed=0)
    expected = np.mean([psnr(bicubic(SCALE)(lr), hr, crop_border=0, y_channel=True) for _, lr, hr in val_images(data)])
    assert metrics["bicubic"]["psnr_y"] == round(float(expected), 4)


def test_missing_niqe_model_and_subset(data, tmp_path):
    missing = tmp_path / "nowhere" / "niqe_pris_params.npz"
    cfg = EvaluateConfig(max_images=2, niqe_params=str(missing), lpips_weights=str(tmp_path), device="cpu",
                         grid_images=1)
    metrics = evaluate(data["hr"], data["lr"], {"net": data["net"]}, tmp_path / "eval", cfg, scale=SCALE, seed=3)
    assert all("niqe" not in m for m in metrics.values())
    assert str(missing) in (tmp_path / "eval" / "report.md").read_text()
    per_image = pd.read_parquet(tmp_path / "eval" / "per_image.parquet")
    assert len(per_image) == 2 * 2
    chosen = list(val_pairs(data["hr"], data["lr"], max_images=2, seed=3)["key"])
    assert sorted(per_image["key"].unique()) == chosen


def test_wrong_scale_model_fails(data, tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "x2.pth", name="srvgg", scale=2)
    with pytest.raises(ValueError, match=r"x2\.pth: a srvgg x2 checkpoint, expected scale 4"):
        evaluate(data["hr"], data["lr"], {"net": ckpt}, tmp_path / "eval", data["cfg"], scale=SCALE, seed=0)
    with pytest.raises(ValueError, match="'bicubic' is reserved"):
        evaluate(data["hr"], data["lr"], {"bicubic": ckpt}, tmp_path / "eval", data["cfg"], scale=SCALE, seed=0)


def test_realworld_photos_and_three_models(data, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "p1.png"), data["baboon"][:40, :40, ::-1])
    cv2.imwrite(str(photos / "p2.jpg"), data["baboon"][200:236, 300:344, ::-1])
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    gan = tiny_checkpoint(tmp_path / "gan.pth", name="srvgg")
    cfg = EvaluateConfig(niqe_params=data["cfg"].niqe_params, lpips_weights=str(tmp_path), realworld_dir=str(photos),
                         max_images=1, grid_images=2, device="cpu")
    metrics = evaluate(data["hr"], data["lr"], {"net": data["net"], "gan": gan}, tmp_path / "eval", cfg,
                       scale=SCALE, seed=0)
    assert set(metrics) == {"bicubic", "net", "gan"}
    assert all("realworld_niqe" in m for m in metrics.values())
    per_image = pd.read_parquet(tmp_path / "eval" / "per_image.parquet")
    real = per_image[per_image["set"] == "realworld"]
    assert sorted(real["key"].unique()) == ["p1.png", "p2.jpg"] and real["psnr_y"].isna().all()
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "broken.jpg" in report and "| Real-ESRGAN |" in report
    assert (tmp_path / "eval" / "grids" / "realworld.png").is_file()
    with pytest.raises(FileNotFoundError, match="evaluate.realworld_dir"):
        evaluate(data["hr"], data["lr"], {}, tmp_path / "eval2",
                 EvaluateConfig(realworld_dir=str(tmp_path / "none"), niqe_params="", device="cpu"),
                 scale=SCALE, seed=0)


def test_val_pairs_errors(data, tmp_path):
    baboon = data["baboon"]
    hr_dir, lr_dir = make_sets(tmp_path / "nosplit", baboon, tiles=[("a", "train", 0, 0, 64)])
    with pytest.raises(ValueError, match=r"index\.parquet: no rows with split == 'val'"):
        val_pairs(hr_dir, lr_dir)
    # without a split column in the LR index, the HR tile's split is used
    hr_dir, lr_dir = make_sets(tmp_path / "hrsplit", baboon, tiles=[("a", "val", 0, 0, 64)], lr_split=False)
    assert list(val_pairs(hr_dir, lr_dir)["key"]) == ["av0"]
    # an HR tile smaller than x4 its LR tile
    root = tmp_path / "small"
    write_shard_set(root / "hr", [Sample("a", {"hr.png": encode_png(baboon[:60, :60])}, dict(split="val"))],
                    set_name="hr")
    write_shard_set(root / "lr", [Sample("av0", {"lr.png": encode_png(baboon[:16, :16])},
                                         dict(hr_key="a", split="val"))], set_name="lr")
    with pytest.raises(ValueError, match="smaller than x4"):
        evaluate(root / "hr", root / "lr", {}, tmp_path / "eval", EvaluateConfig(niqe_params="", device="cpu"),
                 scale=SCALE, seed=0)


def test_textured_window_finds_texture():
    img = np.full((96, 128), 120, np.uint8)
    img[40:72, 60:92] = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    assert textured_window(img, 32, step=4) == (40, 60)
    with pytest.raises(ValueError, match="does not fit"):
        textured_window(img, 100)
    grid = comparison_grid([[np.zeros((10, 10, 3), np.uint8)] * 2, [np.zeros((8, 10, 3), np.uint8)]], ["a", "b"])
    assert grid.shape == (HEADER + 2 * 14 + 4, 2 * 14 + 4, 3)


def test_stage_main_and_summary(data, tmp_path, capsys):
    from stages.evaluate import main

    models = tmp_path / "models"
    (models / "net").mkdir(parents=True)
    (models / "net" / "generator.pth").write_bytes(data["net"].read_bytes())
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "seed": 0, "scale": SCALE,
        "paths": {"hr": str(data["hr"]), "lr": str(data["lr"]), "models": str(models), "eval": str(tmp_path / "eval")},
        "evaluate": {"niqe_params": data["cfg"].niqe_params, "lpips_weights": str(tmp_path), "device": "cpu",
                     "max_images": 2, "grid_images": 1},
    }))
    with pytest.raises(FileNotFoundError, match="run the evaluate stage first"):
        main(["--params", str(params), "--summary"])
    try:
        main(["--params", str(params)])
    finally:
        torch.use_deterministic_algorithms(False)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics) == {"bicubic", "net"}
    capsys.readouterr()
    main(["--params", str(params), "--summary"])
    printed = capsys.readouterr().out
    assert "| Bicubic |" in printed and "| Real-ESRNet |" in printed and "grids/val.png" in printed
    assert f"{metrics['net']['psnr_y']:.4f}" in printed
    assert not math.isnan(metrics["bicubic"]["niqe"])


def test_identical_tile_is_left_out_of_the_psnr_mean(data, tmp_path):
    root = tmp_path / "flat"
    flat = np.full((64, 64, 3), 90, np.uint8)
    textured = np.ascontiguousarray(data["baboon"][:64, :64])
    hr = [Sample("f", {"hr.png": encode_png(flat)}, dict(split="val")),
          Sample("t", {"hr.png": encode_png(textured)}, dict(split="val"))]
    lr = [Sample(f"{s.key}v0", {"lr.png": encode_png(cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA))},
                 dict(hr_key=s.key, split="val")) for s, img in zip(hr, (flat, textured))]
    write_shard_set(root / "hr", hr, set_name="hr")
    write_shard_set(root / "lr", lr, set_name="lr")
    cfg = EvaluateConfig(niqe_params=str(tmp_path / "none.npz"), lpips_weights=str(tmp_path), device="cpu")
    metrics = evaluate(root / "hr", root / "lr", {}, tmp_path / "eval", cfg, scale=SCALE, seed=0)
    up = bicubic(SCALE)(cv2.resize(textured, (16, 16), interpolation=cv2.INTER_AREA))
    assert metrics["bicubic"]["psnr_y"] == round(psnr(up, textured, crop_border=SCALE, y_channel=True), 4)
    assert "`psnr_y` of bicubic: undefined on 1 image(s) (fv0)" in (tmp_path / "eval" / "report.md").read_text()


def test_weights_setting_picks_params_or_params_ema(data, tmp_path):
    ckpt = tmp_path / "g.pth"
    ema = torch.load(tiny_checkpoint(tmp_path / "a.pth", seed=1), weights_only=True)["params"]
    raw = torch.load(tiny_checkpoint(tmp_path / "b.pth", seed=2), weights_only=True)["params"]
    torch.save({"params_ema": ema, "params": raw, "meta": {"name": "rrdbnet", "opts": TINY, "scale": SCALE}}, ckpt)
    scores = {}
    for weights, twin in (("params_ema", tmp_path / "a.pth"), ("params", tmp_path / "b.pth")):
        cfg = EvaluateConfig(niqe_params="", lpips_weights=str(tmp_path), device="cpu", weights=weights)
        got = evaluate(data["hr"], data["lr"], {"net": ckpt}, tmp_path / f"eval-{weights}", cfg, scale=SCALE, seed=0)
        want = evaluate(data["hr"], data["lr"], {"net": twin}, tmp_path / f"twin-{weights}", cfg, scale=SCALE, seed=0)
        assert got["net"] == want["net"]
        scores[weights] = got["net"]["psnr_y"]
    assert scores["params_ema"] != scores["params"]
