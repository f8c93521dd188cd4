"""Inference: checkpoint loading (ours, public layouts, wrong ones), tiled upscaling, image modes, CLI."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from pipeline import cli, infer
from pipeline.cli import main as cli_main
from pipeline.infer import DEFAULT_TILE, load_generator, read_image_any, upscale, upscale_image, upscale_path
from pipeline.models import build_generator

TINY_RRDB = dict(num_feat=8, num_block=1, num_grow_ch=4)
TINY_SRVGG = dict(num_feat=8, num_conv=2)


def tiny_net(name: str = "rrdbnet", scale: int = 4, seed: int = 0) -> torch.nn.Module:
    """A random tiny generator whose output is spread over (0, 1), not clipped flat to 0."""
    torch.manual_seed(seed)
    net = build_generator(name, scale=scale, **(TINY_RRDB if name == "rrdbnet" else TINY_SRVGG))
    if name == "rrdbnet":
        with torch.no_grad():
            net.conv_last.bias.fill_(0.5)
            net.conv_last.weight.mul_(8)
    return net.eval()


def texture(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 image (H, W, C): blurred noise, so the nets see structure, not just noise."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, c)).astype(np.float32), (0, 0), 1.5)
    img = (img - img.min()) / (img.max() - img.min())
    return np.round(img * 255).astype(np.uint8).reshape(h, w, c)


def save(path, net, *, meta: bool = True, keys=("params_ema", "params"), name="rrdbnet", scale=4, opts=None):
    sd = net.state_dict()
    ckpt = {k: sd for k in keys}
    if meta:
        ckpt["meta"] = {"name": name, "opts": opts or TINY_RRDB, "scale": scale}
    torch.save(ckpt, path)
    return path


# --- tiling -----------------------------------------------------------------------------------


def test_tiled_equals_untiled_within_one_level():
    net = tiny_net()
    img = texture(45, 58)
    whole = upscale(net, img, 4, tile=0)
    tiled = upscale(net, img, 4, tile=16, overlap=16)
    assert whole.shape == tiled.shape == (180, 232, 3)
    assert whole.std() > 5  # the comparison is not between two flat images
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1
    # without overlap the cut edges show: the test above could fail
    seams = upscale(net, img, 4, tile=16, overlap=0)
    assert np.abs(whole.astype(int) - seams.astype(int)).max() > 1


def gradient(h: int, w: int) -> np.ndarray:
    """A smooth float32 RGB image (H, W, 3): a ramp along x, one along y, one diagonal."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([xx / (w - 1), yy / (h - 1), (xx + yy) / (h + w - 2)], -1) * 0.8 + 0.1


def seam_ratio(out: np.ndarray, tile: int, scale: int, axis: int) -> float:
    """Largest |2nd difference| across the tile borders along `axis`, over the largest one at the
    same sub-pixel phase inside the tiles (4 LR px clear of the image's edges, where zero padding
    bends the output): above 1, a border shows a step that the net does not make elsewhere."""
    o = np.moveaxis(out.astype(np.float64), axis, 1)
    d2 = np.abs(o[:, 2:] - 2 * o[:, 1:-1] + o[:, :-2])  # centred on columns 1..n-2
    cols = np.arange(1, o.shape[1] - 1)
    borders = np.arange(tile * scale, o.shape[1], tile * scale)
    at = np.isin(cols, np.concatenate([borders - 1, borders]))
    inner = (cols >= 4 * scale) & (cols < o.shape[1] - 4 * scale)
    phase = cols % scale  # x4 nets repeat a pattern every 4 HR px: compare like with like
    return max(d2[:, at & (phase == p)].max() / d2[:, ~at & inner & (phase == p)].max()
               for p in np.unique(phase[at]))


def test_no_seam_on_a_smooth_gradient():
    net = tiny_net()
    img = gradient(48, 64)
    whole = upscale(net, img, 4)
    assert max(seam_ratio(whole, 16, 4, axis) for axis in (0, 1)) < 1  # the metric on an untiled run
    for overlap in (8, 16):  # 16: the default
        tiled = upscale(net, img, 4, tile=16, overlap=overlap)
        assert max(seam_ratio(tiled, 16, 4, axis) for axis in (0, 1)) <= 1, overlap
        assert np.abs(tiled - whole).max() <= 1 / 255, overlap
    # cut without context, or with too little to hide the cut, the borders show: the test can fail
    assert min(seam_ratio(upscale(net, img, 4, tile=16, overlap=0), 16, 4, axis) for axis in (0, 1)) > 2
    assert max(seam_ratio(upscale(net, img, 4, tile=16, overlap=2), 16, 4, axis) for axis in (0, 1)) > 1.5


def test_feather_weights_sum_to_one_and_crop_the_cut_edges():
    # LR axis of 40 px, tiles of 16 with overlap 4, x2: spans [0, 20), [12, 36), [28, 40)
    tiles, total = infer._axis(40, 16, 4, 2)
    spans, ramps = zip(*tiles)
    assert spans == ((0, 20), (12, 36), (28, 40))
    assert torch.allclose(total, torch.ones(80))
    first, mid = ramps[0], ramps[1]  # HR px [0, 40) and [24, 72)
    assert first[:28].eq(1).all() and first[36:].eq(0).all()  # the last overlap/2 = 2 LR px are cut away
    assert mid[:4].eq(0).all() and mid[-4:].eq(0).all() and mid[12:36].eq(1).all()
    assert (first[28:36] + mid[4:12] == 1).all() and (torch.diff(mid[:12]) > 0).sum() == 8  # a ramp, not a step
    assert infer._feather(0, 20, 40, 0, 2).eq(1).all()  # overlap 0: plain cropping


@pytest.mark.gpu
def test_cuda_bf16_close_to_cpu_fp32():
    net = tiny_net()
    img = texture(45, 58)
    cpu = upscale(net, img, 4, device="cpu").astype(int)
    gpu = upscale(net, img, 4, device="cuda").astype(int)  # bf16 autocast
    tiled = upscale(net, img, 4, tile=16, device="cuda").astype(int)
    assert gpu.shape == cpu.shape and np.abs(gpu - cpu).mean() < 3
    assert np.abs(tiled - gpu).mean() < 1


@pytest.mark.parametrize("scale", [1, 2])
def test_pixel_unshuffle_nets_take_any_size(scale):
    net = tiny_net(scale=scale)
    img = texture(41, 45)  # not a multiple of the pixel-unshuffle factor: reflect-padded, then cropped
    whole = upscale(net, img, scale)
    assert whole.shape == (41 * scale, 45 * scale, 3)
    tiled = upscale(net, img, scale, tile=11, overlap=16)  # rounded up to the net's multiple inside
    assert tiled.shape == whole.shape
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_float_input_gives_float_output():
    net = tiny_net("srvgg", scale=2)
    img = texture(10, 12)
    out_f = upscale(net, img.astype(np.float32) / 255, 2)
    out_u = upscale(net, img, 2)
    assert out_f.dtype == np.float32 and 0 <= out_f.min() and out_f.max() <= 1
    assert np.abs(np.round(out_f * 255) - out_u).max() == 0


def test_upscale_rejects_bad_arguments():
    net = tiny_net("srvgg", scale=2)
    with pytest.raises(ValueError, match="tile must be a non-negative int, got -1"):
        upscale(net, texture(8, 8), 2, tile=-1)
    with pytest.raises(ValueError, match="uint8 or float"):
        upscale(net, texture(8, 8).astype(np.int32), 2)
    with pytest.raises(ValueError, match="not x4"):
        upscale(net, texture(8, 8), 4)


# --- image modes ------------------------------------------------------------------------------


def test_modes_keep_dtype_channels_and_get_scaled():
    net = tiny_net("srvgg", scale=2)
    rgb = texture(12, 10)
    gray = rgb[..., 0]
    alpha = texture(12, 10, c=1, seed=1)[..., 0]
    cases = {
        "gray": gray,
        "gray1": gray[..., None],
        "gray_alpha": np.dstack([gray, alpha]),
        "rgb": rgb,
        "rgba": np.dstack([rgb, alpha]),
        "rgb16": rgb.astype(np.uint16) * 257 + 100,
        "rgba16": np.dstack([rgb, alpha]).astype(np.uint16) * 257,
    }
    for name, img in cases.items():
        out = upscale_image(net, img, 2)
        assert out.dtype == img.dtype, name
        assert out.ndim == img.ndim, name
        assert out.shape[:2] == (24, 20), name
        assert out.shape[2:] == img.shape[2:], name
    # alpha is the bicubic enlargement of the input alpha
    out = upscale_image(net, np.dstack([rgb, alpha]), 2)
    ref = np.clip(cv2.resize(alpha.astype(np.float32) / 255, (20, 24), interpolation=cv2.INTER_CUBIC), 0, 1)
    assert np.abs(out[..., 3].astype(int) - np.round(ref * 255)).max() <= 1
    # colour goes through the net exactly as an RGB image would
    assert np.array_equal(out[..., :3], upscale(net, rgb, 2))
    # 16 bit keeps its depth: values that no 8-bit image could give
    out16 = upscale_image(net, cases["rgb16"], 2)
    assert (out16 % 257 != 0).any()


def test_alpha_through_the_net():
    net = tiny_net("srvgg", scale=2)
    img = np.dstack([texture(8, 8), texture(8, 8, c=1, seed=3)])
    a_net = upscale_image(net, img, 2, alpha="net")[..., 3]
    a_bic = upscale_image(net, img, 2, alpha="bicubic")[..., 3]
    assert a_net.shape == a_bic.shape == (16, 16) and not np.array_equal(a_net, a_bic)
    with pytest.raises(ValueError, match="alpha must be one of"):
        upscale_image(net, img, 2, alpha="none")


# --- checkpoints ------------------------------------------------------------------------------


def test_our_export_loads_from_meta(tmp_path):
    net = tiny_net()
    path = save(tmp_path / "generator.pth", net)
    loaded, scale, info = load_generator(path, scale=4)
    assert scale == 4 and info["arch_from"] == "meta" and info["weights"] == "params_ema"
    assert info["name"] == "rrdbnet" and info["opts"] == TINY_RRDB
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(loaded(x), net(x))
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_public_params_ema_only_checkpoint_loads(tmp_path):
    net = tiny_net("srvgg", scale=4)
    path = save(tmp_path / "realesr-general.pth", net, meta=False, keys=("params_ema",))
    loaded, scale, info = load_generator(path)
    assert (info["name"], scale, info["arch_from"], info["weights"]) == ("srvgg", 4, "keys", "params_ema")
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(loaded(x), net(x))


def test_params_preferred_after_params_ema(tmp_path):
    net_a, net_b = tiny_net(seed=1), tiny_net(seed=2)
    torch.save({"params": net_a.state_dict()}, tmp_path / "p.pth")
    torch.save({"params": net_a.state_dict(), "params_ema": net_b.state_dict()}, tmp_path / "pe.pth")
    x = torch.rand(1, 3, 8, 8)
    a, _, info_a = load_generator(tmp_path / "p.pth")
    b, _, info_b = load_generator(tmp_path / "pe.pth")
    assert info_a["weights"] == "params" and torch.equal(a(x), net_a(x))
    assert info_b["weights"] == "params_ema" and torch.equal(b(x), net_b(x))
    raw, _, info_raw = load_generator(tmp_path / "pe.pth", weights="params")
    assert info_raw["weights"] == "params" and torch.equal(raw(x), net_a(x))
    torch.save({"params_ema": net_b.state_dict()}, tmp_path / "e.pth")
    with pytest.raises(ValueError, match=r"e\.pth: no 'params' weights in this checkpoint \(it has \['params_ema'\]\)"):
        load_generator(tmp_path / "e.pth", weights="params")
    with pytest.raises(ValueError, match=r"weights must be one of \['params_ema', 'params'\], got 'ema'"):
        load_generator(tmp_path / "pe.pth", weights="ema")


def _old_esrgan_keys(sd: dict, num_block: int) -> dict:
    """New BasicSR RRDBNet x4 keys → the old ESRGAN flattened-Sequential layout."""
    top = {"conv_first": "model.0", "conv_body": f"model.1.sub.{num_block}", "conv_up1": "model.3",
           "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    out = {}
    for key, value in sd.items():
        prefix, _, kind = key.rpartition(".")
        if prefix in top:
            out[f"{top[prefix]}.{kind}"] = value
        else:  # body.N.rdbK.convJ.kind
            _, n, rdb, conv = prefix.split(".")
            out[f"model.1.sub.{n}.RDB{rdb[-1]}.{conv}.0.{kind}"] = value
    return out


def test_old_esrgan_bare_state_dict_loads(tmp_path):
    net = tiny_net()
    torch.save(_old_esrgan_keys(net.state_dict(), num_block=1), tmp_path / "RRDB_ESRGAN_x4.pth")
    loaded, scale, info = load_generator(tmp_path / "RRDB_ESRGAN_x4.pth", scale=4)
    assert (info["name"], scale, info["weights"]) == ("rrdbnet", 4, "state_dict")
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(loaded(x), net(x))


def test_wrong_scale_is_one_clear_error(tmp_path):
    path = save(tmp_path / "model.pth", tiny_net("srvgg", scale=2), meta=False)
    with pytest.raises(ValueError, match=r"model\.pth: a srvgg x2 checkpoint, expected scale 4$"):
        load_generator(path, scale=4)


def test_unrelated_state_dict_is_rejected(tmp_path):
    torch.save({"params": torch.nn.Linear(4, 2).state_dict()}, tmp_path / "linear.pth")
    with pytest.raises(ValueError, match=r"linear\.pth: unknown generator checkpoint layout"):
        load_generator(tmp_path / "linear.pth")


def test_meta_that_does_not_fit_the_weights(tmp_path):
    path = save(tmp_path / "liar.pth", tiny_net(), opts=dict(num_feat=16, num_block=1, num_grow_ch=4))
    with pytest.raises(ValueError, match=r"liar\.pth: weights do not fit a rrdbnet x4 net"):
        load_generator(path)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.pth").write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.pth: not a loadable torch checkpoint"):
        load_generator(tmp_path / "notes.pth")
    with pytest.raises(FileNotFoundError, match=r"nothing\.pth: checkpoint not found"):
        load_generator(tmp_path / "nothing.pth")


# --- files and the CLI ------------------------------------------------------------------------


def test_upscale_path_folder(tmp_path):
    ckpt = save(tmp_path / "g.pth", tiny_net("srvgg", scale=2), name="srvgg", scale=2, opts=TINY_SRVGG)
    src = tmp_path / "in"
    src.mkdir()
    rgb = texture(10, 14)
    cv2.imwrite(str(src / "a.jpg"), rgb[..., ::-1])
    cv2.imwrite(str(src / "b.png"), np.dstack([rgb[..., ::-1], rgb[..., 0]]).astype(np.uint16) * 257)
    cv2.imwrite(str(src / "c.png"), rgb[..., 0])
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (src / ".hidden.png").write_bytes(b"")
    messages = []
    n = upscale_path(ckpt, src, tmp_path / "out", tile=8, overlap=4, device="cpu", report=messages.append)
    assert n == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]
    a, b, c = (cv2.imread(str(tmp_path / "out" / f), cv2.IMREAD_UNCHANGED) for f in ("a.png", "b.png", "c.png"))
    assert a.shape == (20, 28, 3) and a.dtype == np.uint8
    assert b.shape == (20, 28, 4) and b.dtype == np.uint16
    assert c.shape == (20, 28) and c.dtype == np.uint8
    assert len(messages) == 1 and "broken.png" in messages[0]


def test_fixture_photos_keep_their_modes(tmp_path, fixtures):
    ckpt = save(tmp_path / "g.pth", tiny_net("srvgg", scale=2), name="srvgg", scale=2, opts=TINY_SRVGG)
    for name in ("tree_alpha_16bit.png", "wolf_gray.jpg"):
        src = fixtures / "realworld" / name
        img = read_image_any(src)
        assert upscale_path(ckpt, src, tmp_path / f"{name}.png", tile=0, overlap=8, device="cpu") == 1
        out = cv2.imread(str(tmp_path / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert out.dtype == img.dtype and out.ndim == img.ndim
        assert out.shape[:2] == (img.shape[0] * 2, img.shape[1] * 2)


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    rgb = texture(6, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to view
    Image.fromarray(rgb).save(tmp_path / "side.jpg", exif=exif, quality=95)
    assert read_image_any(tmp_path / "side.jpg").shape == (10, 6, 3)


def test_cli_upscale(tmp_path, capsys):
    ckpt = save(tmp_path / "g.pth", tiny_net())
    cv2.imwrite(str(tmp_path / "x.png"), texture(9, 11))
    assert cli_main(["upscale", "--checkpoint", str(ckpt), str(tmp_path / "x.png"), str(tmp_path / "y.png"),
                     "--tile", "8", "--device", "cpu"]) == 0
    assert cv2.imread(str(tmp_path / "y.png")).shape == (36, 44, 3)
    assert "1 image(s)" in capsys.readouterr().out
    (tmp_path / "bad.pth").write_bytes(b"nope")
    assert cli_main(["upscale", "--checkpoint", str(tmp_path / "bad.pth"), str(tmp_path / "x.png"),
                     str(tmp_path / "z.png")]) == 1
    assert "bad.pth: not a loadable torch checkpoint" in capsys.readouterr().err


def test_cli_default_tile_bounds_work_and_matches_untiled(tmp_path, capsys):
    # 300x280 LR px: four tiles of the default 256, each net run on at most (256 + 2 * 16)^2 px
    assert cli.DEFAULT_TILE == DEFAULT_TILE  # spelled out in the CLI so --help does not import torch
    net = tiny_net()
    ckpt = save(tmp_path / "g.pth", net)
    img = texture(300, 280)
    cv2.imwrite(str(tmp_path / "x.png"), img[..., ::-1])
    sizes, real_run = [], infer._run

    def run(net_, x, *args):  # records what each net run was given
        sizes.append(tuple(x.shape[-2:]))
        return real_run(net_, x, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(infer, "_run", run)
        assert cli_main(["upscale", "--checkpoint", str(ckpt), str(tmp_path / "x.png"), str(tmp_path / "y.png"),
                         "--device", "cpu"]) == 0
    assert len(sizes) == 4 and max(h * w for h, w in sizes) <= (DEFAULT_TILE + 32) ** 2
    assert "4/4" in capsys.readouterr().err  # the progress bar, over tiles
    tiled = cv2.imread(str(tmp_path / "y.png"))[..., ::-1].astype(int)
    whole = upscale(net, img, 4, tile=0).astype(int)
    assert whole.std() > 5 and np.abs(tiled - whole).max() <= 1


def test_cli_upscale_weights_and_folder_progress(tmp_path, capsys):
    net_a, net_b = tiny_net(seed=1), tiny_net(seed=2)
    torch.save({"params": net_a.state_dict(), "params_ema": net_b.state_dict(),
                "meta": {"name": "rrdbnet", "opts": TINY_RRDB, "scale": 4}}, tmp_path / "pe.pth")
    torch.save({"params": net_a.state_dict(), "meta": {"name": "rrdbnet", "opts": TINY_RRDB, "scale": 4}},
               tmp_path / "p.pth")
    (tmp_path / "in").mkdir()
    img = texture(9, 11)
    cv2.imwrite(str(tmp_path / "in" / "x.png"), img[..., ::-1])
    want = {"ema": upscale(net_b, img, 4), "raw": upscale(net_a, img, 4)}
    for ckpt, flags, expect in (("pe.pth", [], "ema"), ("pe.pth", ["--weights", "params"], "raw"),
                                ("p.pth", [], "raw")):
        out = tmp_path / f"out-{ckpt}-{len(flags)}"
        assert cli_main(["upscale", "--checkpoint", str(tmp_path / ckpt), str(tmp_path / "in"), str(out),
                         "--device", "cpu", *flags]) == 0
        assert np.array_equal(cv2.imread(str(out / "x.png"))[..., ::-1], want[expect]), (ckpt, flags)
        err = capsys.readouterr().err
        assert "1/1" in err and "image" in err  # the progress bar, over images
        assert ("has no params_ema; using its params" in err) == (ckpt == "p.pth")
