"""ONNX export: every architecture at dynamic sizes, parity with `realsynth upscale` on real photos
(float32 and float16), the model's metadata, and the CLI's refusals."""
from __future__ import annotations

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from test_upscale import TINY_RRDB, TINY_SRVGG, save, tiny_net

from pipeline.cli import main as cli_main
from pipeline.cli.models import DEFAULT_OPSET as CLI_OPSET
from pipeline.export import DEFAULT_OPSET, TOLERANCE, check_onnx, to_onnx
from pipeline.infer import upscale
from pipeline.models import build_generator


def run_onnx(path, img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB through the ONNX model in onnxruntime → (sH, sW, 3) uint8, clipped and
    rounded as `upscale` does; the input is cast to the model's dtype."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    x = (img.astype(np.float32) / 255).transpose(2, 0, 1)[None].astype(dtype)
    y = sess.run(None, {inp.name: x})[0].astype(np.float32)
    return np.round(np.clip(y[0].transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)


def photo_crops(fixtures) -> list[np.ndarray]:
    """Two real RGB crops of different, odd sizes (the model is traced at 23x23)."""
    a = cv2.imread(str(fixtures / "realworld" / "00003.png"))[..., ::-1]
    b = cv2.imread(str(fixtures / "realworld" / "0014.jpg"))[..., ::-1]
    return [np.ascontiguousarray(a[100:161, 200:283]), np.ascontiguousarray(b[40:87, 30:63])]


@pytest.mark.parametrize("name,scale", [("rrdbnet", 4), ("rrdbnet", 2), ("rrdbnet", 1), ("srvgg", 4),
                                        ("srresnet", 4), ("unet", 4)])
def test_every_generator_exports_with_dynamic_size(name, scale):
    opts = {"rrdbnet": TINY_RRDB, "srvgg": TINY_SRVGG, "unet": dict(ngf=8, depth=3),
            "srresnet": dict(num_feat=8, num_block=1)}[name]
    torch.manual_seed(0)
    net = build_generator(name, scale=scale, **opts).eval()
    data = to_onnx(net, scale)
    # two sizes other than the traced one, odd ones (rrdbnet x2/x1 pad them to their multiple)
    assert check_onnx(data, net, scale, sizes=((13, 22), (20, 9))) < 1e-4
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((2, 3, 11, 7), np.float32)})[0].shape == (2, 3, 11 * scale, 7 * scale)


def test_export_equals_upscale_on_real_photos(tmp_path, fixtures, capsys):
    ckpt = save(tmp_path / "g.pth", tiny_net())
    assert cli_main(["export", "--checkpoint", str(ckpt), str(tmp_path / "g.onnx")]) == 0
    assert "onnxruntime vs PyTorch: max 0.0" in capsys.readouterr().out
    for i, img in enumerate(photo_crops(fixtures)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), img[..., ::-1])
        for tile in ("0", "16"):  # whole, and feathered tiles
            out = tmp_path / f"{i}-{tile}.sr.png"
            assert cli_main(["upscale", "--checkpoint", str(ckpt), str(tmp_path / f"{i}.png"), str(out),
                             "--device", "cpu", "--tile", tile]) == 0
            want = cv2.imread(str(out))[..., ::-1].astype(int)
            got = run_onnx(tmp_path / "g.onnx", img).astype(int)
            assert got.shape == want.shape == (img.shape[0] * 4, img.shape[1] * 4, 3)
            assert want.std() > 5 and np.abs(got - want).max() <= 1, (i, tile)


def test_fp16_export_runs_within_its_tolerance(tmp_path, fixtures):
    ckpt = save(tmp_path / "g.pth", tiny_net())
    assert cli_main(["export", "--checkpoint", str(ckpt), str(tmp_path / "g16.onnx"), "--fp16"]) == 0
    model = onnx.load(str(tmp_path / "g16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    net = tiny_net()
    for img in photo_crops(fixtures):
        try:
            got = run_onnx(tmp_path / "g16.onnx", img).astype(int)
        except ort.capi.onnxruntime_pybind11_state.NotImplemented as err:  # pragma: no cover
            pytest.skip(f"onnxruntime's CPU provider lacks a float16 kernel: {err}")
        want = upscale(net, img, 4).astype(int)
        assert np.abs(got - want).max() <= round(TOLERANCE["float16"] * 255)


def test_metadata_and_weights(tmp_path):
    net_a, net_b = tiny_net(seed=1), tiny_net(seed=2)
    torch.save({"params": net_a.state_dict(), "params_ema": net_b.state_dict(),
                "meta": {"name": "rrdbnet", "opts": TINY_RRDB, "scale": 4}}, tmp_path / "pe.pth")
    img = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    for weights, net in (("params_ema", net_b), ("params", net_a)):
        out = tmp_path / f"{weights}.onnx"
        assert cli_main(["export", "--checkpoint", str(tmp_path / "pe.pth"), str(out), "--weights", weights]) == 0
        props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert props["realsynth.scale"] == "4" and props["realsynth.arch"] == "rrdbnet"
        assert props["realsynth.weights"] == weights and props["realsynth.dtype"] == "float32"
        assert np.abs(run_onnx(out, img).astype(int) - upscale(net, img, 4).astype(int)).max() <= 1


def test_public_layouts_export(tmp_path):
    # a public SRVGGNetCompact file: params_ema only, no meta; architecture read off the keys
    save(tmp_path / "realesr-general-x4v3.pth", tiny_net("srvgg", 4), meta=False, keys=("params_ema",))
    assert cli_main(["export", "--checkpoint", str(tmp_path / "realesr-general-x4v3.pth"),
                     str(tmp_path / "v3.onnx"), "--opset", "18"]) == 0
    model = onnx.load(str(tmp_path / "v3.onnx"))
    assert {p.key: p.value for p in model.metadata_props}["realsynth.arch"] == "srvgg"
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 18


def test_cli_refusals(tmp_path, capsys):
    ckpt = save(tmp_path / "g.pth", tiny_net("srvgg", 2), name="srvgg", scale=2, opts=TINY_SRVGG)
    out = tmp_path / "g.onnx"
    out.write_bytes(b"keep me")
    assert cli_main(["export", "--checkpoint", str(ckpt), str(out)]) == 1
    assert capsys.readouterr().err == f"realsynth: error: {out}: exists; pass --force to replace it\n"
    assert out.read_bytes() == b"keep me"
    assert cli_main(["export", "--checkpoint", str(ckpt), str(ckpt), "--force"]) == 1
    assert "is the checkpoint itself" in capsys.readouterr().err
    assert cli_main(["export", "--checkpoint", str(ckpt), str(out), "--force", "--opset", "9"]) == 1
    assert capsys.readouterr().err == "realsynth: error: opset must be an int in 11..20, got 9\n"
    assert out.read_bytes() == b"keep me"
    (tmp_path / "bad.pth").write_bytes(b"nope")
    assert cli_main(["export", "--checkpoint", str(tmp_path / "bad.pth"), str(tmp_path / "b.onnx")]) == 1
    assert "bad.pth: not a loadable torch checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "b.onnx").exists()
    assert cli_main(["export", "--checkpoint", str(ckpt), str(out), "--force"]) == 0
    assert onnx.load(str(out)).graph.input[0].name == "input"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth", "g.onnx", "g.pth"]  # no temporaries left


def test_cli_default_opset_matches_the_library():
    assert CLI_OPSET == DEFAULT_OPSET
