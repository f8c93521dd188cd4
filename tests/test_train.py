"""The training loop on tiny nets and 32 px patches (CPU): resume, non-finite guard, export, GAN kinds,
overfitting past bicubic, dvclive outputs, the stage under torchrun (DDP on gloo)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from skimage import data as skdata

from pipeline.io.images import encode_png
from pipeline.io.shards import Sample, write_shard_set
from pipeline.models import build_generator, load_generator
from pipeline.train import TrainConfig
from pipeline.train.checkpoint import list_checkpoints, load_latest
from pipeline.train.loop import NonFiniteLossError, train

ROOT = Path(__file__).resolve().parents[1]
TINY_G = {"name": "rrdbnet", "opts": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}}
QUIET = {"log_every": 1, "val_every": 0, "val_batches": 1, "milestones": [1000]}


def _patches(img: np.ndarray, patch: int, stride: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    return [np.ascontiguousarray(img[y:y + patch, x:x + patch])
            for y in range(0, h - patch + 1, stride) for x in range(0, w - patch + 1, stride)]


def _write_pairs(set_dir: Path, hrs: list[np.ndarray], name: str, scale: int = 4) -> None:
    """HR patches and LR = cv2.resize(HR, INTER_AREA) as a pair shard set."""
    def samples():
        for i, hr in enumerate(hrs):
            lr = cv2.resize(hr, (hr.shape[1] // scale, hr.shape[0] // scale), interpolation=cv2.INTER_AREA)
            yield Sample(f"{i:06d}", {"hr.png": encode_png(hr), "lr.png": encode_png(lr)}, {"scale": scale})
    write_shard_set(set_dir, samples(), set_name=name, max_per_shard=8)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """25 train / 4 val 32 px patches (8 px LR) of real photos (scikit-image's bundled samples)."""
    root = tmp_path_factory.mktemp("pairs")
    train = _patches(cv2.resize(skdata.astronaut(), (96, 96), interpolation=cv2.INTER_AREA), 32, 16)
    val = _patches(cv2.resize(skdata.chelsea(), (64, 64), interpolation=cv2.INTER_AREA), 32, 32)
    _write_pairs(root / "train", train, "train")
    _write_pairs(root / "val", val, "val")
    return root


@pytest.fixture(scope="module")
def pairs128(tmp_path_factory) -> Path:
    """8 pairs of 128 px patches, for the fixed-size VGG discriminator."""
    root = tmp_path_factory.mktemp("pairs128")
    hrs = _patches(cv2.resize(skdata.coffee(), (256, 192), interpolation=cv2.INTER_AREA), 128, 64)[:8]
    _write_pairs(root / "train", hrs, "train")
    return root


@pytest.fixture(scope="module")
def net_export(pairs, tmp_path_factory) -> Path:
    """A tiny net-phase generator export, the gan phase's init."""
    out = tmp_path_factory.mktemp("net")
    train(_net(iterations=2), pairs_dir=pairs, out_dir=out, scale=4, seed=0, phase="net")
    return out / "generator.pth"


@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


def _net(**over) -> TrainConfig:
    return TrainConfig.for_phase("net", {"generator": TINY_G, "batch_size": 4, "pair_pool_size": 0,
                                         **QUIET, **over}, "train_net")


def _gan(**over) -> TrainConfig:
    section = {"generator": TINY_G, "discriminator": {"name": "unet_sn", "opts": {"num_feat": 4}},
               "perceptual": {"weight": 0.0}, "batch_size": 4, "pair_pool_size": 8, **QUIET}
    section.update(over)
    return TrainConfig.for_phase("gan", section, "train_gan")


def _latest(out: Path) -> dict:
    ckpt, _ = load_latest(out / "ckpt")
    assert ckpt is not None
    return ckpt


def _assert_same_state(a: dict, b: dict, where: str = "") -> None:
    assert a.keys() == b.keys(), where
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), f"{where}.{k}"
        elif isinstance(a[k], dict):
            _assert_same_state(a[k], b[k], f"{where}.{k}")
        else:
            assert a[k] == b[k], f"{where}.{k}"


# ---- resume ------------------------------------------------------------------------------------

def test_killed_and_resumed_run_equals_uninterrupted_run(pairs, net_export, tmp_path, deterministic):
    # gan phase: G, D, both optimizers, EMA, the pair pool (full from step 2) and USM targets all resume.
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train(_gan(iterations=6, checkpoint_every=3), pairs_dir=pairs, out_dir=straight, scale=4, seed=0, phase="gan",
          init_from=net_export)
    train(_gan(iterations=3, checkpoint_every=3), pairs_dir=pairs, out_dir=killed, scale=4, seed=0, phase="gan",
          init_from=net_export)
    # a kill in the middle of the next checkpoint write leaves only a temporary file behind
    (killed / "ckpt" / ".step_00000006.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    report = train(_gan(iterations=6, checkpoint_every=3), pairs_dir=pairs, out_dir=killed, scale=4, seed=0,
                   phase="gan", init_from=net_export)
    assert report["start_step"] == 3
    a, b = _latest(straight), _latest(killed)
    assert a["step"] == b["step"] == 6
    for key in ("params", "params_ema", "net_d", "optim_g", "optim_d", "loader"):
        _assert_same_state(a[key], b[key], key)
    assert a["ranks"][0]["pool"]["count"] == 8
    assert torch.equal(a["ranks"][0]["pool"]["hr"], b["ranks"][0]["pool"]["hr"])
    assert not list((killed / "ckpt").glob("*.tmp"))
    # the dvclive history holds every step once although steps 1..3 were logged by the first run too
    tsv = (killed / "live" / "plots" / "metrics" / "train" / "pix.tsv").read_text().splitlines()
    assert tsv[0] == "step\tpix" and [row.split("\t")[0] for row in tsv[1:]] == ["1", "2", "3", "4", "5", "6"]



def test_rerun_of_a_finished_run_logs_nothing_twice(pairs, tmp_path):
    out = tmp_path / "run"
    first = train(_net(iterations=3, val_every=2), pairs_dir=pairs, out_dir=out, scale=4, seed=0, phase="net")
    history = {p.relative_to(out): p.read_bytes() for p in sorted((out / "live").rglob("*")) if p.is_file()}
    again = train(_net(iterations=3, val_every=2), pairs_dir=pairs, out_dir=out, scale=4, seed=0, phase="net")
    assert again["start_step"] == 3 and again["val_psnr_y"] == first["val_psnr_y"]
    assert {p.relative_to(out): p.read_bytes() for p in sorted((out / "live").rglob("*")) if p.is_file()} == history
    rows = (out / "live" / "plots" / "metrics" / "val" / "psnr_y.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[0] for r in rows] == ["2", "3"]

def test_checkpoints_are_pruned_and_load_weights_only(pairs, tmp_path):
    out = tmp_path / "run"
    train(_net(iterations=5, checkpoint_every=1, keep_last=2), pairs_dir=pairs, out_dir=out, scale=4, seed=0,
          phase="net")
    names = [p.name for p in list_checkpoints(out / "ckpt")]
    assert names == ["step_00000004.pt", "step_00000005.pt"]
    ckpt = torch.load(out / "ckpt" / names[-1], weights_only=True)
    assert {"params", "params_ema", "optim_g", "step", "ranks", "loader", "config", "config_hash"} <= set(ckpt)
    assert ckpt["config"]["generator"]["opts"] == TINY_G["opts"]
    assert {"torch", "numpy", "python"} <= set(ckpt["ranks"][0]["rng"])


def test_unreadable_latest_checkpoint_falls_back_to_the_one_before(pairs, tmp_path):
    out = tmp_path / "run"
    train(_net(iterations=2, checkpoint_every=1), pairs_dir=pairs, out_dir=out, scale=4, seed=0, phase="net")
    (out / "ckpt" / "step_00000002.pt").write_bytes(b"garbage")
    ckpt, note = load_latest(out / "ckpt")
    assert ckpt["step"] == 1 and "step_00000002.pt unreadable" in note


def test_config_change_starts_fresh_and_longer_run_resumes(pairs, tmp_path, capsys):
    out = tmp_path / "run"
    train(_net(iterations=2), pairs_dir=pairs, out_dir=out, scale=4, seed=0, phase="net")
    longer = train(_net(iterations=3), pairs_dir=pairs, out_dir=out, scale=4, seed=0, phase="net")
    assert longer["start_step"] == 2
    capsys.readouterr()
    changed = train(_net(iterations=3, lr_g=1e-3), pairs_dir=pairs, out_dir=out, scale=4, seed=0, phase="net")
    assert changed["start_step"] == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "starting fresh" in ln]
    assert len(lines) == 1 and "config.lr_g: 0.0002 -> 0.001" in lines[0]
    reseeded = train(_net(iterations=3, lr_g=1e-3), pairs_dir=pairs, out_dir=out, scale=4, seed=1, phase="net")
    assert reseeded["start_step"] == 0


# ---- non-finite guard -------------------------------------------------------------------------

def _nan_pixel_loss(nan_calls):
    """An L1 loss that returns NaN on the listed call numbers (1-based): a fault injected into the real loss."""
    calls = {"n": 0}

    def loss(pred, target):
        calls["n"] += 1
        value = torch.nn.functional.l1_loss(pred, target)
        return value * float("nan") if nan_calls is None or calls["n"] in nan_calls else value
    return lambda kind: loss


def test_nonfinite_step_is_skipped_and_counted(pairs, tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.train.loop.build_pixel_loss", _nan_pixel_loss({2}))
    out = tmp_path / "run"
    report = train(_net(iterations=4), pairs_dir=pairs, out_dir=out, scale=4, seed=0, phase="net")
    assert report["skipped_steps"] == 1
    ckpt = _latest(out)
    assert all(int(s["step"]) == 3 for s in ckpt["optim_g"]["state"].values())  # 4 steps, 1 skipped
    assert all(torch.isfinite(v).all() for v in ckpt["params"].values())
    summary = json.loads((out / "live" / "metrics.json").read_text())
    assert summary["train"]["skipped_steps"] == 1


def test_nonfinite_steps_in_a_row_stop_with_a_clear_error(pairs, tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.train.loop.build_pixel_loss", _nan_pixel_loss(None))
    with pytest.raises(NonFiniteLossError, match=r"train_net: 3 non-finite losses in a row \(step 3\)"):
        train(_net(iterations=10, max_nonfinite=3), pairs_dir=pairs, out_dir=tmp_path / "run", scale=4, seed=0,
              phase="net")


# ---- export, init, GAN kinds ------------------------------------------------------------------

def test_export_holds_params_ema_and_params_loadable_strict(net_export):
    export = torch.load(net_export, weights_only=True)
    assert set(export) == {"params_ema", "params", "meta"}
    assert export["meta"] == {"name": "rrdbnet", "opts": TINY_G["opts"], "scale": 4, "phase": "net", "step": 2}
    for key in ("params_ema", "params"):
        net = build_generator("rrdbnet", scale=4, **TINY_G["opts"])
        net.load_state_dict(export[key], strict=True)
    net, scale = load_generator(export)  # architecture inferred from the keys, as spandrel does
    assert scale == 4 and net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def test_channels_last_training_exports_standard_layout(pairs, tmp_path):
    out = tmp_path / "run"
    train(_net(iterations=1, channels_last=True), pairs_dir=pairs, out_dir=out, scale=4, seed=0, phase="net")
    export = torch.load(out / "generator.pth", weights_only=True)
    assert all(v.is_contiguous() for v in export["params_ema"].values())


def test_gan_phase_refuses_a_missing_init_from(pairs, tmp_path):
    missing = tmp_path / "models" / "net" / "generator.pth"
    with pytest.raises(FileNotFoundError, match=r"generator.pth: net-phase generator not found; run `dvc repro train_net`"):
        train(_gan(iterations=1), pairs_dir=pairs, out_dir=tmp_path / "gan", scale=4, seed=0, phase="gan",
              init_from=missing)


def test_gan_phase_refuses_init_weights_of_another_shape(pairs, net_export, tmp_path):
    other = {"name": "rrdbnet", "opts": {"num_feat": 12, "num_block": 1, "num_grow_ch": 4}}
    with pytest.raises(ValueError, match=r"generator.pth: its params_ema do not fit train_gan.generator"):
        train(_gan(iterations=1, generator=other), pairs_dir=pairs, out_dir=tmp_path / "gan", scale=4, seed=0,
              phase="gan", init_from=net_export)


@pytest.mark.parametrize("kind,disc", [
    ("vanilla", {"name": "unet_sn", "opts": {"num_feat": 4}}),
    ("lsgan", {"name": "patchgan", "opts": {"num_feat": 4, "n_layers": 2}}),
    ("wgan", {"name": "dcgan", "opts": {"num_feat": 4, "n_layers": 2, "norm": "none"}}),
    ("wgan-gp", {"name": "dcgan", "opts": {"num_feat": 4, "n_layers": 2, "norm": "none"}}),
    ("hinge", {"name": "unet_sn", "opts": {"num_feat": 4}}),
    ("ragan", {"name": "vgg", "opts": {"num_feat": 4, "input_size": 128}}),
])
def test_each_gan_kind_trains_its_discriminator(kind, disc, pairs, pairs128, net_export, tmp_path):
    data = pairs128 if disc["name"] == "vgg" else pairs
    out = tmp_path / kind
    report = train(_gan(iterations=2, gan={"kind": kind, "weight": 0.1}, discriminator=disc, pair_pool_size=0),
                   pairs_dir=data, out_dir=out, scale=4, seed=0, phase="gan", init_from=net_export)
    assert report["skipped_steps"] == 0
    ckpt = _latest(out)
    assert all(int(s["step"]) == 2 for s in ckpt["optim_d"]["state"].values())  # D stepped twice
    assert all(int(s["step"]) == 2 for s in ckpt["optim_g"]["state"].values())
    assert all(torch.isfinite(v).all() for v in ckpt["net_d"].values())
    if kind == "wgan":  # critic weights clipped to [-0.01, 0.01]
        assert max(v.abs().max().item() for k, v in ckpt["net_d"].items() if k.endswith("weight")) <= 0.01
    live = json.loads((out / "live" / "metrics.json").read_text())["train"]
    assert {"d_loss", "d_real", "d_fake", "g_gan", "lr_d"} <= set(live)


def test_conditional_pix2pix_and_wgan_critic_steps(pairs, tmp_path):
    unet = {"name": "unet", "opts": {"ngf": 4, "depth": 3}}
    net_out = tmp_path / "net"
    train(TrainConfig.for_phase("net", {"recipe": "pix2pix", "generator": unet, "batch_size": 2, **QUIET,
                                        "iterations": 1}, "train_net"),
          pairs_dir=pairs, out_dir=net_out, scale=4, seed=0, phase="net")
    cfg = TrainConfig.for_phase("gan", {"recipe": "pix2pix", "generator": unet, "batch_size": 2, "d_steps": 2,
                                        "discriminator": {"opts": {"num_in_ch": 6, "num_feat": 4, "n_layers": 2}},
                                        **QUIET, "iterations": 4}, "train_gan")
    out = tmp_path / "gan"
    train(cfg, pairs_dir=pairs, out_dir=out, scale=4, seed=0, phase="gan", init_from=net_out / "generator.pth")
    ckpt = _latest(out)
    assert all(int(s["step"]) == 4 for s in ckpt["optim_d"]["state"].values())
    assert all(int(s["step"]) == 2 for s in ckpt["optim_g"]["state"].values())  # G every d_steps-th step


# ---- learning and logging ---------------------------------------------------------------------

def test_small_net_overfits_past_bicubic(tmp_path):
    # MSRResNet learns a residual over bilinear upsampling, so a few hundred steps suffice on 2 CPU cores.
    hrs = _patches(cv2.resize(skdata.astronaut(), (96, 96), interpolation=cv2.INTER_AREA), 32, 16)
    _write_pairs(tmp_path / "pairs" / "train", hrs, "train")
    _write_pairs(tmp_path / "pairs" / "val", hrs[:8], "val")  # overfitting: scored on training patches
    cfg = _net(generator={"name": "srresnet", "opts": {"num_feat": 16, "num_block": 2, "variant": "msrresnet"}},
               iterations=250, lr_g=2e-3, ema_decay=0.0, pixel_loss={"target_usm": False}, log_every=250,
               val_batches=2)
    report = train(cfg, pairs_dir=tmp_path / "pairs", out_dir=tmp_path / "run", scale=4, seed=0, phase="net")
    assert report["val_psnr_y"] > report["val_psnr_y_bicubic"] + 0.5, report


def test_dvclive_writes_metrics_plots_and_step_images(pairs, tmp_path):
    out = tmp_path / "run"
    report = train(_net(iterations=4, val_every=2, log_every=2), pairs_dir=pairs, out_dir=out, scale=4, seed=0,
                   phase="net")
    live = out / "live"
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == 4 and summary["val"]["psnr_y"] == pytest.approx(report["val_psnr_y"])
    assert {"pix", "lr_g", "skipped_steps"} <= set(summary["train"])
    rows = (live / "plots" / "metrics" / "val" / "psnr_y.tsv").read_text().splitlines()
    assert rows[0] == "step\tpsnr_y" and [r.split("\t")[0] for r in rows[1:]] == ["2", "4"]
    images = sorted(p.name for p in (live / "plots" / "images").iterdir())
    assert images == ["val_000002.png", "val_000004.png"]
    assert not (live / "dvc.yaml").exists()


# ---- the stage, single process and under torchrun (DDP over gloo) ---------------------------

@pytest.mark.slow
def test_stage_runs_net_then_gan_under_torchrun(pairs, tmp_path):
    params = {"seed": 0, "scale": 4, "paths": {"pairs": str(pairs), "models": str(tmp_path / "models")},
              "train_net": {"generator": TINY_G, "batch_size": 2, "pair_pool_size": 0, "iterations": 2, **QUIET},
              "train_gan": {"generator": TINY_G, "discriminator": {"name": "unet_sn", "opts": {"num_feat": 4}},
                            "perceptual": {"weight": 0.0}, "batch_size": 2, "pair_pool_size": 4,
                            "iterations": 2, **QUIET}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    net = subprocess.run([sys.executable, "-m", "stages.train", "--phase", "net", "--params", str(path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert net.returncode == 0, net.stderr[-2000:]
    assert "train_net: 2 steps" in net.stdout
    gan = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "stages.train", "--phase", "gan", "--params", str(path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert gan.returncode == 0, gan.stderr[-2000:]
    ckpt = _latest(tmp_path / "models" / "gan")
    assert len(ckpt["ranks"]) == 2 and ckpt["run"]["world_size"] == 2
    assert ckpt["loader"] == {"epoch": 0, "samples_seen": 8}  # 2 steps x 2 ranks x batch 2
    # each rank pooled its own share of the data
    assert not torch.equal(ckpt["ranks"][0]["pool"]["hr"], ckpt["ranks"][1]["pool"]["hr"])
    assert (tmp_path / "models" / "gan" / "generator.pth").is_file()


def test_stage_reports_a_bad_key_in_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train_net": {"lr_g": 0}}))
    proc = subprocess.run([sys.executable, "-m", "stages.train", "--phase", "net", "--params", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"train: error: {path}: train_net.lr_g: expected 0.0 < value, got 0.0"]


@pytest.mark.gpu
def test_gan_phase_on_cuda_with_bf16_and_channels_last(pairs, net_export, tmp_path):
    out = tmp_path / "gan"
    report = train(_gan(iterations=3, device="cuda", amp="bf16", channels_last=True), pairs_dir=pairs, out_dir=out,
                   scale=4, seed=0, phase="gan", init_from=net_export)
    assert report["skipped_steps"] == 0
    export = torch.load(out / "generator.pth", weights_only=True)
    assert all(v.device.type == "cpu" and torch.isfinite(v).all() for v in export["params_ema"].values())


# ---- EMA warm-up: short runs export usable params_ema ---------------------------------------------

@pytest.mark.parametrize("warmup", [True, False])
def test_a_60_step_run_exports_an_ema_near_the_trained_weights(pairs, tmp_path, warmup):
    demo_g = {"name": "rrdbnet", "opts": {"num_feat": 32, "num_block": 2, "num_grow_ch": 16}}  # params.yaml's
    cfg = _net(generator=demo_g, iterations=60, ema_decay=0.99, ema_warmup=warmup, lr_g=1e-3, val_batches=4)
    report = train(cfg, pairs_dir=pairs, out_dir=tmp_path, scale=4, seed=0, phase="net")
    ratio = report["val_psnr_y"] / report["val_psnr_y_bicubic"]  # val PSNR-Y is the EMA generator's
    if warmup:
        assert ratio >= 0.8, report
    else:  # the constant 0.99 keeps ~55 % of the random init: the check above could fail
        assert ratio < 0.8, report


def test_a_shorter_run_does_not_export_a_longer_runs_checkpoint(pairs, tmp_path):
    """`dvc exp run -S train_net.iterations=60` after a 1,500-step demo must train 60 steps, not export step 1,500."""
    train(_net(iterations=6, checkpoint_every=3), pairs_dir=pairs, out_dir=tmp_path, scale=4, seed=0, phase="net")
    short = train(_net(iterations=3, checkpoint_every=3), pairs_dir=pairs, out_dir=tmp_path, scale=4, seed=0,
                  phase="net")
    assert short["start_step"] == 0 and short["step"] == 3
    fresh = tmp_path / "fresh"
    train(_net(iterations=3, checkpoint_every=3), pairs_dir=pairs, out_dir=fresh, scale=4, seed=0, phase="net")
    a = torch.load(tmp_path / "generator.pth", weights_only=True)
    b = torch.load(fresh / "generator.pth", weights_only=True)
    _assert_same_state(a["params_ema"], b["params_ema"], "params_ema")
    assert [p.name for p in list_checkpoints(tmp_path / "ckpt")] == ["step_00000003.pt"]
