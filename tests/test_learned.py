"""The learned degrader (#18 §3): the residual CycleGAN generator, training by both methods (losses,
seeds, resume), the `learned` preset step (recipe columns, replay, noise, workers/batch sizes, old
checkpoints) and the CLI."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline import cli
from pipeline.degrade.preset import dump_preset, parse_preset
from pipeline.degrade.run import replay_sample
from pipeline.io.images import encode_png
from pipeline.learned.op import degrade_lr, learned_preset, load_degrader
from pipeline.learned.data import random_crops
from pipeline.learned.select import EDGES, Selector, band_edge, best_point, holdout_bands, split_band
from pipeline.learned.train import DEGRADER, TRAIN_STATE, LearnConfig, learn_degradation, save_degrader
from pipeline.models.cyclegan import CycleGANGenerator

TINY = dict(scale=2, crop=16, batch_size=2, num_feat=8, num_block=1, d_feat=8, d_layers=2, pool_size=3)


def _photos(folder: Path, n: int, size: tuple[int, int], seed: int, smooth: bool) -> Path:
    """`n` PNGs: smooth gradients with shapes (HR-like) or noisy blocks (a stand-in real LR)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[0], 0:size[1]] / max(size)
    for i in range(n):
        base = np.stack([np.sin(6 * xx + i), np.cos(5 * yy - i), np.sin(4 * (xx + yy))], -1) * 0.4 + 0.5
        if not smooth:
            base = base + rng.normal(0, 0.08, base.shape)
        (folder / f"p{i}.png").write_bytes(encode_png(np.clip(base * 255, 0, 255).astype(np.uint8)))
    return folder


@pytest.fixture(scope="module")
def domains(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("domains")
    return _photos(root / "real", 3, (40, 48), 0, smooth=False), _photos(root / "hr", 3, (72, 80), 1, smooth=True)


def _params(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["nets"]


# ---- the generator ------------------------------------------------------------------------------

@pytest.mark.parametrize("num_down", [0, 1, 2])
def test_generator_starts_as_the_identity_at_any_size(num_down):
    torch.manual_seed(0)
    net = CycleGANGenerator(num_feat=8, num_block=2, num_down=num_down)
    x = torch.rand(2, 3, 13, 22)
    assert torch.equal(net(x), x)
    assert net.residual_of(x).abs().max() == 0
    plain = CycleGANGenerator(num_feat=8, num_block=1, num_down=num_down, residual=False)
    y = plain(x)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1 and not torch.equal(y, x)


def test_generator_options_are_checked():
    with pytest.raises(ValueError, match="cyclegan num_feat must be an int >= 1, got 0"):
        CycleGANGenerator(num_feat=0)
    with pytest.raises(ValueError, match="cyclegan norm must be one of"):
        CycleGANGenerator(norm="group")


# ---- training -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method,losses", [("dsgan", 4), ("cyclegan", 5)])
def test_training_is_seeded_its_losses_finite_and_moving(domains, tmp_path, method, losses):
    real, hr = domains
    a = learn_degradation(real, hr, tmp_path / "a", LearnConfig(**TINY, method=method, steps=4, save_every=4))
    learn_degradation(real, hr, tmp_path / "b", LearnConfig(**TINY, method=method, steps=4, save_every=4))
    history = np.array(a.history)
    assert history.shape == (4, losses + 1) and np.isfinite(history).all()
    assert all(len(set(history[:, k])) > 1 for k in range(1, losses + 1))  # every loss component changes
    assert (tmp_path / "a" / DEGRADER).read_bytes() != b""
    pa, pb = _params(tmp_path / "a" / TRAIN_STATE), _params(tmp_path / "b" / TRAIN_STATE)
    assert all(torch.equal(pa[n][k], pb[n][k]) for n in pa for k in pa[n])  # same seed, same weights
    net, meta = load_degrader(tmp_path / "a" / DEGRADER)
    assert meta["scale"] == 2 and meta["steps"] == 4 and meta["method"] == method and meta["noise"] == 3
    assert not torch.equal(net.residual_of(torch.rand(1, 6, 16, 16)), torch.zeros(1, 3, 16, 16))


@pytest.mark.parametrize("method", ["dsgan", "cyclegan"])
def test_a_killed_run_resumes_to_the_uninterrupted_bytes(domains, tmp_path, method):
    real, hr = domains
    cfg = dict(TINY, method=method, jpeg_quality=50, save_every=2, eval_every=2)  # the "kill" at a scored step
    learn_degradation(real, hr, tmp_path / "whole", LearnConfig(**cfg, steps=4))
    learn_degradation(real, hr, tmp_path / "cut", LearnConfig(**cfg, steps=2))  # "killed" at 2
    resumed = learn_degradation(real, hr, tmp_path / "cut", LearnConfig(**cfg, steps=4))
    assert resumed.resumed_from == 2 and resumed.steps == 4
    whole, cut = (torch.load(p / TRAIN_STATE, weights_only=True) for p in (tmp_path / "whole", tmp_path / "cut"))
    assert all(torch.equal(whole["nets"][n][k], cut["nets"][n][k]) for n in whole["nets"] for k in whole["nets"][n])
    assert whole["history"] == cut["history"]
    assert torch.equal(whole["pools"]["y"]["images"], cut["pools"]["y"]["images"])
    assert whole["curve"] == cut["curve"] and [p[0] for p in whole["curve"]] == [0, 2, 4]
    assert (tmp_path / "whole" / DEGRADER).read_bytes() == (tmp_path / "cut" / DEGRADER).read_bytes()
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'cut' / TRAIN_STATE}: a training state of "
                                                   "another run (differs in ['seed'])")):
        learn_degradation(real, hr, tmp_path / "cut", LearnConfig(**cfg, steps=6, seed=1))


def test_selection_is_seeded_scores_step_0_and_writes_the_same_bytes(domains, tmp_path):
    real, hr = domains
    cfg = LearnConfig(**TINY, steps=4, eval_every=2, jpeg_quality=50)
    a, b = (learn_degradation(real, hr, tmp_path / n, cfg) for n in "ab")
    assert [p[0] for p in a.curve] == [0, 2, 4] and all(np.isfinite(p[1]) for p in a.curve)
    assert a.curve == b.curve and a.selected == b.selected == best_point(a.curve)[0]
    assert len(a.clean) == len(a.real) == 3  # every file trains, less its held-out band
    assert all(c.shape[0] * c.shape[1] < 36 * 40 for c in a.clean) and all(r.shape[0] * r.shape[1] < 40 * 48 for r in a.real)
    assert (tmp_path / "a" / DEGRADER).read_bytes() == (tmp_path / "b" / DEGRADER).read_bytes()
    _, meta = load_degrader(tmp_path / "a" / DEGRADER)
    assert meta["selected_step"] == a.selected and meta["identity_distance"] == a.curve[0][1]


def _scripted(monkeypatch, distances: dict[int, float]) -> None:
    """Selector.score returns distances[the candidate's step] (read from the file it is given)."""
    def score(self, degrader: Path) -> float:
        return distances[torch.load(degrader, weights_only=True)["meta"]["steps"]]
    monkeypatch.setattr(Selector, "score", score)


def _g_params(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, weights_only=True)
    return ckpt["params"] if "params" in ckpt else ckpt["nets"]["g"]


def test_the_best_step_is_written_and_step_0_is_the_identity(domains, tmp_path, monkeypatch):
    real, hr = domains
    cfg = dict(TINY, eval_every=2, save_every=2)
    _scripted(monkeypatch, {0: 1.0, 2: 0.5, 4: 0.5})  # a tie: the earlier step wins
    run = learn_degradation(real, hr, tmp_path / "mid", LearnConfig(**cfg, steps=4))
    learn_degradation(real, hr, tmp_path / "two", LearnConfig(**cfg, steps=2))
    assert run.selected == 2 and run.curve == [[0.0, 1.0], [2.0, 0.5], [4.0, 0.5]]
    chosen, at_two = _g_params(tmp_path / "mid" / DEGRADER), _g_params(tmp_path / "two" / TRAIN_STATE)
    assert all(torch.equal(chosen[k], at_two[k]) for k in chosen)
    assert not all(torch.equal(chosen[k], _g_params(tmp_path / "mid" / TRAIN_STATE)[k]) for k in chosen)
    _scripted(monkeypatch, {0: 0.3, 2: 0.5, 4: 0.4})  # G never beats resize + codec
    assert learn_degradation(real, hr, tmp_path / "none", LearnConfig(**cfg, steps=4)).selected == 0
    net, _ = load_degrader(tmp_path / "none" / DEGRADER)
    x = torch.rand(1, 6, 16, 16)
    assert torch.equal(net.residual_of(x), torch.zeros(1, 3, 16, 16))
    _scripted(monkeypatch, {})  # holdout 0: nothing scored, the last G
    off = learn_degradation(real, hr, tmp_path / "off", LearnConfig(**cfg, steps=4, holdout=0))
    assert off.selected is None and off.curve == [] and len(off.clean) == 3


@pytest.mark.parametrize("edge", EDGES)
def test_training_crops_never_touch_the_held_out_band(edge):
    img = np.zeros((75, 112, 3), np.uint8)  # a bench-sized real LR; the band painted 255 by the test's own arithmetic
    axis = 0 if edge in ("top", "bottom") else 1
    side = img.shape[axis]
    n = max(8, round(0.25 * side / 8) * 8)
    cut = n if edge in ("top", "left") else (side - n) // 8 * 8
    band = slice(0, cut) if edge in ("top", "left") else slice(cut, side)
    img[(band, slice(None)) if axis == 0 else (slice(None), band)] = 255
    rest, held = split_band(img, 0.25, edge, 8, 32, "real/: p0.png")
    assert cut % 8 == 0 and (held == 255).all() and (rest == 0).all()
    assert rest.shape[axis] + held.shape[axis] == side and rest.shape[1 - axis] == held.shape[1 - axis] == img.shape[1 - axis]
    crops = random_crops([rest], 200, 32, np.random.default_rng(0), align=8)
    assert crops.max() == 0


def test_holdout_bands_are_seeded_per_image_and_refuse_an_image_too_small():
    keys, images = [f"k{i}" for i in range(8)], [np.full((64, 64, 3), i, np.uint8) for i in range(8)]
    edges = [band_edge(0, "hr", k) for k in keys]
    assert edges == [band_edge(0, "hr", k) for k in keys] and len(set(edges)) > 1
    assert any([band_edge(s, "hr", k) for k in keys] != edges for s in (1, 2, 3))
    rests, bands = holdout_bands(keys, images, 0.25, 0, "hr", 8, 16, "HR")
    again = holdout_bands(keys, images, 0.25, 0, "hr", 8, 16, "HR")
    assert all(r.tobytes() == a.tobytes() for r, a in zip(rests + bands, again[0] + again[1]))
    assert all(b.size == 64 * 16 * 3 and r.size == 64 * 48 * 3 for r, b in zip(rests, bands))
    assert holdout_bands(keys, images, 0.0, 0, "hr", 8, 16, "HR") == (images, [])
    with pytest.raises(ValueError, match=re.escape(
            "real/: a.png is 48x40 px; --holdout 0.25 holds out a band of 8 px at the bottom and leaves 32 px, "
            "under the 40 px a training crop needs: use larger images, a smaller --crop or --holdout 0")):
        split_band(np.zeros((40, 48, 3), np.uint8), 0.25, "bottom", 8, 40, "real/: a.png")


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"crop: expected at least 24 px for d_layers=3, got 16"):
        LearnConfig(crop=16, d_layers=3)
    with pytest.raises(ValueError, match=r"interp: expected one of \['area', 'bilinear', 'bicubic'\], got 'nearest'"):
        LearnConfig(interp="nearest")


# ---- the preset step ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def degrader(tmp_path_factory) -> Path:
    """A degrader with noise channels and a visible residual (random last conv), without training it."""
    torch.manual_seed(3)
    cfg = LearnConfig(**TINY)
    net = CycleGANGenerator(**cfg.generator_opts())
    torch.nn.init.normal_(net.conv_last[1].weight, 0.0, 0.02)
    path = tmp_path_factory.mktemp("ckpt") / DEGRADER
    save_degrader(path, net, cfg, {"steps": 0})
    return path


def test_strength_blends_the_residual_and_the_noise_follows_the_seed(degrader):
    net, _ = load_degrader(degrader)
    img = np.random.default_rng(0).random((12, 10, 3), dtype=np.float32)
    rng = np.random.default_rng
    assert np.array_equal(degrade_lr(net, img, 0.0, rng(1)), img)
    full, half = degrade_lr(net, img, 1.0, rng(1)), degrade_lr(net, img, 0.5, rng(1))
    np.testing.assert_allclose(half - img, (full - img) * 0.5, atol=1e-6)
    assert np.abs(full - img).max() > 1e-3
    assert np.array_equal(degrade_lr(net, img, 1.0, rng(1)), full)
    assert not np.array_equal(degrade_lr(net, img, 1.0, rng(2)), full)
    with pytest.raises(ValueError, match="noise channels and needs an rng"):
        degrade_lr(net, img, 1.0)


def test_an_old_degrader_without_noise_loads_and_a_newer_format_is_one_line(degrader, tmp_path):
    """Format 1 (before the noise input: no `format` entry, 3 input channels) still degrades, with no
    draws; a format from a newer realsynth is refused naming the file."""
    torch.manual_seed(4)
    net = CycleGANGenerator(num_feat=8, num_block=1)
    torch.nn.init.normal_(net.conv_last[1].weight, 0.0, 0.02)
    old = {"kind": "realsynth-learned-degrader", "params": net.state_dict(),
           "opts": {"num_feat": 8, "num_block": 1, "num_down": 0}, "meta": {"scale": 2, "steps": 0}}
    torch.save(old, tmp_path / "old.pth")
    loaded, meta = load_degrader(tmp_path / "old.pth")
    img = np.random.default_rng(0).random((12, 10, 3), dtype=np.float32)
    assert meta["noise"] == 0 and np.array_equal(degrade_lr(loaded, img, 1.0), degrade_lr(loaded, img, 1.0))
    torch.save({**old, "format": 99}, tmp_path / "new.pth")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'new.pth'}: learned degrader format 99; this "
                                                   "realsynth reads formats 1 to 2")):
        load_degrader(tmp_path / "new.pth")


def _degrade(args: list[str]) -> None:
    assert cli.main(["degrade", *args]) == 0


def test_learned_step_degrades_replays_and_ignores_workers_and_batches(degrader, tmp_path):
    photos = _photos(tmp_path / "photos", 3, (64, 72), 5, smooth=True)
    preset = tmp_path / "learned.yaml"
    preset.write_text(dump_preset(parse_preset(learned_preset(str(degrader), 2, "area", (0.5, 1.0)))))
    runs = {"w1b1": ["--workers", "1", "--batch-size", "1"], "w2b4": ["--workers", "2", "--batch-size", "4"]}
    for name, flags in runs.items():
        _degrade([str(photos), str(tmp_path / name), "--preset", str(preset), "--variants", "2", "--seed", "7",
                  "--scale", "2", *flags])
    sets = [{p.name: p.read_bytes() for p in sorted((tmp_path / n).iterdir()) if p.suffix in (".tar", ".parquet")}
            for n in runs]
    assert sets[0] == sets[1]
    index = pd.read_parquet(tmp_path / "w1b1" / "index.parquet")
    assert len(index) == 6 and index["learned_strength"].between(0.5, 1.0).all()
    assert index["learned_strength"].nunique() == 6 and set(index["learned_checkpoint"]) == {str(degrader)}
    for key in index["key"]:
        lr, same = replay_sample(tmp_path / "w1b1", key)
        assert same and lr.shape == (32, 36, 3), key
    assert cli.main(["replay", str(tmp_path / "w1b1"), index["key"][0], str(tmp_path / "one.png")]) == 0
    plain = tmp_path / "plain.yaml"
    data = yaml.safe_load(preset.read_text())
    plain.write_text(yaml.safe_dump({**data, "steps": data["steps"][:1]}))
    _degrade([str(photos), str(tmp_path / "plain"), "--preset", str(plain), "--variants", "2", "--seed", "7",
              "--scale", "2"])
    assert sets[0] != {p.name: p.read_bytes() for p in (tmp_path / "plain").iterdir() if p.suffix == ".tar"}


def test_a_missing_checkpoint_is_one_line_naming_the_file(tmp_path, capsys):
    photos = _photos(tmp_path / "photos", 1, (32, 32), 0, smooth=True)
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump(learned_preset(str(tmp_path / "missing.pth"), 2, "area")))
    assert cli.main(["degrade", str(photos), str(tmp_path / "out"), "--preset", str(preset)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "learned.checkpoint" in err and str(tmp_path / "missing.pth") in err


def test_cli_learns_writes_a_usable_preset_and_refuses_a_finished_out(domains, tmp_path, capsys):
    real, hr = domains
    out = tmp_path / "out"
    args = ["learn-degradation", str(real), str(out), "--hr", str(hr), "--scale", "2", "--steps", "2",
            "--crop", "16", "--num-feat", "8", "--num-block", "1", "--pool", "2"]
    assert cli.main(args) == 0
    assert {p.name for p in out.iterdir()} >= {DEGRADER, TRAIN_STATE, "preset.yaml", "report.md", "samples.png"}
    preset = parse_preset(yaml.safe_load((out / "preset.yaml").read_text()))
    assert [s.op for s in preset.items] == ["resize_lr", "learned"]
    report = (out / "report.md").read_text()
    assert "| learned LR |" in report and "## Selection on the held-out bands" in report
    assert re.search(r"^\| 0 \| \d+\.\d{4} \| G = identity: resize \+ codec, no G", report, re.M)
    assert re.search(r"^\| 2 \| \d+\.\d{4} \|", report, re.M) and report.count("**selected**") == 1
    assert "selected step" in capsys.readouterr().out
    assert cli.main(args) == 1
    assert "pass --force" in capsys.readouterr().err
    assert cli.main(args + ["--force"]) == 0
    coded = ["--force", "--method", "cyclegan", "--jpeg", "40", "--steps", "1"]
    assert cli.main(args + coded) == 0
    preset = parse_preset(yaml.safe_load((out / "preset.yaml").read_text()))
    assert [s.op for s in preset.items] == ["resize_lr", "learned", "jpeg"]
    assert preset.items[2].quality_range == (40, 40)
    assert cli.main(args + ["--force", "--jpeg", "0"]) == 1
    assert "--jpeg: expected auto, off or a libjpeg quality in [1, 100], got '0'" in capsys.readouterr().err


def test_incremental_degrade_sees_a_retrained_degrader_at_the_same_path(degrader, tmp_path):
    from pipeline.degrade.incremental import _user_op_sources
    path = tmp_path / DEGRADER
    path.write_bytes(degrader.read_bytes())
    preset = parse_preset(learned_preset(str(path), 2, "area"))
    before = _user_op_sources(preset)
    assert before[f"learned:{path}"] == _sha256(degrader) and {"learned:op", "learned:net"} <= set(before)
    net, _ = load_degrader(degrader)
    torch.nn.init.normal_(net.conv_last[1].weight, 0.0, 0.03)
    save_degrader(path, net, LearnConfig(**TINY), {"steps": 1})
    assert _user_op_sources(preset)[f"learned:{path}"] != before[f"learned:{path}"]


def _sha256(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_learned_step_after_realesrgan_runs_between_dali_segments(degrader, fixtures):
    """Recorded as a user op, the learned step runs on the CPU after the DALI graph: the output is the
    degrader applied to the graph's own LR (the float hand-over may move a level). Not compared with the
    reference backend: this random-weight degrader amplifies the graph's stated JPEG/resize tolerance."""
    pytest.importorskip("nvidia.dali")
    from dataclasses import replace
    import cv2
    from pipeline.degrade import DegradeConfig, preset_settings, sample_recipe
    from pipeline.degrade.dali_backend import DaliDegrader
    from pipeline.degrade.recipe import UserOp
    from pipeline.degrade.userops import apply_user_op
    from pipeline.params import build
    data = preset_settings("realesrgan-x4plus").to_data()
    data["steps"].append({"name": "learned", "op": "learned", "checkpoint": str(degrader), "prob": 1.0,
                          "strength_range": [0.5, 1.0]})
    path = degrader.parent / "x4-learned.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert build(DegradeConfig, {"preset": str(path), "backend": "dali"}, "degrade").backend == "dali"
    photo = np.ascontiguousarray(cv2.imread(str(fixtures / "pairs" / "gt" / "baboon.png"))[:96, :96, ::-1])
    recipes = [sample_recipe(parse_preset(data), 0, f"k{i}", 0) for i in range(4)]
    off = [replace(r, steps=tuple(replace(s, applied=False) if isinstance(s, UserOp) else s for s in r.steps))
           for r in recipes]
    dali = DaliDegrader(4, "cpu", num_threads=2)
    for lr, plain, r in zip(dali.run([photo] * 4, recipes), dali.run([photo] * 4, off), recipes):
        op = next(s for s in r.steps if isinstance(s, UserOp))
        expect = np.clip(np.round(apply_user_op(plain.astype(np.float32) / 255, op.function, op.params, op.seed) * 255),
                         0, 255)
        assert np.abs(lr.astype(int) - expect).mean() <= 2 < np.abs(lr.astype(int) - plain).mean()
