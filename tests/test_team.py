"""A team shares a realsynth project through a DVC remote (README "Working as a team"): after `dvc push`,
a teammate's `git clone` + `dvc pull` has a clean `dvc status` and a `dvc repro` that runs nothing.

With the real DVC: one small pipeline run (the repo's dvc.yaml, .gitignore and stage code, shrunk params)
is committed, pushed to a local folder remote and to an S3 remote (moto's server, started here on
127.0.0.1), and each is pulled into a fresh clone. Training resume state (`models/*/ckpt/`) is no DVC
output: the clones never get it and are clean without it."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import dvc_project
from pipeline.params import read_yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DVC = BIN / "dvc"
STAGES = ("ingest", "degrade", "shard", "train_net", "train_gan", "evaluate")
GENERATORS = ("models/net/generator.pth", "models/gan/generator.pth")

# the whole `dvc repro` in seconds: 14 sample photos, one 128 px tile each, a few training steps
SMALL = {
    "ingest": {"crop": 128, "step": 128, "max_tiles_per_photo": 1, "workers": 1},
    "degrade": {"workers": 1, "examples": 2},
    "shard": {"patches_per_pair": 1, "val_patches_per_pair": 1, "min_shards": 1, "workers": 1},
    "train_net": {"iterations": 4, "milestones": [4], "checkpoint_every": 2, "val_every": 2, "val_batches": 1,
                  "log_every": 2},
    "train_gan": {"iterations": 2, "checkpoint_every": 2, "val_every": 2, "val_batches": 1, "log_every": 2},
    "evaluate": {"max_images": 2, "grid_images": 2},
}
KEY, SECRET = "testing", "testing"   # moto takes any credentials; real ones never appear here


def _env() -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "AWS_EC2_METADATA_DISABLED": "true",   # botocore never asks a cloud metadata address
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def _run(cwd: Path, *cmd: str) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} in {cwd}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def _dvc(repo: Path, *args: str) -> str:
    return _run(repo, str(DVC), *args)


def _shrink(params_file: Path) -> None:
    params = read_yaml(params_file)
    for section, values in SMALL.items():
        params[section].update(values)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """The first teammate's project: run once, committed, its git history in a bare repo 'origin.git'."""
    if not DVC.is_file():
        pytest.skip(f"no dvc beside {sys.executable}")
    top = tmp_path_factory.mktemp("team")
    repo = top / "alice"
    repo.mkdir()
    _run(repo, "git", "init", "-q", "-b", "main")
    _dvc(repo, "init", "-q")
    dvc_project(repo, init=False)
    for name in ("models/net/live/.gitignore", "models/gan/live/.gitignore"):
        (repo / name).parent.mkdir(parents=True)
        shutil.copy(ROOT / name, repo / name)
    _shrink(repo / "params.yaml")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-q", "-m", "the project")   # dvclive's Live() fails in a repo with no commit
    out = _dvc(repo, "repro")
    assert [s for s in STAGES if f"Running stage '{s}'" not in out] == [], out
    assert sorted(p.name for p in (repo / "models" / "net" / "ckpt").iterdir()) != []  # resume state is there
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-q", "-m", "a small run")
    assert _run(repo, "git", "ls-files", "models/net/ckpt", "models/gan/ckpt", "models/net/live/plots") == ""
    _run(top, "git", "init", "-q", "--bare", "-b", "main", "origin.git")
    _run(repo, "git", "remote", "add", "origin", str(top / "origin.git"))
    return repo


def _publish(repo: Path, remote: str, *config: tuple[str, ...], local: tuple[tuple[str, ...], ...] = ()) -> None:
    """`dvc remote add` + `modify` (committed and pushed to git), `--local` settings, `dvc push`."""
    for args in config:
        _dvc(repo, "remote", *args)
    for args in local:
        _dvc(repo, "remote", "modify", "--local", remote, *args)
    _run(repo, "git", "commit", "-q", "-m", f"remote {remote}", ".dvc/config")
    _run(repo, "git", "push", "-q", "origin", "main")
    assert "pushed" in _dvc(repo, "push", "-r", remote)


def _teammate(origin: Path, name: str, remote: str, local: tuple[tuple[str, ...], ...] = ()) -> Path:
    """`git clone`, the remote's `--local` settings, `dvc pull`: what README tells a teammate to run."""
    clone = origin.parent / name
    _run(origin.parent, "git", "clone", "-q", str(origin.parent / "origin.git"), name)
    for args in local:
        _dvc(clone, "remote", "modify", "--local", remote, *args)
    assert not (clone / GENERATORS[0]).exists()
    _dvc(clone, "pull", "-r", remote)
    return clone


def _assert_clean(origin: Path, clone: Path) -> None:
    assert json.loads(_dvc(clone, "status", "--json")) == {}
    out = _dvc(clone, "repro")
    assert "Running stage" not in out, out
    assert [s for s in STAGES if f"Stage '{s}' didn't change, skipping" not in out] == [], out
    for path in GENERATORS:
        assert (clone / path).read_bytes() == (origin / path).read_bytes(), path
    for phase in ("net", "gan"):   # curves from the remote, metrics from git; resume state stays with origin
        assert (clone / f"models/{phase}/live/plots/metrics/val/psnr_y.tsv").is_file()
        assert json.loads((clone / f"models/{phase}/live/metrics.json").read_text())["step"] > 0
        assert not (clone / f"models/{phase}/ckpt").exists()
    assert json.loads(_dvc(clone, "status", "--json")) == {}


@pytest.mark.slow
def test_round_trip_through_a_local_folder_remote(origin):
    store = origin.parent / "nfs" / "realsynth-dvc"
    _publish(origin, "nfs", ("add", "nfs", str(store)))
    assert any(store.rglob("*")), f"nothing pushed to {store}"
    bob = _teammate(origin, "bob", "nfs")
    _assert_clean(origin, bob)
    shown = json.loads(_dvc(bob, "plots", "show", "--json"))   # curves from the remote, CSVs from git
    assert "errors" not in shown and shown["data"]["Training losses (Real-ESRNet, Real-ESRGAN)"], shown.get("errors")
    # the model registry's way: a version tag (what `gto register` makes), then one generator by name
    _run(origin, "git", "tag", "-a", "realesrgan@v0.1.0", "-m", "Registering artifact realesrgan version v0.1.0")
    _run(origin, "git", "push", "-q", "origin", "realesrgan@v0.1.0")
    got = origin.parent / "realesrgan.pth"
    _dvc(origin.parent, "artifacts", "get", str(origin.parent / "origin.git"), "realesrgan", "--remote", "nfs",
         "-o", str(got))
    assert got.read_bytes() == (origin / GENERATORS[1]).read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server():
    """moto's S3 API server on a free loopback port, with an empty bucket; stopped after the test."""
    import boto3   # comes with moto[server] (the test extra), as moto_server does
    port = _free_port()
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, f"moto_server did not listen on {url}"
                time.sleep(0.2)
        s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          region_name="us-east-1")
        s3.create_bucket(Bucket="team-bucket")
        yield url, s3
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.slow
def test_round_trip_through_an_s3_remote(origin, s3_server):
    url, s3 = s3_server
    creds = (("access_key_id", KEY), ("secret_access_key", SECRET))
    _publish(origin, "s3", ("add", "s3", "s3://team-bucket/realsynth"),
             ("modify", "s3", "endpointurl", url), ("modify", "s3", "region", "us-east-1"), local=creds)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team-bucket").get("Contents", [])]
    assert keys and all(k.startswith("realsynth/files/md5/") for k in keys), keys[:5]
    assert "secret_access_key" not in (origin / ".dvc" / "config").read_text()   # credentials stay out of git
    _assert_clean(origin, _teammate(origin, "carol", "s3", local=creds))


@pytest.mark.slow
def test_an_experiment_resumes_where_it_ran_and_travels_by_exp_push(origin):
    """`dvc exp run` resumes from the local ckpt/ (no DVC output, so DVC leaves it alone); `dvc exp push`
    sends the experiment's commit to git and its outputs to the remote; `dvc exp pull` in a clone gets both."""
    _publish(origin, "exps", ("add", "exps", str(origin.parent / "exps-store")))
    clone = _teammate(origin, "dave", "exps")
    try:
        out = _dvc(origin, "exp", "run", "-n", "longer", "-S", "train_net.iterations=6", "train_net")
        assert "resuming from models/net/ckpt/step_00000004.pt at step 4" in out, out
        _dvc(origin, "exp", "push", "-r", "exps", "origin", "longer")
    finally:   # back to the committed workspace for any test after this one
        _run(origin, "git", "reset", "-q", "--hard")
        _dvc(origin, "checkout", "--force")
    _dvc(clone, "exp", "pull", "-r", "exps", "origin", "longer")
    _dvc(clone, "exp", "apply", "longer")
    assert json.loads((clone / "models/net/live/metrics.json").read_text())["step"] == 6
    assert json.loads(_dvc(clone, "status", "train_net", "--json")) == {}
    assert "Running stage" not in _dvc(clone, "repro", "train_net")


def test_both_generators_are_model_artifacts(tmp_path):
    """What DVC's model registry tooling reads: `artifacts:` in dvc.yaml, labels following params.yaml."""
    from dvc.repo import Repo

    _run(tmp_path, "git", "init", "-q")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    _dvc(tmp_path, "init", "-q")
    params = read_yaml(tmp_path / "params.yaml")
    params.update(scale=2, degrade={**params["degrade"], "preset": "realesrgan-x2plus"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with Repo(str(tmp_path)) as repo:
        artifacts = repo.artifacts.read()["dvc.yaml"]
    assert sorted(artifacts) == ["realesrgan", "realesrnet"]
    for name, phase in (("realesrnet", "net"), ("realesrgan", "gan")):
        art = artifacts[name]
        assert (art.path, art.type) == (f"models/{phase}/generator.pth", "model")
        assert art.desc and {"preset:realesrgan-x2plus", "x2", "rrdbnet"} <= set(art.labels), art.labels
