"""params.yaml is read with DVC's YAML semantics (1.2): realsynth and DVC see the same values."""
from pathlib import Path

import pytest
from dvc.utils.serialize import parse_yaml

from pipeline.config import load_params
from pipeline.params import ParamsError, read_yaml

# Where YAML 1.1 (PyYAML's safe_load) and 1.2 (ruamel, DVC) disagree; the value is the 1.2 one.
DIFFERENCES = {
    "lr: 1e-3": 0.001,              # 1.1: the string '1e-3' (a 1.1 float needs a dot)
    "flag: yes": "yes",             # 1.1: True
    "flag: no": "no",               # 1.1: False
    "flag: on": "on",               # 1.1: True
    "flag: Off": "Off",             # 1.1: False
    "n: 0o17": 15,                  # 1.1: the string '0o17'
    "n: 017": 17,                   # 1.1: octal 15
    "n: 09": 9,                     # 1.1: the string '09'
    "n: 1:30": "1:30",              # 1.1: sexagesimal 90
}
SAME = {"n: 1_000": 1000, "x: .inf": float("inf"), "x: -.inf": float("-inf"), "x: 1.0e-3": 0.001,
        "flag: true": True, "n: 0x1f": 31}


@pytest.mark.parametrize("line, value", [*DIFFERENCES.items(), *SAME.items()])
def test_values_are_what_dvc_reads(tmp_path, line, value):
    path = tmp_path / "params.yaml"
    path.write_text(line + "\n")
    ours = read_yaml(path)
    assert ours == parse_yaml(line, str(path))          # DVC's own reader of params.yaml
    (got,) = ours.values()
    assert got == value and type(got) is type(value)


def test_lr_1e_3_loads_as_a_float(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train_net:\n  lr_g: 1e-3\n  milestones: [1_200]\n")
    cfg = load_params(path, sections=("train_net",)).train_net
    assert cfg.lr_g == 0.001 and cfg.milestones == (1200,)


@pytest.mark.parametrize("text, message", [
    ("train_net:\n  pixel_loss: {target_usm: yes}\n",
     "train_net.pixel_loss.target_usm: expected true or false, got 'yes'"),
    ("train_net:\n  iterations: 1:30\n", "train_net.iterations: expected an integer, got '1:30'"),
    ("train_net:\n  lr_g: .inf\n", "train_net.lr_g: expected a finite number, got inf"),
    ("seed: 0o17\nscale: 017\n", "scale: expected one of [1, 2, 3, 4, 8], got 17"),
])
def test_values_yaml_1_2_reads_differently_fail_in_one_line(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as err:
        load_params(path, sections=("seed", "scale", "train_net"))
    assert str(err.value) == f"{path}: {message}"


@pytest.mark.parametrize("text, message", [
    ("seed: 1\nseed: 2\n", 'found duplicate key "seed" with value "2" (original value: "1") (line 2, column 1)'),
    ("ingest:\n  sources: [sample\n", "expected ',' or ']', but got '<stream end>' (line 3, column 1)"),
])
def test_text_that_is_not_yaml_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == f"{path}: not valid YAML: {message}"


def test_shipped_params_files_read_the_same_both_ways():
    root = Path(__file__).resolve().parents[1]
    for path in (root / "params.yaml", root / "pipeline" / "train" / "realesrgan-x4plus.yaml"):
        assert read_yaml(path) == parse_yaml(path.read_text(), str(path))
