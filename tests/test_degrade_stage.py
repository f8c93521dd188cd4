"""degrade_set / replay_sample / the stage: determinism across workers and batch sizes, the index,
skipped tiles, folder input, and `python -m stages.degrade`."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.degrade import DegradeConfig, Recipe, sample_recipe
from pipeline.degrade.recipe import BASE_COLUMNS
from pipeline.degrade import schedule, sources
from pipeline.degrade.run import degrade_set, replay_sample
from pipeline.degrade.schedule import tasks
from pipeline.degrade.sources import Job, folder_key
from pipeline.io.images import decode_png, encode_png
from pipeline.io.shards import Sample, ShardSet, json_bytes, write_shard_set
from pipeline.params import build

N_TILES = 9


def cfg_of(**data) -> DegradeConfig:
    return build(DegradeConfig, {"examples": 2, **data}, "degrade")


def _tiles(fixtures: Path) -> list[np.ndarray]:
    bgr = cv2.imread(str(fixtures / "pairs" / "gt" / "baboon.png"), cv2.IMREAD_COLOR)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    return [np.ascontiguousarray(rgb[16 * i:16 * i + 64, 20 * i:20 * i + 64]) for i in range(N_TILES)]


def _write_hr_set(path: Path, tiles: list[np.ndarray], tiny: bool = True) -> Path:
    samples = []
    for i, tile in enumerate(tiles):
        cols = {"height": 64, "width": 64, "split": "val" if i % 4 == 0 else "train"}
        samples.append(Sample(f"t{i:02d}", {"hr.png": encode_png(tile), "json": json_bytes(cols)}, cols))
    if tiny:  # too small for the 51 px unsharp mask: skipped, not a crash
        samples.append(Sample("tiny", {"hr.png": encode_png(tiles[0][:12, :12])}, {"height": 12, "width": 12, "split": "train"}))
    write_shard_set(path, samples, set_name="hr", shard_bytes=1 << 20)
    return path


@pytest.fixture(scope="module")
def hr_set(fixtures, tmp_path_factory) -> Path:
    return _write_hr_set(tmp_path_factory.mktemp("hr") / "hr", _tiles(fixtures))


def _run(hr_set: Path, out: Path, **cfg) -> dict:
    return degrade_set(hr_set, out, cfg_of(shard_bytes=40_000, **cfg), seed=11, scale=4, progress=False)


def _bytes_of(set_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(set_dir.iterdir()) if p.suffix in (".tar", ".parquet", ".csv")}


@pytest.fixture(scope="module")
def reference_runs(hr_set, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lr_ref")
    runs = {"w1b1": dict(workers=1, batch_size=1), "w2b7": dict(workers=2, batch_size=7),
            "w1b32": dict(workers=1, batch_size=32)}
    for name, kw in runs.items():
        _run(hr_set, root / name, backend="reference", variants=2, **kw)
    return {name: root / name for name in runs}


def test_reference_bytes_do_not_depend_on_workers_or_batch_size(reference_runs):
    sets = [_bytes_of(p) for p in reference_runs.values()]
    assert len(sets[0]) >= 3 and any(n.endswith(".tar") for n in sets[0])
    assert len([n for n in sets[0] if n.endswith(".tar")]) > 1  # several shards
    assert sets[0] == sets[1] == sets[2]


@pytest.mark.parametrize("variants,size,lengths", [
    (3, 8, [6, 6, 3]),      # whole tiles per task (9 + 1 wasted slots), not 8 + 7
    (4, 8, [8, 8, 4]),
    (1, 2, [2, 2, 1]),
    (5, 4, [4, 1] * 5),  # a tile with more variants than a task holds is split
])
def test_tasks_keep_a_tiles_variants_together(variants, size, lengths):
    jobs = [Job(f"t{k}", v) for k in range(5) for v in range(variants)]
    cut = tasks(jobs, size)
    assert [len(t) for t in cut] == lengths
    assert [j for t in cut for j in t] == jobs  # in order, each job once
    if variants <= size:
        assert all(len({j.hr_key for j in t} & {j.hr_key for j in u}) == 0 for t, u in zip(cut, cut[1:]))


def test_dali_bytes_do_not_depend_on_batch_size(hr_set, tmp_path, monkeypatch):
    pytest.importorskip("nvidia.dali")
    from pipeline.degrade import dali_backend
    monkeypatch.setattr(dali_backend, "cuda_visible", lambda: False)  # the CPU graph, GPU or not
    outs = []
    for batch in (1, 7, 32):
        stats = _run(hr_set, tmp_path / f"b{batch}", backend="dali", batch_size=batch, workers=1)
        assert stats["backend"] == "dali-cpu" and stats["samples"] == N_TILES and stats["skipped"] == 1
        outs.append(_bytes_of(tmp_path / f"b{batch}"))
    assert outs[0] == outs[1] == outs[2]
    lr, same = replay_sample(tmp_path / "b7", "t03_v0")
    assert same and lr.shape == (16, 16, 3)


@pytest.mark.gpu
def test_dali_gpu_bytes_do_not_depend_on_batch_size_or_graph_processes(hr_set, tmp_path, monkeypatch):
    runs = {"b1": dict(batch_size=1, workers=1), "b7": dict(batch_size=7, workers=2),
            "b32x2": dict(batch_size=3, workers=4)}
    outs = []
    for name, kw in runs.items():
        monkeypatch.setattr(schedule, "GPU_CORES_PER_PROCESS", 2 if name == "b32x2" else 64)  # b32x2: 2 processes
        stats = _run(hr_set, tmp_path / name, backend="dali", **kw)
        assert stats["backend"] == "dali-gpu" and stats["samples"] == N_TILES
        outs.append(_bytes_of(tmp_path / name))
    assert outs[0] == outs[1] == outs[2]
    lr, same = replay_sample(tmp_path / "b7", "t03_v0")
    assert same and lr.shape == (16, 16, 3)


def test_lr_index_members_and_reports(reference_runs, hr_set):
    out = reference_runs["w1b1"]
    shards = ShardSet(out)
    index = shards.index
    hr_index = ShardSet(hr_set).index.set_index("key")
    assert list(index["key"]) == sorted(f"t{i:02d}_v{v}" for i in range(N_TILES) for v in (0, 1))
    for col in ("key", "shard", "sha256", "height", "width", "hr_key", "variant", "backend", "split", *BASE_COLUMNS):
        assert col in index.columns, col
    assert (index["height"] == 16).all() and (index["backend"] == "reference").all()
    assert (index["split"] == hr_index.loc[index["hr_key"], "split"].to_numpy()).all()
    assert shards.members_of("t01_v1") == ["json", "lr_png"]
    meta = json.loads(shards.read("t01_v1")["json"])
    assert meta["hr_key"] == "t01" and meta["variant"] == 1 and meta["backend"] == "reference"
    recipe = Recipe.from_dict(meta["recipe"])
    assert recipe == sample_recipe(cfg_of(), 11, "t01", 1, scale=4)
    row = index.set_index("key").loc["t01_v1"]
    assert row["blur1_kind"] == recipe.step("blur1").kind and row["resize1_scale"] == recipe.step("resize1").scale
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["key"]) == ["tiny_v0", "tiny_v1"]
    assert skipped["reason"].str.contains("too small").all()
    report = (out / "report.md").read_text()
    assert "tiny_v0" in report and "recipe_histograms.png" in report
    assert (out / "examples.png").stat().st_size > 0 and (out / "recipe_histograms.png").stat().st_size > 0


def test_variants_differ_and_replay_reproduces_the_stored_sample(reference_runs, hr_set, tmp_path, fixtures):
    out = reference_runs["w2b7"]
    shards = ShardSet(out)
    assert shards.read("t02_v0")["lr.png"] != shards.read("t02_v1")["lr.png"]
    lr, same = replay_sample(out, "t02_v1")
    assert same and np.array_equal(lr, decode_png(shards.read("t02_v1")["lr.png"]))
    # another HR under the same key: replay reports the difference
    other = _write_hr_set(tmp_path / "other", [np.ascontiguousarray(t[::-1]) for t in _tiles(fixtures)], tiny=False)
    _, same = replay_sample(out, "t02_v1", hr_dir=other)
    assert not same
    with pytest.raises(KeyError, match="no sample with key 'nope'"):
        replay_sample(out, "nope")


def test_folder_input_stores_the_cropped_hr(fixtures, tmp_path):
    src = tmp_path / "photos"
    (src / "sub dir").mkdir(parents=True)
    rgb = _tiles(fixtures)[0]
    cv2.imwrite(str(src / "a.png"), cv2.resize(rgb, (66, 70))[:, :, ::-1])
    cv2.imwrite(str(src / "sub dir" / "b.v2.jpg"), rgb[:, :, ::-1])
    (src / "broken.png").write_bytes(b"not a png")
    stats = degrade_set(src, tmp_path / "lr", cfg_of(backend="reference", workers=1), seed=0, scale=4, progress=False)
    assert stats["samples"] == 2 and stats["skipped"] == 1
    shards = ShardSet(tmp_path / "lr")
    assert list(shards.index["key"]) == ["a_v0", "sub_dir_b_v2_v0"]
    members = shards.read("a_v0")
    hr, lr = decode_png(members["hr.png"]), decode_png(members["lr.png"])
    assert hr.shape == (68, 64, 3) and lr.shape == (17, 16, 3)
    assert "unreadable" in pd.read_csv(tmp_path / "lr" / "skipped.csv")["reason"][0]
    assert folder_key(Path("x.y/z.png")) == "x_y_z"
    assert replay_sample(tmp_path / "lr", "a_v0")[1]
    # workers get each image's path with its job, not the folder's whole file table
    ctx, jobs = sources.plan_set(src, cfg_of(backend="reference", workers=1), seed=0, scale=4)
    assert [j.hr_file.name for j in jobs] == ["a.png", "broken.png", "b.v2.jpg"]
    threads = cv2.getNumThreads()
    try:
        schedule.init_worker(sources.for_workers(ctx))
        assert schedule._WORKER["ctx"].source.files == {}
        results = schedule.run_task(jobs)
    finally:
        cv2.setNumThreads(threads)
    assert [r.key for r in results if r.skipped is None] == ["a_v0", "sub_dir_b_v2_v0"]
    assert results[0].lr_png == members["lr.png"]


def test_bad_inputs(tmp_path, hr_set):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        degrade_set(tmp_path / "missing", tmp_path / "o", cfg_of(), seed=0, scale=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        degrade_set(tmp_path / "empty", tmp_path / "o", cfg_of(), seed=0, scale=4)
    with pytest.raises(ValueError, match=r"scale: expected one of \[1, 2, 3, 4, 8\], got 6"):
        degrade_set(hr_set, tmp_path / "o", cfg_of(), seed=0, scale=6)


def test_stage_module_runs_from_params(hr_set, tmp_path, capsys, monkeypatch):
    from stages.degrade import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "seed": 3, "scale": 4,
        "paths": {"hr": str(hr_set), "lr": str(tmp_path / "data" / "lr")},
        "degrade": {"variants": 1, "backend": "reference", "workers": 1, "examples": 1,
                    "blur2": {"sigma_range": [0.3, 1.0]}},
    }))
    main(["--params", str(params)])
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"degrade: {N_TILES} LR samples (realesrgan-x4plus, reference)") and "1 skipped" in line
    index = ShardSet(tmp_path / "data" / "lr").index
    assert len(index) == N_TILES and index["blur2_sigma_x"].dropna().between(0.3, 1.0).all()
    assert not any(p.name.startswith(".lr.tmp") for p in (tmp_path / "data").iterdir())
    params.write_text(yaml.safe_dump({"paths": {"hr": str(hr_set)}, "degrade": {"noise1": {"sigma_range": [5, 1]}}}))
    with pytest.raises(ValueError, match=r"degrade\.noise1\.sigma_range: expected \[lo, hi\]"):
        main(["--params", str(params)])


def test_cli_degrade_replay_and_recipes(hr_set, tmp_path, capsys):
    from pipeline import cli
    from pipeline.degrade.config import PRESETS

    lr = tmp_path / "lr"
    assert cli.main(["degrade", str(hr_set), str(lr), "--backend", "reference", "--workers", "1",
                     "--variants", "2", "--seed", "5"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"degrade: {2 * N_TILES} LR samples (realesrgan-x4plus, reference) in 1 shards -> {lr}; 2 skipped "
        f"(see {lr / 'skipped.csv'}); report: {lr / 'report.md'}")
    assert len(ShardSet(lr).index) == 2 * N_TILES and set(ShardSet(lr).index["height"]) == {16}
    # without --scale the preset's own factor: x2plus gives 32 px LR from 64 px HR
    assert cli.main(["degrade", str(hr_set), str(tmp_path / "x2"), "--preset", "realesrgan-x2plus",
                     "--backend", "reference", "--workers", "1"]) == 0
    assert set(ShardSet(tmp_path / "x2").index["height"]) == {32}
    assert cli.main(["replay", str(lr), "t03_v1", str(tmp_path / "r.png")]) == 0
    assert "identical to the stored sample" in capsys.readouterr().out
    assert np.array_equal(cv2.imread(str(tmp_path / "r.png"))[:, :, ::-1],
                          decode_png(ShardSet(lr).read("t03_v1")["lr.png"]))
    assert cli.main(["replay", str(lr), "nope", str(tmp_path / "n.png")]) == 1
    assert capsys.readouterr().err.strip().endswith("lr: no sample with key 'nope'")
    assert cli.main(["degrade", str(hr_set), str(tmp_path / "x"), "--preset", "esrgan"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"realsynth: error: degrade.preset: expected one of {list(PRESETS)} or a preset file, got 'esrgan'"
    assert not (tmp_path / "x").exists()
    assert cli.main(["recipes", str(tmp_path / "rec"), "--preset", "bsrgan", "--n", "50", "--scale", "2"]) == 0
    recipes = pd.read_parquet(tmp_path / "rec" / "recipes.parquet")
    assert len(recipes) == 50 and "bsrgan_order" in recipes
    assert np.load(tmp_path / "rec" / "kernels.npz")["blur1"].shape == (50, 21, 21)
    # every flag says what it does; the help names every preset without importing the engine
    assert cli.PRESET_NAMES == PRESETS
    for action in cli.build_parser()._subparsers._group_actions[0].choices["degrade"]._actions:
        assert action.help, action.dest


def test_reference_worker_reads_hr_by_offset_without_loading_pandas(hr_set, tmp_path):
    # what a spawned worker does: unpickle its initializer, context and task, then run them; the HR
    # comes by offset (Job.hr_at), so neither the index nor pandas (~0.6 s of start-up) is loaded
    import hashlib
    import pickle
    import subprocess
    import sys

    ctx, jobs = sources.plan_set(hr_set, cfg_of(backend="reference"), seed=11, scale=4)
    task = [j for j in jobs if j.hr_key in ("t01", "t05", "tiny")]
    assert all(j.hr_at is not None and j.hr_at[0].startswith("hr-") for j in task)
    shipped = pickle.dumps((schedule.init_worker, schedule.run_task, sources.for_workers(ctx), task))
    assert len(shipped) < 20_000 and b"t07" not in shipped  # no per-key tables beyond the task's own
    (tmp_path / "task.pkl").write_bytes(shipped)
    script = ("import hashlib, pickle, sys\n"
              "init, work, ctx, task = pickle.loads(open(sys.argv[1], 'rb').read())\n"
              "init(ctx)\n"
              "for r in work(task):\n"
              "    print(r.key, r.skipped is None and hashlib.sha256(r.lr_png).hexdigest())\n"
              "print('pandas' in sys.modules, 'pyarrow' in sys.modules)\n")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "task.pkl")], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    *lines, modules = proc.stdout.strip().splitlines()
    assert modules == "False False"
    threads = cv2.getNumThreads()
    try:
        schedule.init_worker(ctx)  # pins OpenCV to one thread, as in a worker
        here = [f"{r.key} {r.skipped is None and hashlib.sha256(r.lr_png).hexdigest()}"
                for r in schedule.run_task(task)]
    finally:
        cv2.setNumThreads(threads)
    assert lines == here and "tiny_v0 False" in lines  # the same bytes, the too-small tile still skipped


def test_cli_degrade_a_folder_of_photos(tmp_path, capsys, fixtures):
    from pipeline import cli

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    tiles = _tiles(fixtures)
    cv2.imwrite(str(photos / "a.png"), tiles[0][..., ::-1])
    cv2.imwrite(str(photos / "sub" / "b.jpg"), tiles[1][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    lr = tmp_path / "lr"
    assert cli.main(["degrade", str(photos), str(lr), "--backend", "reference", "--workers", "1"]) == 0
    assert capsys.readouterr().out.strip().startswith("degrade: 2 LR samples (realesrgan-x4plus, reference) in 1 ")
    index = ShardSet(lr).index
    assert len(index) == 2 and set(index["height"]) == {16}
    sample = ShardSet(lr).read(index["key"].iloc[0])
    assert set(sample) >= {"lr.png", "hr.png", "json"}  # a folder's HR travels with its LR
    assert np.array_equal(decode_png(sample["hr.png"]), tiles[0])


def test_recipe_histograms_leave_out_what_the_preset_never_draws(tmp_path):
    from pipeline.degrade.panels import summarize
    from pipeline.degrade.recipe import BSRGAN_COLUMNS, STRING_COLUMNS
    from pipeline.degrade.run import draw_recipes

    def column(title: str) -> str:  # 'blur1_sigma_x (3 n/a)' and 'noise1_level, gaussian' name their column
        return title.split(" ")[0].rstrip(",")

    units = {}
    for preset in ("realesrgan-x4plus", "bsrgan"):
        draw_recipes(tmp_path / preset, cfg_of(preset=preset), n=60, seed=0, scale=4)
        assert (tmp_path / preset / "recipe_histograms.png").stat().st_size > 0
        table = pd.read_parquet(tmp_path / preset / "recipes.parquet")
        panels = summarize(lambda: [table]).panels
        drawn = [c for c in BASE_COLUMNS + BSRGAN_COLUMNS
                 if c in table.columns and c != "bsrgan_order" and table[c].notna().any()]
        assert len(drawn) < len(table.columns) - 1  # the preset leaves some columns empty...
        assert sorted({column(p.title) for p in panels}) == sorted(drawn)  # ...and they get no panel
        assert all(p.total for p in panels)
        # every number has its unit on the x axis; names have none
        assert all(bool(p.xlabel) != (column(p.title) in STRING_COLUMNS) for p in panels)
        units[preset] = {p.title: p.xlabel for p in panels}
        if preset == "realesrgan-x4plus":  # gaussian σ and the Poisson scale get a panel each
            gaussian = {p.title: p for p in panels}["noise1_level, gaussian"]
            sigmas = table.loc[table["noise1_kind"] == "gaussian", "noise1_level"].to_numpy()
            assert gaussian.total == len(sigmas)
            assert (gaussian.edges[0], gaussian.edges[-1]) == (sigmas.min(), sigmas.max())
            assert np.array_equal(gaussian.counts, np.histogram(sigmas, bins=gaussian.edges)[0])
    x4, bsr = units["realesrgan-x4plus"], units["bsrgan"]
    assert "jpeg2_quality" not in x4 and "blur1_beta" not in bsr and "final_omega" not in bsr
    assert x4["noise1_level, gaussian"] == "σ (grey levels of 255)"
    assert x4["noise1_level, poisson"] == "Poisson scale (no unit)"
    assert x4["final_jpeg_quality"] == "JPEG quality (0–100)" and x4["resize1_scale"] == "scale factor (×)"
    assert {x for t, x in x4.items() if column(t) == "blur1_theta"} == {"rotation θ (radians)"}
    assert {x for t, x in bsr.items() if column(t) == "camera_shot"} == {"shot: variance per unit linear signal"}
