"""Train a learned degrader: G maps clean LR (X) to the real LR's style (Y), by `cfg.method` (`dsgan.py`,
`cycle.py`; `config.py` says what each is).

    summary = learn_degradation(Path("real_lr"), Path("photos"), Path("out"), LearnConfig(scale=4))

Reproducible: the nets start from `torch.manual_seed(seed)` (forked, the caller's RNG untouched), each
step's crops and G's noise come from `rng_for(LEARNED, seed, step)` alone, the pools draw from their
own seeded generators (saved with them); the same seed and inputs give the same weights bytes on the
same CPU and thread count. `OUT/train.pth` (nets, optimizers, pools, losses, step, the selection
curve and best weights, the run's identity) is written atomically every `save_every` steps; a rerun
with the same identity resumes there, and ends with the bytes of an uninterrupted run. With
`holdout` > 0 an edge band of every image is held out and OUT/degrader.pth is the step whose G
comes closest to the held-out real LR, step 0 (G = identity) included (`select.py`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.io.atomic import atomic_write
from pipeline.seeding import LEARNED, rng_for

from . import cycle, dsgan
from .config import LearnConfig, Run
from .data import check_sizes, clean_lr, random_crops, read_folder
from .nets import draw_noise, to_tensor
from .op import DEGRADER_FORMAT, DEGRADER_KIND
from .select import GRID, HOLDOUT_SPLIT, Selector, best_point, holdout_bands

TRAIN_STATE = "train.pth"
DEGRADER = "degrader.pth"
METHOD_STEPS = {"dsgan": dsgan, "cyclegan": cycle}  # each: build(cfg), step(run, x, y, z, cfg), LOSSES
OPERATIONAL = ("steps", "save_every")  # how long and how often: changing them resumes the same run


def losses_of(method: str) -> tuple[str, ...]:
    """The loss names of a method's history rows (after the step number)."""
    return METHOD_STEPS[method].LOSSES


def build_run(cfg: LearnConfig) -> Run:
    return METHOD_STEPS[cfg.method].build(cfg)


def train_step(run: Run, xs: list[np.ndarray], ys: list[np.ndarray], cfg: LearnConfig) -> dict[str, float]:
    """Step `run.step`: its crops (X anywhere, Y on the 8 px grid) and G's noise, then the method's
    updates; appends the losses to the history."""
    rng = rng_for(LEARNED, cfg.seed, run.step)
    x = to_tensor(random_crops(xs, cfg.batch_size, cfg.crop, rng))
    y = to_tensor(random_crops(ys, cfg.batch_size, cfg.crop, rng, align=8))
    z = draw_noise(rng, cfg.noise, cfg.crop, cfg.crop, cfg.batch_size)
    method = METHOD_STEPS[cfg.method]
    losses = method.step(run, x, y, z, cfg)
    run.history.append([float(run.step)] + [losses[k] for k in method.LOSSES])
    run.step += 1
    return losses


# ---- checkpoints --------------------------------------------------------------------------------

def run_identity(cfg: LearnConfig, x_digest: str, y_digest: str) -> dict[str, Any]:
    """What a run computes: the config minus OPERATIONAL keys (as JSON reads it back: tuples as lists)
    the two input sets' digests and how selection splits them (`select.HOLDOUT_SPLIT`)."""
    config = json.loads(json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k not in OPERATIONAL}))
    return {"config": config, "hr_sha256": x_digest, "real_lr_sha256": y_digest, "holdout_split": HOLDOUT_SPLIT}


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def save_run(path: Path, run: Run, identity: dict[str, Any]) -> None:
    """The whole training state, written atomically (a kill leaves the previous one)."""
    state = {"step": run.step, "nets": {k: n.state_dict() for k, n in run.nets.items()},
             "optim_g": run.optim_g.state_dict(), "optim_d": run.optim_d.state_dict(),
             "pools": {k: p.state_dict() for k, p in run.pools.items()}, "history": run.history,
             "curve": run.curve, "best_params": run.best_params,
             "identity": json.dumps(identity, sort_keys=True), "identity_hash": identity_hash(identity)}
    atomic_write(path, lambda f: torch.save(state, f))


def load_run(path: Path, run: Run, identity: dict[str, Any]) -> None:
    """Resume `run` from `path` in place. Raises ValueError when the file is from another run."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("identity_hash") != identity_hash(identity):
        old = json.loads(state.get("identity", "{}"))
        diff = sorted(k for k in set(old.get("config", {})) | set(identity["config"])
                      if old.get("config", {}).get(k) != identity["config"].get(k))
        diff += [k for k in ("hr_sha256", "real_lr_sha256", "holdout_split") if old.get(k) != identity[k]]
        raise ValueError(f"{path}: a training state of another run (differs in {diff}); "
                         "pass --force to start over")
    for k, net in run.nets.items():
        net.load_state_dict(state["nets"][k], strict=True)
    run.optim_g.load_state_dict(state["optim_g"])
    run.optim_d.load_state_dict(state["optim_d"])
    for k, pool in run.pools.items():
        pool.load_state_dict(state["pools"][k], torch.device("cpu"))
    run.history = [list(map(float, h)) for h in state["history"]]
    run.curve = [list(map(float, p)) for p in state["curve"]]
    run.best_params = state["best_params"]
    run.step = int(state["step"])


def save_degrader(path: Path, net: nn.Module, cfg: LearnConfig, meta: dict[str, Any],
                  params: dict[str, Any] | None = None) -> None:
    """G alone (`params`, default the net's own), its options and what it was trained on: what the
    `learned` step loads."""
    params = net.state_dict() if params is None else params
    ckpt = {"kind": DEGRADER_KIND, "format": DEGRADER_FORMAT, "params": params, "opts": cfg.generator_opts(),
            "meta": {**meta, "scale": cfg.scale, "interp": cfg.interp, "crop": cfg.crop,
                                         "seed": cfg.seed, "method": cfg.method, "jpeg_quality": cfg.jpeg_quality}}
    atomic_write(path, lambda f: torch.save(ckpt, f))


def evaluate(run: Run, selector: Selector, cfg: LearnConfig, log: Callable[[str], None]) -> None:
    """Score G as it is now (`select.py`), append [step, distance] to the curve, and keep G's weights
    when this step is the best so far (strictly: the earliest step wins a tie)."""
    with tempfile.TemporaryDirectory(prefix="realsynth-learned-") as tmp:
        path = Path(tmp) / DEGRADER
        save_degrader(path, run.nets["g"], cfg, {"steps": run.step})
        d = selector.score(path)
    run.curve.append([float(run.step), d])
    if best_point(run.curve)[0] == run.step:
        run.best_params = {k: v.detach().clone() for k, v in run.nets["g"].state_dict().items()}
    log(f"step {run.step}: fingerprint distance to the held-out real LR {d:.4f}"
        + (" (G = identity: resize + codec)" if run.step == 0 else ""))


# ---- the run ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    steps: int
    resumed_from: int
    history: list[list[float]]
    clean: list[np.ndarray]     # domain X images G trained on (clean LR)
    real: list[np.ndarray]      # domain Y images G trained on (real LR)
    curve: list[list[float]]    # selection: [step, distance]; empty with holdout 0
    selected: int | None        # the step whose G is OUT/degrader.pth (None: the last, no selection)


@dataclass(frozen=True)
class Domains:
    xs: list[np.ndarray]        # clean LR of the training HR
    ys: list[np.ndarray]        # the training real LR
    selector: Selector | None   # scores G on the held-out bands (None with holdout 0)
    identity: dict[str, Any]


def read_domains(real_lr: Path, hr: Path, cfg: LearnConfig) -> Domains:
    """Both folders, each image split into its training rest and its held-out edge band
    (`select.holdout_bands`; bands on the 8 px LR grid), the training HR downscaled.
    Raises FileNotFoundError / ValueError (see `learn_degradation`)."""
    y_keys, ys, y_digest = read_folder(real_lr)
    x_keys, hrs, x_digest = read_folder(hr)
    x_rest, x_held = holdout_bands(x_keys, hrs, cfg.holdout, cfg.seed, "hr", GRID * cfg.scale,
                                   cfg.crop * cfg.scale, f"{hr} (HR px; the crop is {cfg.crop} LR px at x{cfg.scale})")
    y_rest, y_held = holdout_bands(y_keys, ys, cfg.holdout, cfg.seed, "real_lr", GRID, cfg.crop, str(real_lr))
    xs = [clean_lr(img, cfg.scale, cfg.interp) for img in x_rest]
    check_sizes(x_keys, xs, cfg.crop, f"{hr} (downscaled x{cfg.scale})")
    check_sizes(y_keys, y_rest, cfg.crop, str(real_lr))
    selector = Selector(cfg, x_keys, x_held, y_held) if x_held else None
    return Domains(xs, y_rest, selector, run_identity(cfg, x_digest, y_digest))


def learn_degradation(real_lr: Path, hr: Path, out: Path, cfg: LearnConfig,
                      log: Callable[[str], None] = lambda s: None) -> Summary:
    """Train (or resume) in `out`; writes out/train.pth as it goes and out/degrader.pth at the end:
    the best step's G on the held-out bands (`select.py`), or the last G with holdout 0.

    Raises:
        FileNotFoundError: a missing or empty input folder.
        ValueError: an image smaller than the crop, or than a band and the crop;
            out/train.pth from another run.
    """
    dom = read_domains(real_lr, hr, cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        run = build_run(cfg)
        state = Path(out) / TRAIN_STATE
        if state.is_file():
            load_run(state, run, dom.identity)
            log(f"learn-degradation: resuming {state} at step {run.step}")
        start = run.step
        if dom.selector and not run.curve:
            evaluate(run, dom.selector, cfg, log)
        while run.step < cfg.steps:
            losses = train_step(run, dom.xs, dom.ys, cfg)
            if dom.selector and (run.step % cfg.eval_every == 0 or run.step == cfg.steps):
                evaluate(run, dom.selector, cfg, log)
            if run.step % cfg.save_every == 0 or run.step == cfg.steps:
                save_run(state, run, dom.identity)
                log(f"step {run.step}/{cfg.steps}: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    finally:
        torch.set_num_threads(threads)
    meta = {"steps": run.step, "hr_sha256": dom.identity["hr_sha256"], "real_lr_sha256": dom.identity["real_lr_sha256"]}
    selected = None
    if run.curve:
        step, best = best_point(run.curve)
        selected = int(step)
        meta.update(selected_step=selected, distance=best, identity_distance=run.curve[0][1])
    save_degrader(Path(out) / DEGRADER, run.nets["g"], cfg, meta, params=run.best_params if run.curve else None)
    return Summary(run.step, start, run.history, dom.xs, dom.ys, run.curve, selected)
