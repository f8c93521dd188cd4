"""Incremental degrade: a run given the previous LR set computes only new or changed samples and writes
the set a run from scratch writes, byte for byte (every file, the reuse manifest included)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import dvc_project, lr_hash, run_dvc
from test_degrade_stage import _tiles, _write_hr_set, cfg_of

from pipeline.degrade import incremental, run
from pipeline.degrade.incremental import MANIFEST, REUSE_DIR, code_digest
from pipeline.degrade.run import degrade_in_place
from pipeline.degrade.sources import output_key

ROOT = Path(__file__).resolve().parents[1]
BASE = dict(shard_bytes=40_000, backend="reference", workers=1, variants=2)


def _tree(set_dir: Path) -> dict[str, str]:
    return {p.relative_to(set_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(set_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiles(fixtures) -> list[np.ndarray]:
    return _tiles(fixtures)


class Runs:
    """One HR path (`hr`, rewritten between runs, as ingest rewrites data/hr), runs that record the
    keys they computed."""

    def __init__(self, root: Path, monkeypatch):
        self.root, self.hr, self.computed = root, root / "hr", []
        real = run.degrade_jobs

        def recording(ctx, jobs, **kw):
            self.computed.append(sorted(output_key(j.hr_key, j.variant) for j in jobs))
            return real(ctx, jobs, **kw)
        monkeypatch.setattr(run, "degrade_jobs", recording)

    def hr_set(self, tiles: list[np.ndarray], tiny: bool = False) -> None:
        shutil.rmtree(self.hr, ignore_errors=True)
        _write_hr_set(self.hr, tiles, tiny=tiny)

    def degrade(self, name: str, previous: str | None = None, seed: int = 11, **cfg) -> dict:
        return run.degrade_set(self.hr, self.root / name, cfg_of(**{**BASE, **cfg}), seed=seed, scale=4,
                               progress=False, previous=self.root / previous if previous else None)

    def check_equal_to_from_scratch(self, name: str, seed: int = 11, **cfg) -> None:
        self.degrade(name + "_scratch", seed=seed, **cfg)
        assert _tree(self.root / name) == _tree(self.root / (name + "_scratch"))


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Runs:
    return Runs(tmp_path, monkeypatch)


def test_added_tiles_alone_are_computed_and_the_set_is_the_from_scratch_one(runs, tiles):
    runs.hr_set(tiles[:6])
    runs.degrade("old")
    runs.hr_set(tiles, tiny=True)            # 3 new tiles (t06..t08) and one too small to degrade
    stats = runs.degrade("new", previous="old")
    assert stats["reused"] == 12 and stats["reuse"] == "12 of 20 carried over"
    assert runs.computed[-1] == sorted(f"{k}_v{v}" for k in ("t06", "t07", "t08", "tiny") for v in (0, 1))
    runs.check_equal_to_from_scratch("new")
    assert len([n for n in _tree(runs.root / "new") if n.endswith(".tar")]) > 1  # several shards, same cuts


def test_a_tile_with_new_pixels_is_computed_again(runs, tiles):
    runs.hr_set(tiles)
    runs.degrade("old")
    changed = list(tiles)
    changed[2] = np.ascontiguousarray(255 - tiles[2])
    runs.hr_set(changed)
    stats = runs.degrade("new", previous="old")
    assert stats["reused"] == 16 and runs.computed[-1] == ["t02_v0", "t02_v1"]
    runs.check_equal_to_from_scratch("new")


def test_removed_tiles_leave_and_the_rest_is_carried(runs, tiles):
    runs.hr_set(tiles)
    runs.degrade("old")
    runs.hr_set(tiles[:4])
    assert runs.degrade("new", previous="old")["reused"] == 8 and runs.computed[-1] == []
    runs.check_equal_to_from_scratch("new")


@pytest.mark.parametrize("change, differs", [
    (dict(blur2={"prob": 0.5}), ["settings"]),
    (dict(seed=12), ["seed"]),
])
def test_a_changed_degrade_param_or_seed_carries_nothing(runs, tiles, change, differs):
    runs.hr_set(tiles)
    runs.degrade("old")
    stats = runs.degrade("new", previous="old", **change)
    assert stats["reused"] == 0 and stats["reuse"] == f"changed since the previous set: {', '.join(differs)}"
    assert len(runs.computed[-1]) == 18
    runs.check_equal_to_from_scratch("new", **change)


def test_a_changed_code_fingerprint_carries_nothing(runs, tiles, monkeypatch):
    runs.hr_set(tiles)
    runs.degrade("old")
    monkeypatch.setattr(incremental, "_code_digest_once", lambda: "0" * 64)
    stats = runs.degrade("new", previous="old")
    assert stats["reused"] == 0 and stats["reuse"] == "changed since the previous set: code"
    runs.check_equal_to_from_scratch("new")


def test_packing_and_variant_count_are_not_in_the_fingerprint(runs, tiles):
    runs.hr_set(tiles)
    runs.degrade("old", variants=1)
    stats = runs.degrade("new", previous="old", variants=2, shard_bytes=25_000, batch_size=3)
    assert stats["reused"] == 9 and runs.computed[-1] == [f"t{i:02d}_v1" for i in range(9)]
    runs.check_equal_to_from_scratch("new", variants=2, shard_bytes=25_000, batch_size=3)


def test_a_set_without_a_matching_manifest_is_not_trusted(runs, tiles):
    runs.hr_set(tiles)
    runs.degrade("old")
    shutil.copytree(runs.root / "old", runs.root / "edited")
    (runs.root / "edited" / "skipped.csv").write_text("key,reason\n")  # not what the manifest covers: still fine
    assert runs.degrade("a", previous="edited")["reused"] == 18
    index = runs.root / "edited" / "index.parquet"
    index.write_bytes(index.read_bytes() + b"\0")                        # another index
    assert runs.degrade("b", previous="edited")["reuse"] == f"{REUSE_DIR}/{MANIFEST} describes another index"
    shutil.rmtree(runs.root / "old" / REUSE_DIR)                          # a set from before this feature
    assert runs.degrade("c", previous="old")["reuse"] == f"no {REUSE_DIR}/{MANIFEST} in the previous set"
    assert runs.degrade("d", previous="missing")["reuse"] == "no previous set"


def test_a_sample_that_is_not_what_its_manifest_claims_stops_the_run(runs, tiles):
    runs.hr_set(tiles)
    runs.degrade("old", seed=11)
    ctx12, _ = run.plan_set(runs.hr, cfg_of(**BASE), seed=12, scale=4)
    manifest_path = runs.root / "old" / REUSE_DIR / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest.update(incremental.fingerprint(ctx12))  # claims seed 12; its samples' json say 11
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"old: sample 't00_v0' is not what this run would write although "
                                         r"its \.degrade-reuse/manifest\.json matches; rerun from scratch"):
        runs.degrade("new", previous="old", seed=12)


def test_folder_input_carries_its_hr_png_and_sees_a_changed_file(runs, tiles):
    photos = runs.root / "photos"
    photos.mkdir()
    for i, tile in enumerate(tiles[:5]):
        cv2.imwrite(str(photos / f"p{i}.png"), tile[:, :, ::-1])
    runs.hr = photos
    runs.degrade("old")
    cv2.imwrite(str(photos / "p1.png"), tiles[7][:, :, ::-1])
    cv2.imwrite(str(photos / "p9.png"), tiles[8][:, :, ::-1])
    stats = runs.degrade("new", previous="old")
    assert stats["reused"] == 8 and runs.computed[-1] == ["p1_v0", "p1_v1", "p9_v0", "p9_v1"]
    runs.check_equal_to_from_scratch("new")


def test_in_place_as_the_stage_runs(runs, tiles):
    """The stage's path: the previous set is `out` itself, replaced atomically by the new one."""
    runs.hr_set(tiles[:7])
    cfg = cfg_of(**BASE)
    out = runs.root / "lr"
    degrade_in_place(runs.hr, out, cfg, seed=11, scale=4, progress=False, reuse=True)
    runs.hr_set(tiles)
    stats = degrade_in_place(runs.hr, out, cfg, seed=11, scale=4, progress=False, reuse=True)
    assert stats["reused"] == 14
    assert degrade_in_place(runs.hr, out, cfg, seed=11, scale=4, progress=False, reuse=False)["reused"] == 0
    runs.degrade("lr_scratch")
    assert _tree(out) == _tree(runs.root / "lr_scratch")
    assert sorted(p.name for p in runs.root.iterdir()) == ["hr", "lr", "lr_scratch"]  # no temporaries left


def test_code_digest_covers_the_degrade_code_and_nothing_else(tmp_path):
    pkg = tmp_path / "pipeline"
    shutil.copytree(ROOT / "pipeline", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_digest(pkg)
    assert before == code_digest(ROOT / "pipeline") == incremental._code_digest_once()
    (pkg / "train" / "loop.py").write_text("# another module\n")
    assert code_digest(pkg) == before
    for rel in ("degrade/fast.py", "io/images.py", "seeding.py"):
        path = pkg / rel
        text = path.read_text()
        path.write_text(text + "\n# an edit\n")
        assert code_digest(pkg) != before, rel
        path.write_text(text)
    (pkg / "degrade" / "new_op.py").write_text("X = 1\n")
    assert code_digest(pkg) != before


# ---- with the real DVC: git init + dvc init in a tmp dir, the project's dvc.yaml and stage code ----

@pytest.mark.slow
def test_dvc_repro_after_new_hr_tiles_reuses_and_gives_the_from_scratch_hash(tmp_path, tiles):
    repo = dvc_project(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["degrade"].update(backend="reference", workers=1, examples=2, shard_bytes=40_000)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    hr = repo / "data" / "hr"
    _write_hr_set(hr, tiles[:6], tiny=False)   # stands in for ingest's output (`-s`: degrade alone)
    run_dvc(repo, "repro", "-s", "degrade")
    shutil.rmtree(hr)
    _write_hr_set(hr, tiles, tiny=False)
    out = run_dvc(repo, "repro", "-s", "degrade")
    assert "6 reused from the previous set (6 of 9 carried over)" in out, out
    incremental_hash = lr_hash(repo)
    assert (repo / "data" / "lr" / REUSE_DIR / MANIFEST).is_file()   # kept, but not in DVC's hash:
    assert "up to date" in run_dvc(repo, "status", "degrade")
    shutil.rmtree(repo / "data" / "lr")
    out = run_dvc(repo, "repro", "-s", "-f", "--no-run-cache", "degrade")
    assert "0 reused from the previous set (no previous set)" in out, out
    assert lr_hash(repo) == incremental_hash


def test_editing_a_user_op_module_changes_the_fingerprint(tmp_path, monkeypatch):
    """A preset step `module:function` makes the module's source part of what reuse checks."""
    from pipeline.degrade.incremental import _user_op_sources
    from pipeline.degrade.preset import parse_preset

    (tmp_path / "grainmod.py").write_text("def grain(img, params, rng):\n    return img\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    preset = parse_preset({"name": "g", "scale": 4, "steps": [{"name": "grain", "op": "grainmod:grain"}]})
    before = _user_op_sources(preset)
    (tmp_path / "grainmod.py").write_text("def grain(img, params, rng):\n    return img * 0.5\n")
    assert _user_op_sources(preset) != before and set(before) == {"grainmod:grain"}
