"""`realsynth benchmark` (a fixed, seeded pair set) and `realsynth score` (bicubic + any checkpoints on it)."""
from __future__ import annotations

import json
import shutil
import socket

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.cli import main
from pipeline.degrade.benchmark import MANIFEST, make_benchmark
from pipeline.evaluate.checkpoints import load_any_generator
from pipeline.evaluate.score import score_set
from pipeline.io.images import decode_png, encode_png
from pipeline.io.shards import Sample, ShardSet, write_shard_set
from pipeline.models import build_generator

SCALE = 4
# (y, x, h, w) crops of baboon: LR 16x24, 24x16 and 28x28 (the last one big enough for NIQE after the crop)
CROPS = [(0, 0, 64, 96), (200, 100, 96, 64), (300, 300, 112, 112)]
# spandrel's ESRGAN detection assumes growth 32 (it cannot infer it), so the cross-check keeps it
RRDB = dict(num_feat=8, num_block=1, num_grow_ch=32)
SWINIR = dict(img_size=16, in_chans=3, embed_dim=12, depths=[2], num_heads=[2], window_size=4, mlp_ratio=2.0,
              upscale=SCALE, img_range=1.0, upsampler="pixelshuffle", resi_connection="1conv")


@pytest.fixture(scope="module")
def baboon(fixtures):
    return cv2.imread(str(fixtures / "pairs" / "gt" / "baboon.png"))[..., ::-1].copy()


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory, baboon):
    folder = tmp_path_factory.mktemp("bench") / "hr"
    (folder / "sub").mkdir(parents=True)
    for i, (y, x, h, w) in enumerate(CROPS):
        path = folder / ("sub" if i == 2 else ".") / f"img{i}.png"
        cv2.imwrite(str(path), baboon[y:y + h, x:x + w, ::-1])
    return folder


@pytest.fixture(scope="module")
def bench(hr_folder):
    out = hr_folder.parent / "set1"
    make_benchmark(hr_folder, out, seed=3, workers=1, version="test", progress=False)
    return out


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_benchmark_same_bytes_wherever_the_input_lies(bench, hr_folder, tmp_path):
    moved = tmp_path / "elsewhere" / "photos"
    shutil.copytree(hr_folder, moved)
    make_benchmark(moved, tmp_path / "set2", seed=3, workers=2, version="test", progress=False)
    first, second = files(bench), files(tmp_path / "set2")
    assert sorted(first) == sorted(second) and {"benchmark.json", "index.parquet", "lr-000000.tar"} <= set(first)
    assert all(first[name] == second[name] for name in first)
    make_benchmark(hr_folder, tmp_path / "set3", seed=4, workers=1, version="test", progress=False)
    assert files(tmp_path / "set3")["lr-000000.tar"] != first["lr-000000.tar"]


def test_benchmark_members_and_identity(bench, hr_folder):
    index = ShardSet(bench).index
    assert list(index["key"]) == ["img0_v0", "img1_v0", "sub_img2_v0"]
    assert {"size_hr_png", "size_lr_png", "size_json", "source", "source_sha256", "scale"} <= set(index.columns)
    assert list(index["source"]) == ["img0.png", "img1.png", "sub/img2.png"]
    import hashlib
    assert index["source_sha256"].iloc[2] == hashlib.sha256((hr_folder / "sub" / "img2.png").read_bytes()).hexdigest()
    members = ShardSet(bench).read("img1_v0")
    hr, lr = decode_png(members["hr.png"]), decode_png(members["lr.png"])
    assert hr.shape == (96, 64, 3) and lr.shape == (24, 16, 3)
    meta = json.loads(members["json"])
    assert meta["hr_set"] is None and meta["backend"] == "reference" and meta["seed"] == 3
    manifest = json.loads((bench / MANIFEST).read_text())
    assert manifest["format"] == "realsynth-benchmark" and manifest["realsynth"] == "test"
    assert (manifest["preset"], manifest["seed"], manifest["scale"], manifest["samples"]) == \
        ("realesrgan-x4plus", 3, 4, 3)
    assert manifest["settings"]["steps"][0]["name"] == "usm" and manifest["settings"]["steps"][0]["size"] == 51
    assert manifest["shards"]["lr-000000.tar"] == hashlib.sha256((bench / "lr-000000.tar").read_bytes()).hexdigest()


def test_benchmark_from_an_hr_shard_set_keeps_hr_and_split(baboon, tmp_path):
    samples = [Sample(f"t{i}", {"hr.png": encode_png(np.ascontiguousarray(baboon[y:y + h, x:x + w]))},
                      dict(split="val" if i else "train", source=f"photo{i}.jpg", source_sha256=f"{i:064x}"))
               for i, (y, x, h, w) in enumerate(CROPS)]
    write_shard_set(tmp_path / "hr", samples, set_name="hr")
    make_benchmark(tmp_path / "hr", tmp_path / "b", split="val", workers=1, version="test", progress=False)
    shutil.copytree(tmp_path / "hr", tmp_path / "moved")
    make_benchmark(tmp_path / "moved", tmp_path / "b2", split="val", workers=1, version="test", progress=False)
    assert files(tmp_path / "b") == files(tmp_path / "b2")
    index = ShardSet(tmp_path / "b").index
    assert list(index["key"]) == ["t1_v0", "t2_v0"] and set(index["split"]) == {"val"}
    assert list(index["source"]) == ["photo1.jpg", "photo2.jpg"] and index["source_sha256"].iloc[0] == f"{1:064x}"
    members = ShardSet(tmp_path / "b").read("t2_v0")
    assert np.array_equal(decode_png(members["hr.png"]), baboon[300:412, 300:412])
    assert json.loads(members["json"])["hr_set"] is None
    with pytest.raises(ValueError, match="split must be one of"):
        make_benchmark(tmp_path / "hr", tmp_path / "c", split="test")


def rrdb_checkpoint(path):
    torch.manual_seed(0)
    net = build_generator("rrdbnet", scale=SCALE, **RRDB)
    with torch.no_grad():  # a random RRDBNet's output is flat black; give it some spread
        net.conv_last.bias.fill_(0.5)
        net.conv_last.weight.mul_(8)
    torch.save({"params_ema": net.state_dict()}, path)  # BasicSR keys, no realsynth `meta`
    return path


def swinir_checkpoint(path):
    from spandrel.architectures.SwinIR import SwinIR
    torch.manual_seed(1)
    torch.save({"params": SwinIR(**SWINIR).state_dict()}, path)  # as the SwinIR authors publish theirs
    return path


def psnr_y_basicsr(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    """BasicSR's calculate_psnr(test_y_channel=True): Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255."""
    def y(img):
        return img.astype(np.float32) / 255.0 @ np.array([65.481, 128.553, 24.966], np.float32) + 16.0
    a, b = y(sr)[crop:-crop, crop:-crop].astype(np.float64), y(hr)[crop:-crop, crop:-crop].astype(np.float64)
    return float(10.0 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2)))


def direct_psnr_y(net, bench) -> float:
    """The net run by hand (float32, whole LR image) on every pair of the set, mean PSNR-Y."""
    shards, values = ShardSet(bench), []
    for key in sorted(shards.index["key"]):
        members = shards.read(key)
        lr, hr = decode_png(members["lr.png"]), decode_png(members["hr.png"])
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            sr = (net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        values.append(psnr_y_basicsr(sr, hr, SCALE))
    return float(np.mean(values))


def test_score_equals_running_the_models_directly(bench, tmp_path, fixtures, monkeypatch):
    from spandrel import ModelLoader
    from spandrel.architectures.SwinIR import SwinIR

    rrdb, swin = rrdb_checkpoint(tmp_path / "RRDB_tiny.pth"), swinir_checkpoint(tmp_path / "SwinIR_tiny.pth")

    def no_network(*args, **kwargs):
        raise AssertionError("score tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    scores, notes = score_set(bench, [rrdb, swin], device="cpu", lpips_weights=tmp_path,
                              niqe_params=fixtures / "niqe" / "niqe_pris_params.npz")
    monkeypatch.undo()
    assert list(scores) == ["bicubic", "RRDB_tiny", "SwinIR_tiny"]
    assert all(set(s) == {"psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y", "niqe"} for s in scores.values())
    assert any("RRDB_tiny`: `" in n and "rrdbnet x4 (realsynth" in n for n in notes)
    assert any("SwinIR_tiny`: `" in n and "SwinIR x4 (spandrel" in n for n in notes)
    assert any("metric `lpips`" in n for n in notes)

    ours = build_generator("rrdbnet", scale=SCALE, **RRDB).eval()
    ours.load_state_dict(torch.load(rrdb, weights_only=True)["params_ema"])
    theirs = ModelLoader().load_from_file(rrdb)   # spandrel's own RRDBNet port reads the BasicSR keys too
    swinir = SwinIR(**SWINIR).eval()
    swinir.load_state_dict(torch.load(swin, weights_only=True)["params"])
    expected_rrdb = direct_psnr_y(ours, bench)
    assert direct_psnr_y(theirs, bench) == pytest.approx(expected_rrdb, abs=0.01)
    assert scores["RRDB_tiny"]["psnr_y"] == pytest.approx(expected_rrdb, abs=0.01)
    assert scores["SwinIR_tiny"]["psnr_y"] == pytest.approx(direct_psnr_y(swinir, bench), abs=0.01)
    assert abs(scores["SwinIR_tiny"]["psnr_y"] - scores["RRDB_tiny"]["psnr_y"]) > 0.1  # two different models


def test_score_cli_writes_scores_json_and_refuses_to_overwrite(bench, tmp_path, capsys):
    swin = swinir_checkpoint(tmp_path / "swin.pth")
    out = tmp_path / "scores.json"
    args = ["score", str(bench), "--checkpoint", str(swin), "--out", str(out), "--device", "cpu",
            "--niqe-params", str(tmp_path / "none.npz"), "--lpips-weights", str(tmp_path)]
    assert main(args) == 0
    scores = json.loads(out.read_text())
    assert set(scores) == {"bicubic", "swin"} and set(scores["swin"]) == {"psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y"}
    printed = capsys.readouterr().out
    assert "score: metric `niqe`:" in printed and "| bicubic |" in printed
    assert main(args) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    (tmp_path / "other").mkdir()
    shutil.copy(swin, tmp_path / "other" / "swin.pth")
    assert main(args + ["--force", "--checkpoint", str(tmp_path / "other" / "swin.pth")]) == 1
    assert "same file stem 'swin'" in capsys.readouterr().err


def test_score_refuses_unknown_and_wrong_scale_checkpoints(bench, tmp_path):
    junk = tmp_path / "junk.pth"
    torch.save({"params": {"foo.weight": torch.zeros(3, 3)}}, junk)
    with pytest.raises(ValueError, match=r"junk\.pth: not a generator realsynth knows \(.*\) nor one spandrel detects"):
        load_any_generator(junk)
    x2 = tmp_path / "x2.pth"
    torch.save({"params_ema": build_generator("srvgg", scale=2, num_feat=8, num_conv=1).state_dict()}, x2)
    with pytest.raises(ValueError, match=r"x2\.pth: a srvgg x2 checkpoint, expected scale 4"):
        score_set(bench, [x2], device="cpu")
    with pytest.raises(FileNotFoundError, match=r"--checkpoint\[0\]: .*missing\.pth not found"):
        score_set(bench, [tmp_path / "missing.pth"])
    bicubic = tmp_path / "bicubic.pth"
    shutil.copy(x2, bicubic)
    with pytest.raises(ValueError, match="named 'bicubic', which is taken by the baseline"):
        score_set(bench, [bicubic])


def test_benchmark_cli_refuses_a_non_empty_out(hr_folder, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    assert main(["benchmark", str(hr_folder), str(tmp_path / "out")]) == 1
    assert "folder exists and is not empty" in capsys.readouterr().err
    assert main(["benchmark", str(hr_folder), str(tmp_path / "b"), "--preset", "nope"]) == 1
    assert "preset" in capsys.readouterr().err


def test_evaluate_stage_scores_extra_checkpoints(baboon, tmp_path):
    from stages.evaluate import main as evaluate_main

    hr, lr = [], []
    for i, (y, x, h, w) in enumerate(CROPS):
        tile = np.ascontiguousarray(baboon[y:y + h, x:x + w])
        hr.append(Sample(f"k{i}", {"hr.png": encode_png(tile)}, dict(split="val")))
        small = cv2.resize(tile, (w // SCALE, h // SCALE), interpolation=cv2.INTER_AREA)
        lr.append(Sample(f"k{i}v0", {"lr.png": encode_png(small)}, dict(hr_key=f"k{i}", split="val")))
    write_shard_set(tmp_path / "hr", hr, set_name="hr")
    write_shard_set(tmp_path / "lr", lr, set_name="lr")
    swin = swinir_checkpoint(tmp_path / "SwinIR_tiny.pth")
    params = {"seed": 0, "scale": SCALE,
              "paths": {"hr": str(tmp_path / "hr"), "lr": str(tmp_path / "lr"), "models": str(tmp_path / "models"),
                        "eval": str(tmp_path / "eval")},
              "evaluate": {"niqe_params": "", "lpips_weights": str(tmp_path), "device": "cpu", "grid_images": 1,
                           "grid_crop": 32, "extra_checkpoints": [str(swin)]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        evaluate_main(["--params", str(tmp_path / "params.yaml")])
    finally:
        torch.use_deterministic_algorithms(False)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics) == {"bicubic", "SwinIR_tiny"}  # net/gan not trained: skipped, as before
    per_image = pd.read_parquet(tmp_path / "eval" / "per_image.parquet")
    assert set(per_image["model"]) == {"bicubic", "SwinIR_tiny"}
    assert "SwinIR x4 (spandrel" in (tmp_path / "eval" / "report.md").read_text()
    params["evaluate"]["extra_checkpoints"] = [str(shutil.copy(swin, tmp_path / "net.pth"))]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ValueError, match=r"evaluate\.extra_checkpoints\[0\]: .*net\.pth would be named 'net'"):
        evaluate_main(["--params", str(tmp_path / "params.yaml")])
