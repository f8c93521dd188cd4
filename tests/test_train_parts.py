"""The loop's small parts: USM on tensors vs OpenCV, lr schedule, pair pool, EMA, dvclive history trim,
the DDP context manager."""
import socket

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
from skimage import data as skdata

from pipeline.train.ema import make_ema, update_ema
from pipeline.train.live import trim_history
from pipeline.train.ddp import distributed
from pipeline.train.pool import PairPool
from pipeline.train.steps import lr_at
from pipeline.train.usm import gaussian_kernel1d, usm_sharp


def _usm_cv2(img: np.ndarray, weight: float = 0.5, threshold: float = 10, size: int = 51) -> np.ndarray:
    """Real-ESRGAN's NumPy unsharp mask, spelled with OpenCV (cv2.GaussianBlur, sigma 0, BORDER_DEFAULT)."""
    blur = cv2.GaussianBlur(img, (size, size), 0)
    residual = img - blur
    mask = (np.abs(residual) * 255 > threshold).astype(np.float32)
    soft_mask = cv2.GaussianBlur(mask, (size, size), 0)
    sharp = np.clip(img + weight * residual, 0, 1)
    return soft_mask * sharp + (1 - soft_mask) * img


def test_usm_matches_opencv_on_a_photo():
    img = cv2.resize(skdata.astronaut(), (96, 80), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    expected = _usm_cv2(img)
    got = usm_sharp(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    # equal up to float rounding, except where |residual|·255 sits on the threshold (the mask may flip there;
    # one flipped pixel moves the soft mask by at most the kernel's centre weight times 0.5)
    assert np.abs(got - expected).max() < 2e-3
    assert np.abs(got - expected).mean() < 1e-5
    assert np.abs(got - img).max() > 0.05  # it does sharpen


@pytest.mark.parametrize("size", [1, 3, 7, 9, 11, 21, 51])
def test_gaussian_kernel_is_opencvs(size):
    # cv2.getGaussianKernel(size, 0) of opencv-python-headless 4.14: fixed tables up to 9, sampled beyond
    k = gaussian_kernel1d(size).numpy()
    np.testing.assert_allclose(k, cv2.getGaussianKernel(size, 0)[:, 0], atol=1e-7)


def test_usm_weight_zero_is_identity_and_errors_name_the_argument():
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(usm_sharp(x, weight=0.0), x)
    with pytest.raises(ValueError, match="kernel size must be odd and positive, got 50"):
        usm_sharp(x, size=50)
    with pytest.raises(ValueError, match="needs images larger than 25 px per side, got 16x16"):
        usm_sharp(torch.rand(1, 3, 16, 16))


def test_lr_schedule_warmup_and_milestones():
    assert lr_at(0, 1e-3, warmup=10, milestones=[100], gamma=0.5) == pytest.approx(1e-4)
    assert lr_at(9, 1e-3, warmup=10, milestones=[100], gamma=0.5) == pytest.approx(1e-3)
    assert lr_at(99, 1e-3, warmup=10, milestones=[100], gamma=0.5) == pytest.approx(1e-3)
    assert lr_at(100, 1e-3, warmup=10, milestones=[100, 200], gamma=0.5) == pytest.approx(5e-4)
    assert lr_at(250, 1e-3, warmup=0, milestones=[100, 200], gamma=0.5) == pytest.approx(2.5e-4)


def test_pair_pool_fills_then_swaps_and_round_trips():
    pool = PairPool(4)
    batches = [(torch.full((2, 3, 2, 2), i / 255), torch.full((2, 3, 8, 8), i / 255)) for i in range(3)]
    assert pool(*batches[0])[0] is batches[0][0]  # batches pass through while the pool fills
    pool(*batches[1])
    state = pool.state_dict()
    assert state["count"] == 4 and state["hr"].dtype == torch.uint8  # 8-bit images stored losslessly
    restored = PairPool(4)
    restored.load_state_dict(state, torch.device("cpu"))
    torch.manual_seed(1)
    lr, hr = pool(*batches[2])
    assert set((hr * 255).round().unique().tolist()) <= {0.0, 1.0}  # served from the pool; the new batch went in
    torch.manual_seed(1)
    lr2, hr2 = restored(*batches[2])
    assert torch.equal(lr, lr2) and torch.equal(hr, hr2)
    assert torch.equal(pool.hr, restored.hr)
    with pytest.raises(ValueError, match="pair pool size 4 is not a multiple of the batch size 3"):
        PairPool(4)(torch.zeros(3, 3, 2, 2), torch.zeros(3, 3, 8, 8))


def test_ema_decay_zero_copies_and_half_averages():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ema = make_ema(net)
    assert not any(p.requires_grad for p in ema.parameters())
    before = [p.detach().clone() for p in ema.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net[1].running_mean.fill_(3.0)
    update_ema(ema, net, 0.5)
    for b, e, p in zip(before, ema.parameters(), net.parameters()):
        torch.testing.assert_close(e, 0.5 * b + 0.5 * p)
    assert torch.equal(ema[1].running_mean, net[1].running_mean)  # buffers copied
    update_ema(ema, net, 0.0)
    assert all(torch.equal(e, p) for e, p in zip(ema.parameters(), net.parameters()))
    with pytest.raises(ValueError, match="ema decay must be in"):
        update_ema(ema, net, 1.0)


def test_trim_history_drops_rows_and_images_past_the_step(tmp_path):
    tsv = tmp_path / "plots" / "metrics" / "train" / "pix.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("step\tpix\n1\t0.5\n2\t0.4\n3\t0.3\n")
    images = tmp_path / "plots" / "images"
    images.mkdir(parents=True)
    for step in (2, 4):
        (images / f"val_{step:06d}.png").write_bytes(b"png")
    trim_history(tmp_path, 2)
    assert tsv.read_text().splitlines() == ["step\tpix", "1\t0.5", "2\t0.4"]
    assert sorted(p.name for p in images.iterdir()) == ["val_000002.png"]


def test_ema_warmup_follows_timm_and_caps_at_the_decay():
    from pipeline.train.ema import ema_decay_at

    assert ema_decay_at(1, 0.999) == pytest.approx(1 - 2 ** (-2 / 3))
    assert ema_decay_at(60, 0.999) == pytest.approx(1 - 61 ** (-2 / 3))
    assert ema_decay_at(10**6, 0.999) == 0.999
    assert ema_decay_at(5, 0.999, warmup=False) == 0.999
    init_left = np.prod([ema_decay_at(t, 0.99) for t in range(1, 61)])
    assert init_left < 1e-4 and 0.99 ** 60 > 0.5


def test_distributed_without_rank_is_one_process_and_no_group(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with distributed("cpu") as (ddp, rank, world_size, device):
        assert (ddp, rank, world_size, device.type) == (False, 0, 1, "cpu")
        assert not dist.is_initialized()


def test_distributed_tears_the_group_down_when_the_block_raises(monkeypatch):
    with socket.socket() as s:  # a free port for the gloo rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RuntimeError, match="inside the block"):
        with distributed("cpu") as (ddp, rank, world_size, _):
            assert ddp and (rank, world_size) == (0, 1) and dist.is_initialized()
            raise RuntimeError("inside the block")
    assert not dist.is_initialized()
