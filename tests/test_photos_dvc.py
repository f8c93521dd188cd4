"""Photos named in `ingest.sources` are DVC dependencies: they must lie in `paths.photos`, the folder
dvc.yaml makes `ingest` depend on, so adding, removing or changing one makes `ingest` stale."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import dvc_project, run_dvc
from pipeline.config import load_params, parse_params
from pipeline.ingest.sources import resolve_sources
from pipeline.params import ParamsError, read_yaml



@pytest.mark.parametrize("sources", [
    ["sample"], ["photos/"], ["photos"], ["./photos/shoot"], ["photos/shoot/**/*.jpg"], ["@photos/list.txt"],
    ["sample", "photos/a.jpg", "photos/x/../b.png"],
])
def test_sources_inside_paths_photos_are_accepted(sources):
    assert parse_params({"ingest": {"sources": sources}}, sections=("ingest",)).ingest.sources == tuple(sources)


@pytest.mark.parametrize("src", ["/home/me/pics", "shoot/**/*.jpg", "**/*.jpg", "photo*/a.jpg", "photos/../data/hr",
                                 "@my_list.txt", "~/Pictures", "photos/*/../../x/*.png", ""])
def test_a_source_outside_paths_photos_is_one_line_naming_it(src):
    with pytest.raises(ParamsError) as err:
        parse_params({"ingest": {"sources": ["sample", src]}}, sections=("ingest",))
    assert str(err.value) == (f"ingest.sources[1]: expected 'sample' or a path inside paths.photos ('photos'), "
                              f"got {src!r}")


def test_paths_photos_moves_the_allowed_folder(tmp_path):
    data = {"paths": {"photos": "/mnt/pics"}, "ingest": {"sources": ["/mnt/pics/2024", "@/mnt/pics/l.txt"]}}
    assert parse_params(data, sections=("ingest",)).paths.photos == Path("/mnt/pics")
    path = tmp_path / "params.yaml"
    path.write_text("paths: {photos: /mnt/pics}\ningest: {sources: [photos/]}\n")
    with pytest.raises(ParamsError, match=r"params.yaml: ingest.sources\[0\]: expected 'sample' or a path inside "
                                          r"paths.photos \('/mnt/pics'\), got 'photos/'$"):
        load_params(path)


@pytest.mark.parametrize("photos, other", [(".", "hr ('data/hr')"), ("data", "hr ('data/hr')"),
                                           ("models/net", "models ('models')")])
def test_paths_photos_holds_no_stage_output(photos, other):
    with pytest.raises(ParamsError) as err:
        parse_params({"paths": {"photos": photos}}, sections=())
    name, value = other.split(" ")
    assert str(err.value) == f"paths.photos: expected a folder apart from paths.{name} ({value[2:-2]}), got {photos!r}"


def test_resolve_sources_keeps_list_entries_inside_root(tmp_path):
    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "a" / "1.png").write_bytes(b"x")
    (tmp_path / "outside.png").write_bytes(b"x")
    (photos / "ok.txt").write_text("a/1.png\n")
    (photos / "bad.txt").write_text("# comment\na/1.png\n../outside.png\n")
    assert resolve_sources(["@photos/ok.txt"], base=tmp_path, root=Path("photos")) == [photos / "a" / "1.png"]
    with pytest.raises(ValueError, match=r"^@photos/bad.txt: .*outside.png is outside paths.photos \(.*photos\)"):
        resolve_sources(["@photos/bad.txt"], base=tmp_path, root=Path("photos"))
    assert len(resolve_sources(["@photos/bad.txt"], base=tmp_path)) == 2   # the CLI takes any path


# ---- with the real DVC: git init + dvc init in a tmp dir, the project's dvc.yaml and stage code ----

def _status(repo: Path) -> dict:
    return json.loads(run_dvc(repo, "status", "ingest", "--json"))


def _photo(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)


def _set_sources(repo: Path, sources: list[str]) -> None:
    params = read_yaml(repo / "params.yaml")
    params["ingest"].update(sources=sources, min_side=32, crop=64, step=64, max_tiles_per_photo=1, workers=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def repo(tmp_path):
    return dvc_project(tmp_path / "repo")


@pytest.mark.slow
def test_a_photo_added_removed_or_changed_makes_ingest_stale(repo):
    _set_sources(repo, ["sample"])                      # the shipped default: clean after a repro
    run_dvc(repo, "repro", "ingest")
    assert _status(repo) == {}

    _set_sources(repo, ["photos/"])                     # README: edit ingest.sources, run dvc repro
    for i in range(2):
        _photo(repo / "photos" / "shoot" / f"{i}.png", i)
    run_dvc(repo, "repro", "ingest")
    assert _status(repo) == {}

    stale = {"ingest": [{"changed deps": {"photos": "modified"}}]}
    _photo(repo / "photos" / "shoot" / "new.png", 7)    # added
    assert _status(repo) == stale
    run_dvc(repo, "repro", "ingest")
    assert _status(repo) == {}
    _photo(repo / "photos" / "shoot" / "0.png", 99)     # changed
    assert _status(repo) == stale
    run_dvc(repo, "repro", "ingest")
    (repo / "photos" / "shoot" / "1.png").unlink()      # removed
    assert _status(repo) == stale
