"""The `realsynth` command as a first-time user meets it: --version, no silent overwrite, the usage of
the subcommand for a mistyped flag, and `inspect` writing only where told."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline import cli
from pipeline.io.images import decode_png
from pipeline.models import build_generator

from conftest import ROOT


def _photos(folder: Path, n: int = 2, size: tuple[int, int] = (72, 80)) -> Path:
    """`n` small smooth PNG photos in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = cv2.resize(rng.integers(0, 256, (9, 10, 3), dtype=np.uint8), size[::-1], interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"p{i}.png"), img)
    return folder


def _checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    opts = dict(num_feat=4, num_conv=1)
    net = build_generator("srvgg", scale=2, **opts)
    torch.save({"params_ema": net.state_dict(), "params": net.state_dict(),
                "meta": {"name": "srvgg", "opts": opts, "scale": 2}}, path)
    return path


def _ingest(photos: Path, out: Path, *extra: str) -> int:
    return cli.main(["ingest", str(photos), str(out), "--min-side", "64", "--crop", "64", "--step", "64",
                     "--workers", "1", "--val-fraction", "0", *extra])


# --- --version ---------------------------------------------------------------------------------

def test_version_from_package_metadata(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"realsynth {metadata.version('realsynth')}\n"


def test_version_falls_back_to_pyproject_then_unknown(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert cli.version() == declared
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "not = [toml")
    assert cli.version() == "unknown"


# --- no silent overwrite -------------------------------------------------------------------------

def _recipes(out: Path, photos: Path | None, *extra: str) -> int:
    return cli.main(["recipes", str(out), "--n", "3", *extra])


def _degrade(out: Path, photos: Path, *extra: str) -> int:
    return cli.main(["degrade", str(photos), str(out), "--backend", "reference", "--workers", "1", *extra])


def _upscale(out: Path, photos: Path, *extra: str) -> int:
    ckpt = photos.parent / "g.pth"  # made by the test, beside the photos
    return cli.main(["upscale", "--checkpoint", str(ckpt), str(photos), str(out), "--device", "cpu", *extra])


def _ingest_into(out: Path, photos: Path, *extra: str) -> int:
    return _ingest(photos, out, *extra)


@pytest.mark.parametrize("command", [_recipes, _degrade, _upscale, _ingest_into],
                         ids=["recipes", "degrade", "upscale", "ingest"])
def test_folder_writers_refuse_a_non_empty_out_unless_forced(tmp_path, capsys, command):
    photos = _photos(tmp_path / "photos")
    _checkpoint(tmp_path / "g.pth")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert command(out, photos) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"realsynth: error: {out}: folder exists and is not empty (1 entries); pass --force to replace it"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary sibling left either
    assert command(out, photos, "--force") == 0
    assert not (out / "keep.txt").exists() and any(out.iterdir())


def test_second_ingest_is_refused_and_leaves_the_first(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    assert _ingest(photos, tmp_path / "hr") == 0
    index = (tmp_path / "hr" / "index.parquet").read_bytes()
    _photos(tmp_path / "photos", n=3)
    assert _ingest(photos, tmp_path / "hr") == 1
    assert "hr: folder exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "hr" / "index.parquet").read_bytes() == index


def test_empty_out_folder_is_fine_a_file_is_not(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _recipes(tmp_path / "empty", None) == 0
    assert (tmp_path / "empty" / "recipes.parquet").is_file()
    (tmp_path / "file").write_text("x")
    assert _recipes(tmp_path / "file", None) == 1
    assert capsys.readouterr().err.strip() == (f"realsynth: error: {tmp_path / 'file'}: exists and is not a "
                                               "folder; pass --force to replace it")
    assert (tmp_path / "file").read_text() == "x"


def test_force_never_replaces_an_input(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    assert _ingest(photos, photos, "--force") == 1
    assert capsys.readouterr().err.strip() == (f"realsynth: error: {photos}: is or contains the input {photos}; "
                                               "choose an OUT outside the inputs")
    assert _degrade(tmp_path, photos, "--force") == 1  # OUT holds the input folder
    assert "is or contains the input" in capsys.readouterr().err
    # ingest and degrade read folders with their sub-folders: a second run would take the first's PNGs
    assert _ingest(photos, photos / "hr") == 1
    assert capsys.readouterr().err.strip() == (f"realsynth: error: {photos / 'hr'}: inside the input folder {photos}, "
                                               "which is read with its sub-folders; choose an OUT outside it")
    assert sorted(p.name for p in photos.iterdir()) == ["p0.png", "p1.png"]


# --- usage of the subcommand for a mistyped flag ---------------------------------------------------

def test_mistyped_flag_prints_the_subcommand_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["upscale", "--checkpoint", "g.pth", "in.png", "out.png", "--tiel", "64"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: realsynth upscale ")
    assert err[-1] == "realsynth upscale: error: unrecognized arguments: --tiel 64 (did you mean --tile?)"
    with pytest.raises(SystemExit):
        cli.main(["recipes", str(tmp_path / "r"), "--bogus"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: realsynth recipes ") and err[-1].endswith("unrecognized arguments: --bogus")
    assert not (tmp_path / "r").exists()


# --- inspect ---------------------------------------------------------------------------------------

@pytest.fixture
def hr_set(tmp_path) -> Path:
    assert _ingest(_photos(tmp_path / "photos", size=(128, 128)), tmp_path / "data" / "hr") == 0
    return tmp_path / "data" / "hr"


def test_inspect_without_out_writes_nothing(hr_set, tmp_path, monkeypatch, capsys):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    listing = sorted(p.name for p in hr_set.iterdir())
    assert cli.main(["inspect", str(hr_set)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{hr_set}: HR shard set (members: hr.png, json)")
    assert "samples: 8 in 1 shards" in out and "grid: none written (--out GRID.png writes one)" in out
    assert list(work.iterdir()) == [] and sorted(p.name for p in hr_set.iterdir()) == listing


def test_inspect_writes_the_grid_where_told(hr_set, tmp_path, capsys):
    assert cli.main(["inspect", str(hr_set), "--out", str(tmp_path / "g.png"), "--grid", "3"]) == 0
    assert f"grid: {tmp_path / 'g.png'} (3 random samples, seed 0)" in capsys.readouterr().out
    assert decode_png((tmp_path / "g.png").read_bytes()).ndim == 3
    (tmp_path / "grids").mkdir()
    assert cli.main(["inspect", str(hr_set), "--out", str(tmp_path / "grids")]) == 0
    assert [p.name for p in (tmp_path / "grids").iterdir()] == ["inspect-hr.png"]


def test_inspect_refuses_an_out_inside_a_dvc_output(hr_set, tmp_path, capsys):
    listing = sorted(p.name for p in hr_set.iterdir())
    assert cli.main(["inspect", str(hr_set), "--out", str(hr_set / "g.png")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"realsynth: error: {hr_set / 'g.png'}: inside the inspected folder {hr_set} (a DVC output, whose hash "
        "a new file would change); write the grid elsewhere")
    # a folder of shard sets (data/) is inspected set by set; its own folder is refused too
    assert cli.main(["inspect", str(hr_set.parent), "--out", str(hr_set.parent / "g.png")]) == 1
    assert "inside the inspected folder" in capsys.readouterr().err
    # inside another shard set: also a DVC output
    other = tmp_path / "other"
    assert _ingest(_photos(tmp_path / "more"), other) == 0
    capsys.readouterr()
    assert cli.main(["inspect", str(hr_set), "--out", str(other / "sub" / "g.png")]) == 1
    assert capsys.readouterr().err.strip() == (f"realsynth: error: {other / 'sub' / 'g.png'}: inside the shard set "
                                               f"{other} (it holds index.parquet); write the grid elsewhere")
    assert sorted(p.name for p in hr_set.iterdir()) == listing and not (other / "sub").exists()


def test_inspect_a_folder_of_sets_names_each_grid(hr_set, tmp_path, capsys):
    assert cli.main(["inspect", str(hr_set.parent), "--out", str(tmp_path / "g.png"), "--grid", "2"]) == 0
    assert (tmp_path / "g-hr.png").is_file() and not (tmp_path / "g.png").exists()
