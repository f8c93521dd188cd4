"""A preset file named in `degrade.preset` and its user-op modules lie in `paths.presets`, the folder
dvc.yaml makes `degrade` depend on, so editing one makes `degrade` stale."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import dvc_project, run_dvc
from pipeline.config import parse_params
from pipeline.degrade import preset_settings
from pipeline.degrade.preset import dump_preset
from pipeline.params import ParamsError, read_yaml

OP = "def grain(img, params, rng):\n    return img\n"


def _with_grain(op: str) -> dict:
    data = preset_settings("realesrgan-x4plus").to_data()
    data["steps"].insert(1, {"name": "grain", "op": op, "params": {"s": {"uniform": [0.0, 0.1]}}})
    return data


@pytest.fixture
def repo_dir(tmp_path, monkeypatch):
    """cwd = a repo root with presets/ (on sys.path, as `python -m stages.degrade` puts it)."""
    (tmp_path / "presets").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _degrade(preset: str, **paths) -> object:
    return parse_params({"paths": paths, "degrade": {"preset": preset}}, sections=("degrade",)).degrade


def test_builtin_presets_and_files_inside_paths_presets_are_accepted(repo_dir):
    (repo_dir / "presets" / "x4.yaml").write_text(dump_preset(preset_settings("realesrgan-x4plus")))
    for preset in ("realesrgan-x4plus", "video", "camera", "web", "presets/x4.yaml", "./presets/x4.yaml"):
        assert _degrade(preset).preset == preset


@pytest.mark.parametrize("name", ["x4.yaml", "other/x4.yaml", "presets/../x4.yaml"])
def test_a_preset_file_outside_paths_presets_is_one_line_naming_it(repo_dir, name):
    (repo_dir / "other").mkdir()
    for path in (repo_dir / "x4.yaml", repo_dir / "other" / "x4.yaml"):
        path.write_text(dump_preset(preset_settings("realesrgan-x4plus")))
    with pytest.raises(ParamsError) as err:
        _degrade(name)
    assert str(err.value) == ("degrade.preset: expected one of ['realesrgan-x4plus', 'realesrgan-x2plus', 'bsrgan', "
                              "'video', 'camera', 'web'] or a preset file inside paths.presets ('presets'), the folder "
                              f"DVC tracks for degrade, got {name!r}")


def test_paths_presets_moves_the_allowed_folder(repo_dir):
    (repo_dir / "conf").mkdir()
    (repo_dir / "conf" / "x4.yaml").write_text(dump_preset(preset_settings("realesrgan-x4plus")))
    assert _degrade("conf/x4.yaml", presets="conf").preset == "conf/x4.yaml"
    with pytest.raises(ParamsError, match=r"inside paths.presets \('presets'\)"):
        _degrade("conf/x4.yaml")


def test_paths_presets_holds_no_stage_output():
    with pytest.raises(ParamsError) as err:
        parse_params({"paths": {"presets": "data/lr/p"}}, sections=())
    assert str(err.value) == "paths.presets: expected a folder apart from paths.lr (data/lr), got 'data/lr/p'"


def test_a_user_op_module_inside_paths_presets_is_accepted(repo_dir):
    (repo_dir / "presets" / "grainops.py").write_text(OP)
    (repo_dir / "presets" / "g.yaml").write_text(yaml.safe_dump(_with_grain("presets.grainops:grain")))
    cfg = _degrade("presets/g.yaml")
    assert cfg.settings.step("grain").op == "presets.grainops:grain"


def test_a_user_op_module_outside_paths_presets_is_one_line_naming_it(repo_dir):
    (repo_dir / "outsideops.py").write_text(OP)
    (repo_dir / "presets" / "g.yaml").write_text(yaml.safe_dump(_with_grain("outsideops:grain")))
    with pytest.raises(ParamsError) as err:
        _degrade("presets/g.yaml")
    assert str(err.value) == ("degrade.preset: presets/g.yaml: grain.op: expected a module inside paths.presets "
                              "('presets'), the folder DVC tracks for degrade (presets/myops.py is presets.myops:fn), "
                              f"got 'outsideops:grain' from {repo_dir / 'outsideops.py'}")


def test_editing_a_helper_beside_a_user_op_changes_the_fingerprint(repo_dir):
    """The reuse fingerprint hashes the op's folder, as DVC's dependency does, not its module alone."""
    from pipeline.degrade.incremental import _user_op_sources
    from pipeline.degrade.preset import parse_preset

    (repo_dir / "presets" / "fpops.py").write_text("from presets.fphelp import K\n" + OP)
    (repo_dir / "presets" / "fphelp.py").write_text("K = 1\n")
    preset = parse_preset(_with_grain("presets.fpops:grain"))
    before = _user_op_sources(preset)
    (repo_dir / "presets" / "fphelp.py").write_text("K = 2\n")
    assert set(before) == {"presets.fpops:grain"} and _user_op_sources(preset) != before


# ---- with the real DVC ----------------------------------------------------------------------------

def test_editing_a_preset_file_in_paths_presets_makes_degrade_stale(tmp_path):
    repo = dvc_project(tmp_path / "repo")
    assert (repo / "presets" / "README.md").is_file()  # the dependency exists on a fresh clone
    (repo / "presets" / "mine.yaml").write_text(dump_preset(preset_settings("realesrgan-x4plus")))
    params = read_yaml(repo / "params.yaml")
    params["degrade"]["preset"] = "presets/mine.yaml"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for out in ("data/hr", "data/lr"):  # stand-ins: the stage's status, not its bytes, is under test
        (repo / out).mkdir(parents=True)
        (repo / out / "index.parquet").write_bytes(out.encode())
    run_dvc(repo, "commit", "-f", "-q", "ingest", "degrade")
    status = lambda: json.loads(run_dvc(repo, "status", "degrade", "--json"))  # noqa: E731
    assert status() == {}
    text = (repo / "presets" / "mine.yaml").read_text()
    (repo / "presets" / "mine.yaml").write_text(text.replace("prob: 0.8", "prob: 0.7", 1))
    assert status() == {"degrade": [{"changed deps": {"presets": "modified"}}]}
    run_dvc(repo, "commit", "-f", "-q", "degrade")
    (repo / "presets" / "myops.py").write_text(OP)                 # a user-op module added
    assert status() == {"degrade": [{"changed deps": {"presets": "modified"}}]}


def test_the_realsynth_command_imports_user_ops_from_the_directory_it_runs_in(tmp_path):
    """A console script, unlike `python -m`, does not put its working directory on sys.path."""
    import subprocess
    import sys
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "cliops.py").write_text(OP)
    (tmp_path / "presets" / "g.yaml").write_text(yaml.safe_dump(_with_grain("presets.cliops:grain")))
    cli = Path(sys.executable).with_name("realsynth")
    run = subprocess.run([str(cli), "recipes", "out", "--preset", "presets/g.yaml", "--n", "2"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "recipes.parquet").is_file()


def test_a_learned_degrader_outside_paths_presets_is_one_line_naming_it(repo_dir):
    from pipeline.learned.train import LearnConfig, save_degrader
    from pipeline.models.cyclegan import CycleGANGenerator
    net = CycleGANGenerator(num_feat=8, num_block=1)
    cfg = LearnConfig(scale=2, crop=16, batch_size=2, num_feat=8, num_block=1, d_feat=8, d_layers=2, pool_size=3)
    for path in (repo_dir / "presets" / "deg.pth", repo_dir / "deg.pth"):
        save_degrader(path, net, cfg, {"steps": 0})
    data = preset_settings("realesrgan-x4plus").to_data()
    for checkpoint in ("presets/deg.pth", "deg.pth"):
        data["steps"].append({"name": "learned", "op": "learned", "checkpoint": checkpoint})
        (repo_dir / "presets" / "l.yaml").write_text(yaml.safe_dump(data))
        data["steps"].pop()
        if checkpoint == "deg.pth":
            with pytest.raises(ParamsError) as err:
                _degrade("presets/l.yaml")
            assert str(err.value) == ("degrade.preset: presets/l.yaml: learned.checkpoint: expected a degrader file "
                                      "inside paths.presets ('presets'), the folder DVC tracks for degrade, got 'deg.pth'")
        else:
            assert _degrade("presets/l.yaml").settings.step("learned").checkpoint == checkpoint
