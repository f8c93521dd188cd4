import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.config import IngestConfig
from pipeline.ingest import cap_summary, cap_tiles, ingest, val_sources
from pipeline.ingest.tiling import tile_starts
from pipeline.io.images import decode_png
from pipeline.io.shards import ShardSet
from pipeline.params import ParamsError, build

from conftest import ROOT


def _photo(seed, h=200, w=260):
    rng = np.random.default_rng(seed)
    base = cv_smooth(rng.integers(0, 256, (h // 8, w // 8, 3)).astype(np.uint8), (w, h))
    return base


def cv_smooth(small, size):
    return np.array(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC))


def _save(img, path, fmt, **kw):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt, **kw) if isinstance(img, np.ndarray) else img.save(buf, fmt, **kw)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.fixture
def messy_folder(tmp_path, fixtures):
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    good = _save(_photo(1), d / "good.png", "PNG")
    (d / "sub" / "copy_of_good.png").write_bytes(good)                       # duplicate
    broken = bytearray(_save(_photo(6), d / "corrupt.png", "PNG"))
    broken[200:400] = bytes(200)                                            # valid header, smashed pixel data
    (d / "corrupt.png").write_bytes(bytes(broken))
    jpg = _save(_photo(2), d / "whole.jpg", "JPEG", quality=90)
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "notes.png").write_text("this is a text file, not a PNG\n")
    shutil.copy(fixtures / "realworld" / "tree_alpha_16bit.png", d / "alpha16.png")
    shutil.copy(fixtures / "realworld" / "wolf_gray.jpg", d / "gray.jpg")
    _save(Image.new("CMYK", (180, 150), (10, 200, 30, 5)), d / "cmyk.jpg", "JPEG")
    _save(_photo(3, 40, 40), d / "tiny.png", "PNG")
    rotated = Image.fromarray(_photo(4, 120, 200))                            # stored landscape...
    exif = rotated.getexif()
    exif[0x0112] = 6                                                          # ...displayed portrait
    _save(rotated, d / "rotated.jpg", "JPEG", exif=exif, quality=95)
    return d


def test_messy_folder_keeps_valid_photos_and_explains_the_rest(tmp_path, messy_folder):
    cfg = build(IngestConfig, {"min_side": 100, "crop": 96, "step": 96, "workers": 1}, "ingest")
    out = tmp_path / "hr"
    stats = ingest([str(messy_folder)], out, cfg, seed=0, scale=4)
    index = pd.read_parquet(out / "index.parquet")
    rejects = pd.read_csv(out / "rejects.csv").set_index("path")["reason"].to_dict()
    name = lambda p: p.rsplit("/", 1)[-1]  # noqa: E731
    rejects = {name(k): v for k, v in rejects.items()}
    accepted = {name(s) for s in index["source"].unique()}

    assert accepted == {"good.png", "whole.jpg", "alpha16.png", "gray.jpg", "cmyk.jpg", "rotated.jpg"}
    assert rejects["copy_of_good.png"].startswith("duplicate of ") and rejects["copy_of_good.png"].endswith("good.png")
    assert rejects["corrupt.png"].startswith("corrupt")
    assert rejects["truncated.jpg"] == "truncated image file"
    assert rejects["empty.png"] == "zero bytes"
    assert rejects["notes.png"].startswith("not an image")
    assert rejects["tiny.png"].startswith("too small (40x40")
    assert stats.accepted == 6 and stats.rejected == 6 and stats.candidates == 12

    rotated = index[index["source"].str.endswith("rotated.jpg")]
    assert rotated["tile_y"].max() + rotated["height"].max() == 200  # EXIF 6: 200 px tall once upright
    shards = ShardSet(out)
    for key in index["key"][:5]:
        img = decode_png(shards.read(key)["hr.png"])
        assert img.shape[2] == 3 and img.dtype == np.uint8
    assert (out / "report.md").read_text().count("truncated image file") == 1
    assert (out / "tiles.png").stat().st_size > 0


def test_tiles_of_one_photo_never_straddle_splits(tmp_path):
    cfg = build(IngestConfig, {"crop": 200, "step": 100, "val_fraction": 0.3, "workers": 1}, "ingest")
    ingest(["sample"], tmp_path, cfg, seed=3, scale=4)
    index = pd.read_parquet(tmp_path / "index.parquet")
    assert (index.groupby("source_sha256")["split"].nunique() == 1).all()
    assert set(index["split"]) == {"train", "val"}


def test_split_depends_on_seed_and_content_only():
    hashes = [hashlib.sha256(bytes([i])).hexdigest() for i in range(20)]
    a = val_sources(hashes, 0.25, seed=1)
    assert a == val_sources(list(reversed(hashes)), 0.25, seed=1)
    assert len(a) == 5
    assert a != val_sources(hashes, 0.25, seed=2)
    assert len(val_sources(hashes[:2], 0.01, seed=0)) == 1  # tiny corpora still get a val photo
    assert val_sources(hashes, 0.0, seed=0) == set()


def test_tile_starts_follow_extract_subimages():
    assert tile_starts(512, 400, 200, 0) == [0, 112]
    assert tile_starts(1000, 400, 200, 0) == [0, 200, 400, 600]
    assert tile_starts(650, 400, 200, 60) == [0, 200]  # leftover 50 <= thresh: no edge tile
    assert tile_starts(300, 400, 200, 0) == [0]


def test_multiscale_and_flat_filter(tmp_path):
    img = _photo(5, 256, 256)
    img[:, :128] = 90  # left half perfectly flat
    d = tmp_path / "in"
    d.mkdir()
    _save(img, d / "half_flat.png", "PNG")
    cfg = build(IngestConfig, {"crop": 128, "step": 128, "scales": [1.0, 0.5], "min_std": 1.0,
                               "val_fraction": 0.0, "workers": 1}, "ingest")
    ingest([str(d)], tmp_path / "out", cfg, seed=0, scale=4)
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    full = index[index["scale"] == 1.0]
    assert sorted(full["tile_x"]) == [128, 128]  # the two flat tiles (x=0) are dropped
    half = index[index["scale"] == 0.5]
    assert len(half) == 1 and half.iloc[0]["height"] == 128


def test_output_bytes_do_not_depend_on_workers(tmp_path, messy_folder):
    digests = []
    for workers in (1, 2):
        cfg = build(IngestConfig, {"min_side": 100, "crop": 96, "step": 64, "workers": workers}, "ingest")
        out = tmp_path / f"w{workers}"
        ingest([str(messy_folder)], out, cfg, seed=0, scale=4)
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())})
    assert digests[0] == digests[1]


def test_nothing_usable_is_one_clear_error(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(b"")
    cfg = build(IngestConfig, {"workers": 1}, "ingest")
    with pytest.raises(ValueError, match="no usable photo.*a.png: zero bytes"):
        ingest([str(d)], tmp_path / "out", cfg, seed=0, scale=4)


def test_stage_rejects_a_bad_param_in_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  crop: 300\n  step: -1\n")
    proc = subprocess.run([sys.executable, "-m", "stages.ingest", "--params", str(params)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"ingest: error: {params}: ingest.step: expected 1 <= value, got -1"]


def test_cli_ingest_on_real_world_fixtures(tmp_path, fixtures):
    from pipeline.cli import main

    assert main(["ingest", str(fixtures / "realworld"), str(tmp_path / "out"), "--min-side", "200",
                 "--crop", "128", "--step", "128", "--workers", "1"]) == 0
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    assert set(index.columns) >= {"key", "source", "source_sha256", "scale", "tile_x", "tile_y", "height",
                                  "width", "split"}
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert list(rejects["reason"]) == ["too small (179x179; ingest.min_side is 200)"]


# --- ingest.max_tiles_per_photo ------------------------------------------------------------------

CAP = 6


@pytest.fixture
def cap_folder(tmp_path):
    """big.png: 80 raw tiles (crop = step = 64 at scales 1.0 and 0.5), half of them flat, leaving 32 + 8
    past min_std; small.png: 4 + 1 tiles, under the cap."""
    d = tmp_path / "cap_photos"
    d.mkdir()
    big = _photo(11, 512, 512)
    big[:, :256] = 128  # left half flat
    _save(big, d / "big.png", "PNG")
    _save(_photo(12, 100, 100), d / "small.png", "PNG")
    return d


def _cap_cfg(**kw):
    return build(IngestConfig, {"min_side": 100, "crop": 64, "step": 64, "scales": [1.0, 0.5], "min_std": 2.0,
                                "val_fraction": 0.0, "workers": 1, **kw}, "ingest")


def _digests(out, names=None):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())
            if names is None or p.name in names}


def test_tile_cap_is_per_photo_over_all_scales_after_the_flat_filter(tmp_path, cap_folder):
    full_stats = ingest([str(cap_folder)], tmp_path / "full", _cap_cfg(), seed=0, scale=4)
    stats = ingest([str(cap_folder)], tmp_path / "cap", _cap_cfg(max_tiles_per_photo=CAP), seed=0, scale=4)
    full = pd.read_parquet(tmp_path / "full" / "index.parquet")
    cap = pd.read_parquet(tmp_path / "cap" / "index.parquet")
    name = lambda df: df["source"].str.rsplit("/", n=1).str[-1]  # noqa: E731
    full_big, cap_big = full[name(full) == "big.png"], cap[name(cap) == "big.png"]
    # the setup: past the flat filter the big photo has more than CAP tiles at *each* scale, so a
    # per-scale cap would keep 2*CAP; and most of its raw tiles are flat, so a cap drawn before the
    # flat filter would leave fewer than CAP
    assert full_big.groupby("scale").size().to_dict() == {0.5: 8, 1.0: 32}
    assert len(cap_big) == CAP
    assert set(cap_big["scale"]) == {1.0, 0.5}  # drawn over both scales, not one of them first
    # kept tiles are a subset of the uncapped ones, same bytes, in their original order
    kept = full_big[full_big["key"].isin(cap_big["key"])]
    assert list(kept["key"]) == list(cap_big["key"])
    assert list(kept["sha256"]) == list(cap_big["sha256"])
    # the photo under the cap is untouched
    small_cols = ["key", "sha256", "scale", "tile_x", "tile_y"]
    assert cap[name(cap) == "small.png"][small_cols].reset_index(drop=True).equals(
        full[name(full) == "small.png"][small_cols].reset_index(drop=True))
    assert 0 < (name(cap) == "small.png").sum() < CAP
    # whole shard: every key in sorted order, members in index order
    with tarfile.open(tmp_path / "cap" / "hr-000000.tar") as tar:
        keys = [m.name.split(".")[0] for m in tar.getmembers() if m.name.endswith(".hr.png")]
    assert keys == list(cap["key"]) == sorted(cap["key"])
    # reported: stats, report line and per-photo column
    dropped = len(full_big) - CAP
    assert full_stats.capped == () and full_stats.capped_tiles == 0
    assert [(label.rsplit("/", 1)[-1], n) for label, n in stats.capped] == [("big.png", dropped)]
    assert stats.tiles == full_stats.tiles - dropped
    report = (tmp_path / "cap" / "report.md").read_text()
    assert f"- tiles dropped by ingest.max_tiles_per_photo ({CAP}): {dropped} from 1 photo\n" in report
    assert re.search(rf"\| \S*big\.png \| train \| {CAP} \| {dropped} \|", report)
    assert "dropped by cap" not in (tmp_path / "full" / "report.md").read_text()
    assert cap_summary(stats) == f"; the tile cap dropped {dropped} tiles from 1 photo (big.png {dropped})"
    assert cap_summary(full_stats) == ""


def test_tile_cap_subset_depends_on_seed_and_content_not_workers_or_listing(tmp_path, cap_folder):
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        ingest([str(cap_folder)], out, _cap_cfg(max_tiles_per_photo=CAP, workers=workers), seed=5, scale=4)
        runs[workers] = _digests(out)
    assert runs[1] == runs[2]

    # the same photo under another name, listed after other files and next to a new one
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(cap_folder / "big.png", other / "0_renamed.png")
    _save(_photo(13, 200, 200), other / "extra.png", "PNG")
    sources = [str(other / "extra.png"), str(cap_folder / "small.png"), str(other / "0_renamed.png")]
    ingest(sources, tmp_path / "moved", _cap_cfg(max_tiles_per_photo=CAP), seed=5, scale=4)
    ingest([str(cap_folder)], tmp_path / "seed6", _cap_cfg(max_tiles_per_photo=CAP), seed=6, scale=4)

    def chosen(out, stem):
        index = pd.read_parquet(out / "index.parquet")
        rows = index[index["source"].str.endswith(stem)]
        assert len(rows) == CAP
        return list(zip(rows["scale"], rows["tile_y"], rows["tile_x"], rows["sha256"]))

    assert chosen(tmp_path / "moved", "0_renamed.png") == chosen(tmp_path / "w1", "big.png")
    assert chosen(tmp_path / "seed6", "big.png") != chosen(tmp_path / "w1", "big.png")


def test_tile_cap_zero_or_unreached_changes_nothing(tmp_path, cap_folder):
    ingest([str(cap_folder)], tmp_path / "default", _cap_cfg(), seed=0, scale=4)
    ingest([str(cap_folder)], tmp_path / "zero", _cap_cfg(max_tiles_per_photo=0), seed=0, scale=4)
    stats = ingest([str(cap_folder)], tmp_path / "huge", _cap_cfg(max_tiles_per_photo=10_000), seed=0, scale=4)
    assert _digests(tmp_path / "zero") == _digests(tmp_path / "default")
    data = {"hr-000000.tar", "index.parquet", "rejects.csv"}
    assert _digests(tmp_path / "huge", data) == _digests(tmp_path / "default", data)
    assert stats.capped == ()
    assert "max_tiles_per_photo (10000): 0 from 0 photos" in (tmp_path / "huge" / "report.md").read_text()


def test_cap_tiles_draws_an_ascending_seeded_subset():
    sha = hashlib.sha256(b"photo").hexdigest()
    assert cap_tiles(7, 0, 0, sha) == list(range(7))
    assert cap_tiles(7, 7, 0, sha) == list(range(7))
    picks = cap_tiles(100, 12, 3, sha)
    assert len(picks) == 12 == len(set(picks)) and picks == sorted(picks) and 0 <= picks[0] and picks[-1] < 100
    assert picks == cap_tiles(100, 12, 3, sha)
    assert picks != cap_tiles(100, 12, 4, sha)
    assert picks != cap_tiles(100, 12, 3, hashlib.sha256(b"another photo").hexdigest())


@pytest.mark.parametrize("value, message", [
    (-1, "ingest.max_tiles_per_photo: expected 0 <= value, got -1"),
    (2.5, "ingest.max_tiles_per_photo: expected an integer, got 2.5"),
])
def test_bad_tile_cap_is_one_line_naming_the_key(value, message):
    with pytest.raises(ParamsError) as err:
        build(IngestConfig, {"max_tiles_per_photo": value}, "ingest")
    assert str(err.value) == message


def test_cli_ingest_tile_cap(tmp_path, fixtures, capsys):
    from pipeline.cli import main

    args = ["ingest", str(fixtures / "realworld"), "--min-side", "200", "--crop", "128", "--step", "64",
            "--workers", "1"]
    assert main([*args, str(tmp_path / "out"), "--max-tiles-per-photo", "3"]) == 0
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    assert index.groupby("source").size().max() == 3
    assert "the tile cap dropped" in capsys.readouterr().out
    assert main([*args, str(tmp_path / "bad"), "--max-tiles-per-photo", "-1"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "realsynth: error: ingest.max_tiles_per_photo: expected 0 <= value, got -1"]


def test_ingest_workers_modules_do_not_import_pandas():
    # a spawned worker imports the module of its function: without pandas it starts ~0.5 s sooner
    script = "import sys, stages.ingest, pipeline.ingest.ingest; print('pandas' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# --- sources: globs and @lists; WebP, TIFF and BMP photos ----------------------------------------

@pytest.fixture
def tree(tmp_path):
    d = tmp_path / "shoot"
    (d / "day2").mkdir(parents=True)
    for i, rel in enumerate(("a.png", "b.jpg", "day2/c.png", "day2/d.PNG")):
        _save(_photo(10 + i, 128, 128), d / rel, "JPEG" if rel.endswith(".jpg") else "PNG")
    (d / "notes.txt").write_text("not a photo\n")
    return d


def test_globs_and_list_files_expand_to_sorted_unique_files(tmp_path, tree):
    from pipeline.ingest.sources import resolve_sources

    names = lambda paths: [p.relative_to(tree).as_posix() for p in paths]  # noqa: E731
    assert names(resolve_sources(["shoot/*.png"], base=tmp_path)) == ["a.png"]
    assert names(resolve_sources(["shoot/**/*.png"], base=tmp_path)) == ["a.png", "day2/c.png"]  # case kept
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "pick.txt").write_text(
        f"# chosen by hand\n../shoot/b.jpg\n\n  ../shoot/day2/d.PNG  \n{tree / 'a.png'}\n")
    assert names(resolve_sources(["@lists/pick.txt"], base=tmp_path)) == ["a.png", "b.jpg", "day2/d.PNG"]
    both = resolve_sources(["@lists/pick.txt", "shoot/*.png", str(tree / "a.png")], base=tmp_path)
    assert names(both) == ["a.png", "b.jpg", "day2/d.PNG"]  # each file once
    with pytest.raises(FileNotFoundError, match=r"^@lists/nope\.txt: list file not found$"):
        resolve_sources(["@lists/nope.txt"], base=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^shoot/\*\.webp: glob matched no files$"):
        resolve_sources(["shoot/*.webp"], base=tmp_path)


def test_cli_ingest_from_a_glob_and_a_list(tmp_path, tree, monkeypatch, capsys):
    from pipeline.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pick.txt").write_text("shoot/b.jpg\n")
    assert main(["ingest", "shoot/**/*.png", "@pick.txt", "hr", "--min-side", "64", "--crop", "64", "--step", "64",
                 "--workers", "1", "--val-fraction", "0"]) == 0
    assert capsys.readouterr().out.startswith("3/3 photos -> 12 tiles")
    index = pd.read_parquet(tmp_path / "hr" / "index.parquet")
    assert sorted({s.rsplit("/", 1)[-1] for s in index["source"]}) == ["a.png", "b.jpg", "c.png"]


@pytest.mark.parametrize("fmt, save", [
    ("webp", lambda img, p: Image.fromarray(img).save(p, "WEBP", lossless=True)),
    ("tiff", lambda img, p: Image.fromarray(img).save(p, "TIFF", compression="tiff_lzw")),
    ("bmp", lambda img, p: cv2.imwrite(str(p), img[..., ::-1])),
])
def test_lossless_webp_tiff_bmp_photos_ingest_pixel_exact(tmp_path, fmt, save):
    img = _photo(20, 128, 128)
    (tmp_path / "in").mkdir()
    save(img, tmp_path / "in" / f"photo.{fmt}")
    cfg = build(IngestConfig, {"min_side": 64, "crop": 64, "step": 64, "val_fraction": 0.0, "workers": 1}, "ingest")
    stats = ingest([str(tmp_path / "in")], tmp_path / "hr", cfg, seed=0, scale=4)
    assert (stats.accepted, stats.rejected, stats.tiles) == (1, 0, 4)
    shards = ShardSet(tmp_path / "hr")
    for row in shards.index.itertuples():
        tile = decode_png(shards.read(row.key)["hr.png"])
        assert np.array_equal(tile, img[row.tile_y:row.tile_y + row.height, row.tile_x:row.tile_x + row.width])


def test_lossy_webp_and_16_bit_tiff_decode_close_to_the_original():
    from pipeline.io.images import decode_image

    img = _photo(21, 64, 80)
    ok, webp = cv2.imencode(".webp", img[..., ::-1], [cv2.IMWRITE_WEBP_QUALITY, 90])
    assert ok
    got = decode_image(webp.tobytes())
    assert got.shape == img.shape and np.abs(got.astype(int) - img.astype(int)).mean() < 4
    deep = img.astype(np.uint16) * 257 + 100  # 16-bit samples: rounded to 8 bits, not cut to the high byte
    ok, tiff = cv2.imencode(".tiff", deep[..., ::-1])
    assert ok
    np.testing.assert_array_equal(decode_image(tiff.tobytes()), np.round(deep / 257).astype(np.uint8))
