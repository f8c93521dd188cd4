"""The `video`, `camera` and `web` presets: the domain ops as preset steps, through the CLI and the
stage, replayed sample by sample, the same bytes however the work is split, LR degraded but not
destroyed."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import cli
from pipeline.degrade.run import replay_sample
from pipeline.io.images import decode_png, encode_png
from pipeline.io.shards import Sample, ShardSet, json_bytes, write_shard_set

DOMAIN_PRESETS = ("video", "camera", "web")
# the user-op columns each preset's index gets: (drawn from names, drawn as numbers)
USER_COLUMNS = {"video": (["codec_codec"], ["codec_strength", "codec_frames", "codec_motion"]),
                "camera": (["isp_demosaic"], ["isp_shot", "isp_jpeg_quality"]),
                "web": ([], ["web_generations", "web_min_quality"])}
SIDES = (128, 144, 160, 192)  # HR crops: LR 32-48 px at x4


def _crops() -> list[np.ndarray]:
    import skimage.data
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    return [np.ascontiguousarray(p[40:40 + s, 60:60 + s, :3]) for p, s in zip(photos, SIDES)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i, crop in enumerate(_crops()):
        (folder / f"p{i}.png").write_bytes(encode_png(crop))
    return folder


@pytest.fixture(scope="module")
def hr_set(tmp_path_factory) -> Path:
    samples = []
    for i, crop in enumerate(_crops()):
        cols = {"height": crop.shape[0], "width": crop.shape[1], "split": "train"}
        samples.append(Sample(f"h{i}", {"hr.png": encode_png(crop), "json": json_bytes(cols)}, cols))
    path = tmp_path_factory.mktemp("hr") / "hr"
    write_shard_set(path, samples, set_name="hr", shard_bytes=1 << 20)
    return path


def _degrade(inp: Path, out: Path, preset: str, batch: int, workers: int) -> None:
    assert cli.main(["degrade", str(inp), str(out), "--preset", preset, "--backend", "reference", "--seed", "3",
                     "--batch-size", str(batch), "--workers", str(workers)]) == 0


def _set_bytes(set_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(set_dir.iterdir()) if p.suffix in (".tar", ".parquet", ".csv")}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.mark.parametrize("preset", DOMAIN_PRESETS)
def test_folder_degrades_replays_and_keeps_its_bytes_however_split(photos, tmp_path, capsys, preset):
    a, b = tmp_path / "a", tmp_path / "b"
    _degrade(photos, a, preset, batch=1, workers=1)
    _degrade(photos, b, preset, batch=3, workers=2)
    assert _set_bytes(a) == _set_bytes(b)
    index = ShardSet(a).index
    assert len(index) == len(SIDES) and sorted(index["height"]) == [s // 4 for s in SIDES]
    assert index[sum(USER_COLUMNS[preset], [])].notna().all().all()
    scores = []
    for key in index["key"]:
        assert cli.main(["replay", str(a), key, str(tmp_path / f"{key}.png")]) == 0
        assert "identical to the stored sample" in capsys.readouterr().out
        sample = ShardSet(a).read(key)
        hr, lr = decode_png(sample["hr.png"]), decode_png(sample["lr.png"])
        scores.append(psnr(lr, cv2.resize(hr, (lr.shape[1], lr.shape[0]), interpolation=cv2.INTER_AREA)))
    assert 15.0 < np.mean(scores) < 35.0, scores  # degraded, not destroyed


@pytest.mark.parametrize("preset", DOMAIN_PRESETS)
def test_stage_degrades_a_shard_set(hr_set, tmp_path, capsys, preset):
    from stages.degrade import main

    lr = tmp_path / "data" / "lr"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"seed": 5, "scale": 4, "paths": {"hr": str(hr_set), "lr": str(lr)},
                                      "degrade": {"preset": preset, "backend": "reference", "workers": 1,
                                                  "examples": 1}}))
    main(["--params", str(params)])
    assert capsys.readouterr().out.startswith(f"degrade: {len(SIDES)} LR samples ({preset}, reference)")
    index = ShardSet(lr).index
    key = index["key"].iloc[-1]
    out, same = replay_sample(lr, key)
    assert same and out.shape[0] == SIDES[-1] // 4


@pytest.mark.parametrize("preset", DOMAIN_PRESETS)
def test_recipes_histograms_show_the_domain_op_params(tmp_path, preset):
    from pipeline.degrade.panels import summarize

    assert cli.main(["recipes", str(tmp_path / "r"), "--preset", preset, "--n", "20"]) == 0
    table = pd.read_parquet(tmp_path / "r" / "recipes.parquet")
    panels = {p.title.split(" ")[0]: p for p in summarize(lambda: [table]).panels}
    names, numbers = USER_COLUMNS[preset]
    for col in names:  # a bar chart of the names drawn
        assert set(panels[col].labels.index) == set(table[col]) and panels[col].xlabel == ""
    for col in numbers:  # a histogram of every value, its axis labelled with the unit
        assert panels[col].total == len(table) and panels[col].xlabel != "", col
