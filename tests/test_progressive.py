"""ProSR progressive growing: the fade-in is continuous, the curriculum steps as documented, a tiny run grows,
resumes mid-fade exactly, and exports a plain RRDBNet that realsynth's upscale and spandrel load alike."""
import numpy as np
import pytest
import spandrel
import torch
import torch.nn.functional as F
from skimage import data as skdata

from pipeline.infer import load_generator, upscale
from pipeline.models import RRDBNet
from pipeline.models.prosr import ProgressiveRRDBNet, without_heads
from pipeline.params import ParamsError
from pipeline.train import TrainConfig
from pipeline.train.checkpoint import load_latest
from pipeline.train.loop import train
from pipeline.train.progressive import downscale, stage_at
from test_train import _assert_same_state, deterministic, pairs  # noqa: F401 (fixtures)

# num_grow_ch 32: spandrel's ESRGAN assumes ESRGAN's growth channels (it does not infer them from shapes)
TINY = {"num_feat": 8, "num_block": 1, "num_grow_ch": 32}
QUIET = {"log_every": 1, "val_every": 0, "val_batches": 1, "milestones": [1000], "batch_size": 4,
         "pair_pool_size": 0}


def _net(scale: int = 4) -> ProgressiveRRDBNet:
    torch.manual_seed(0)
    return ProgressiveRRDBNet(scale=scale, **TINY).eval()


def _cfg(**progressive) -> TrainConfig:
    section = {"generator": {"name": "rrdbnet", "opts": TINY}, **QUIET, "iterations": 12, "checkpoint_every": 6,
               "progressive": {"enabled": True, "stage_steps": [4], "fade_steps": 4, **progressive}}
    return TrainConfig.for_phase("net", section, "train_net")


# ---- the fade-in ---------------------------------------------------------------------------------

@pytest.mark.parametrize("scale, stage", [(4, 2), (8, 2), (8, 3)])
@torch.no_grad()
def test_alpha_zero_is_the_previous_stage_upsampled_exactly(scale, stage):
    net, x = _net(scale), torch.rand(2, 3, 8, 8)
    prev = F.interpolate(net(x, stage=stage - 1, alpha=1.0), scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.equal(net(x, stage=stage, alpha=0.0), prev)
    assert not torch.equal(net(x, stage=stage, alpha=1.0), prev)


@torch.no_grad()
def test_output_moves_smoothly_with_alpha():
    # |f(α+ε) - f(α)| ≤ ε·|f(1) - f(0)| everywhere: O(ε), with no jump at either end of the fade
    net, x = _net(), torch.rand(2, 3, 8, 8)
    span = (net(x, stage=2, alpha=1.0) - net(x, stage=2, alpha=0.0)).abs().max().item()
    assert span > 1e-3
    eps = 1e-3
    for a in np.linspace(0.0, 1.0 - eps, 11):
        step = (net(x, stage=2, alpha=a + eps) - net(x, stage=2, alpha=a)).abs().max().item()
        assert step <= eps * span * 1.001 + 1e-6, (a, step, eps * span)


@torch.no_grad()
def test_full_scale_forward_is_rrdbnets_forward():
    net, x = _net(8), torch.rand(1, 3, 8, 8)
    plain = RRDBNet(scale=8, **TINY)
    plain.load_state_dict(without_heads(net.state_dict()), strict=True)
    assert net(x).shape == (1, 3, 64, 64)
    assert torch.equal(net(x), plain(x)) and torch.equal(net(x), net(x, stage=3, alpha=1.0))
    net.grow(1, 1.0)
    assert net(x).shape == (1, 3, 16, 16)


def test_bad_stage_or_alpha_is_one_clear_error():
    net, x = _net(), torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="stage must be 1..2, got 3"):
        net(x, stage=3)
    with pytest.raises(ValueError, match="1 for stage 1"):
        net(x, stage=1, alpha=0.5)
    with pytest.raises(ValueError, match="scale must be one of \\[4, 8\\]"):
        ProgressiveRRDBNet(scale=2, **TINY)


# ---- the curriculum ------------------------------------------------------------------------------

def test_curriculum_fades_each_new_stage_in_over_fade_steps():
    stages = [stage_at(s, [10, 8], 5) for s in range(30)]
    assert [s.stage for s in stages] == [1] * 10 + [2] * 8 + [3] * 12
    assert [s.alpha for s in stages[10:17]] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0, 1.0])
    assert all(s.alpha == 1.0 for s in stages[:10])
    assert [s.alpha < 1 for s in stages[18:24]] == [True] * 5 + [False]
    assert stage_at(3, [4], 0).alpha == stage_at(4, [4], 0).alpha == 1.0  # fade_steps 0: a hard switch


def test_targets_are_downscaled_hr_patches():
    hr = torch.rand(2, 3, 32, 32)
    small = downscale(hr, 2)
    assert small.shape == (2, 3, 16, 16) and 0 <= small.min() and small.max() <= 1
    assert torch.allclose(small.mean(), hr.mean(), atol=0.02)
    assert downscale(hr, 1) is hr


def test_config_checks():
    with pytest.raises(ParamsError, match="train_gan.progressive.enabled: a net-phase option"):
        TrainConfig.for_phase("gan", {"progressive": {"enabled": True}}, "train_gan")
    with pytest.raises(ParamsError, match="progressive.enabled: grows an rrdbnet generator, got .*srvgg"):
        TrainConfig.for_phase("net", {"generator": {"name": "srvgg"}, "progressive": {"enabled": True}}, "train_net")
    assert not TrainConfig.for_phase("net", {}, "train_net").progressive.enabled


@pytest.mark.parametrize("over, scale, message", [
    ({"stage_steps": [4, 4]}, 4, "expected 1 entry for scale 4"),
    ({"stage_steps": [4]}, 8, "expected 2 entries for scale 8"),
    ({"stage_steps": [4, 2], "fade_steps": 3}, 8, "must last at least fade_steps \\(3\\)"),
    ({}, 2, "grows ×2 stages up to scale 4 or 8"),
])
def test_a_curriculum_that_does_not_fit_fails_before_training(over, scale, message, pairs, tmp_path):
    with pytest.raises(ValueError, match=message):
        train(_cfg(**over), pairs_dir=pairs, out_dir=tmp_path, scale=scale, seed=0, phase="net")
    assert not (tmp_path / "ckpt").exists()


# ---- a run ---------------------------------------------------------------------------------------

def test_a_run_killed_mid_fade_resumes_at_the_same_alpha(pairs, tmp_path, deterministic, capsys):  # noqa: F811
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train(_cfg(), pairs_dir=pairs, out_dir=straight, scale=4, seed=0, phase="net")
    train(_cfg().model_copy(update={"iterations": 6}), pairs_dir=pairs, out_dir=killed, scale=4, seed=0,
          phase="net")  # stops (as a kill would) mid-fade, after its step-6 checkpoint
    assert "warning: the x4 stage starts at step 4 and fades in over 4 steps, past iterations 6" in \
        capsys.readouterr().out
    ckpt, _ = load_latest(killed / "ckpt")
    # steps 4..7 fade the x4 stage in (alpha 1/5..4/5); the next step after the kill is step 6
    assert ckpt["scheduler"]["progressive"] == {"stage": 2, "alpha": pytest.approx(3 / 5), "factor": 4,
                                                "stage_steps": [4], "fade_steps": 4}
    assert any(k.startswith("heads.") for k in ckpt["params"])  # the x2 head resumes too
    report = train(_cfg(), pairs_dir=pairs, out_dir=killed, scale=4, seed=0, phase="net")
    assert report["start_step"] == 6
    a = torch.load(straight / "generator.pth", weights_only=True)
    b = torch.load(killed / "generator.pth", weights_only=True)
    _assert_same_state({k: a[k] for k in ("params", "params_ema")}, {k: b[k] for k in ("params", "params_ema")})


def test_the_grown_export_loads_in_upscale_and_in_spandrel_alike(pairs, tmp_path):  # noqa: F811
    train(_cfg(), pairs_dir=pairs, out_dir=tmp_path, scale=4, seed=0, phase="net")
    export = torch.load(tmp_path / "generator.pth", weights_only=True)
    assert set(export["params_ema"]) == set(RRDBNet(scale=4, **TINY).state_dict())
    ours, scale, _ = load_generator(tmp_path / "generator.pth")
    theirs = spandrel.ModelLoader().load_from_state_dict(export["params_ema"])
    assert (theirs.architecture.id, theirs.scale, scale) == ("ESRGAN", 4, 4)
    img = np.ascontiguousarray(skdata.astronaut()[100:164, 150:230])
    a = upscale(ours, img, scale, tile=0)
    b = upscale(theirs.model.eval(), img, scale, tile=0)
    assert a.shape == (256, 320, 3) and np.array_equal(a, b)
