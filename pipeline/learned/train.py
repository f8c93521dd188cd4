"""Train the CycleGAN degrader: G maps clean LR (X) to the real LR's style (Y), F maps back.

    summary = learn_degradation(Path("real_lr"), Path("photos"), Path("out"), LearnConfig(scale=4))

Per step (Zhu et al. 2017): crops x ~ X, y ~ Y; G's and F's step minimises
    LSGAN(D_Y(G(x)), 1) + LSGAN(D_X(F(y)), 1)                     (adversarial)
  + λ_cyc·(|F(G(x)) - x|₁ + |G(F(y)) - y|₁)                        (cycle consistency)
  + λ_cyc·λ_idt·(|G(y) - y|₁ + |F(x) - x|₁)                        (identity; λ_idt 0 disables)
then D_X and D_Y each minimise ½[(D(real) - 1)² + D(pool(fake))²]. Adam(2e-4, β 0.5/0.999) for the
generators together and for the discriminators together; the paper's linear lr decay is left out (runs
here are short). Discriminators: pix2pix PatchGAN (`build_discriminator('patchgan')`) with instance norm.

Reproducible: the nets start from `torch.manual_seed(seed)` (forked, the caller's RNG untouched), each
step's crops and pool choices come from (seed, step) alone, nothing else draws at random; the same
seed and inputs give the same weights bytes on the same CPU and thread count. `OUT/train.pth`
(nets, optimizers, pools, losses, step, the run's identity) is written atomically every `save_every`
steps; a rerun with the same identity resumes there, and ends with the bytes of an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.io.atomic import atomic_write
from pipeline.losses.gan import d_loss, g_loss
from pipeline.models import build_discriminator
from pipeline.models.cyclegan import CycleGANGenerator

from .data import INTERPS, check_sizes, clean_lr, random_crops, read_folder, step_rng
from .op import DEGRADER_KIND
from .pool import FakePool

TRAIN_STATE = "train.pth"
DEGRADER = "degrader.pth"
LOSSES = ("g_adv", "g_cycle", "g_identity", "d_x", "d_y")
OPERATIONAL = ("steps", "save_every")  # how long and how often: changing them resumes the same run


@dataclass(frozen=True)
class LearnConfig:
    """A learn-degradation run. Raises ValueError (naming the key) on a bad value."""
    scale: int = 4              # SR factor: X is the HR downscaled by it
    interp: str = "area"        # HR → clean LR resize (the preset's `resize_lr` must use the same)
    crop: int = 32              # LR px, square crops from both domains
    batch_size: int = 4
    steps: int = 400
    save_every: int = 50        # steps between training checkpoints
    seed: int = 0
    num_feat: int = 32          # generator width
    num_block: int = 4          # generator ResNet blocks
    num_down: int = 0           # generator downsamplings (the paper: 2)
    d_feat: int = 32            # PatchGAN width
    d_layers: int = 2           # PatchGAN stride-2 convs (crop must be >= 3·2^d_layers)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # × lambda_cycle, the paper's convention; 0 disables
    pool_size: int = 50           # past fakes shown to the discriminators; 0 disables
    threads: int = 1              # torch CPU threads during the run: part of what decides the bytes

    def __post_init__(self) -> None:
        positive = ("scale", "crop", "batch_size", "steps", "save_every", "num_feat", "d_feat", "d_layers", "threads")
        for key in positive:
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key}: expected a positive integer, got {getattr(self, key)!r}")
        for key in ("seed", "num_block", "num_down", "pool_size"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                raise ValueError(f"{key}: expected an integer >= 0, got {getattr(self, key)!r}")
        for key in ("lr", "lambda_cycle", "lambda_identity"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key}: expected a number >= 0, got {getattr(self, key)!r}")
        if self.interp not in INTERPS:
            raise ValueError(f"interp: expected one of {list(INTERPS)}, got {self.interp!r}")
        if self.crop < 3 * 2 ** self.d_layers:
            raise ValueError(f"crop: expected at least {3 * 2 ** self.d_layers} px for d_layers={self.d_layers}, "
                             f"got {self.crop}")

    def generator_opts(self) -> dict[str, Any]:
        return {"num_feat": self.num_feat, "num_block": self.num_block, "num_down": self.num_down}


@dataclass
class Run:
    """What the loop carries: nets g, f, dx, dy; two optimizers; two pools; losses; the next step."""
    nets: dict[str, nn.Module]
    optim_g: torch.optim.Optimizer
    optim_d: torch.optim.Optimizer
    pools: dict[str, FakePool]
    history: list[list[float]]
    step: int = 0


def build_run(cfg: LearnConfig) -> Run:
    """Nets (built in the order g, f, dx, dy from torch.manual_seed(seed)), optimizers, empty pools."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        nets = {"g": CycleGANGenerator(**cfg.generator_opts()), "f": CycleGANGenerator(**cfg.generator_opts())}
        for name in ("dx", "dy"):
            nets[name] = build_discriminator("patchgan", num_feat=cfg.d_feat, n_layers=cfg.d_layers, norm="instance")
    betas = (cfg.beta1, cfg.beta2)
    optim_g = torch.optim.Adam([*nets["g"].parameters(), *nets["f"].parameters()], lr=cfg.lr, betas=betas)
    optim_d = torch.optim.Adam([*nets["dx"].parameters(), *nets["dy"].parameters()], lr=cfg.lr, betas=betas)
    return Run(nets, optim_g, optim_d, {"x": FakePool(cfg.pool_size), "y": FakePool(cfg.pool_size)}, [])


def g_step(run: Run, x: Tensor, y: Tensor, cfg: LearnConfig) -> tuple[dict[str, float], Tensor, Tensor]:
    """One generator update; returns (losses, G(x), F(y))."""
    g, f, dx, dy = (run.nets[k] for k in ("g", "f", "dx", "dy"))
    for d in (dx, dy):
        d.requires_grad_(False)
    fake_y, fake_x = g(x), f(y)
    adv = g_loss("lsgan", dy(fake_y)) + g_loss("lsgan", dx(fake_x))
    cycle = (f(fake_y) - x).abs().mean() + (g(fake_x) - y).abs().mean()
    identity = (g(y) - y).abs().mean() + (f(x) - x).abs().mean() if cfg.lambda_identity > 0 else torch.zeros(())
    total = adv + cfg.lambda_cycle * cycle + cfg.lambda_cycle * cfg.lambda_identity * identity
    run.optim_g.zero_grad(set_to_none=True)
    total.backward()
    run.optim_g.step()
    for d in (dx, dy):
        d.requires_grad_(True)
    return {"g_adv": adv.item(), "g_cycle": cycle.item(), "g_identity": identity.item()}, fake_y, fake_x


def d_step(run: Run, x: Tensor, y: Tensor, fake_x: Tensor, fake_y: Tensor, rng: np.random.Generator) -> dict[str, float]:
    """One update of both discriminators on real crops and pooled fakes (½ of the LSGAN loss each)."""
    dx, dy = run.nets["dx"], run.nets["dy"]
    loss_y = 0.5 * d_loss("lsgan", dy(y), dy(run.pools["y"](fake_y, rng)))
    loss_x = 0.5 * d_loss("lsgan", dx(x), dx(run.pools["x"](fake_x, rng)))
    run.optim_d.zero_grad(set_to_none=True)
    (loss_x + loss_y).backward()
    run.optim_d.step()
    return {"d_x": loss_x.item(), "d_y": loss_y.item()}


def to_tensor(batch: np.ndarray) -> Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(batch.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0))


def train_step(run: Run, xs: list[np.ndarray], ys: list[np.ndarray], cfg: LearnConfig) -> dict[str, float]:
    """Step `run.step`: its crops, a G step, a D step; appends the losses to the history."""
    crops = step_rng(cfg.seed, run.step, 0)
    x = to_tensor(random_crops(xs, cfg.batch_size, cfg.crop, crops))
    y = to_tensor(random_crops(ys, cfg.batch_size, cfg.crop, crops))
    losses, fake_y, fake_x = g_step(run, x, y, cfg)
    losses.update(d_step(run, x, y, fake_x, fake_y, step_rng(cfg.seed, run.step, 1)))
    run.history.append([float(run.step)] + [losses[k] for k in LOSSES])
    run.step += 1
    return losses


# ---- checkpoints --------------------------------------------------------------------------------

def run_identity(cfg: LearnConfig, x_digest: str, y_digest: str) -> dict[str, Any]:
    """What a run computes: the config minus OPERATIONAL keys and the two input sets' digests."""
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in OPERATIONAL}
    return {"config": config, "hr_sha256": x_digest, "real_lr_sha256": y_digest}


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def save_run(path: Path, run: Run, identity: dict[str, Any]) -> None:
    """The whole training state, written atomically (a kill leaves the previous one)."""
    state = {"step": run.step, "nets": {k: n.state_dict() for k, n in run.nets.items()},
             "optim_g": run.optim_g.state_dict(), "optim_d": run.optim_d.state_dict(),
             "pools": {k: p.state_dict() for k, p in run.pools.items()}, "history": run.history,
             "identity": json.dumps(identity, sort_keys=True), "identity_hash": identity_hash(identity)}
    atomic_write(path, lambda f: torch.save(state, f))


def load_run(path: Path, run: Run, identity: dict[str, Any]) -> None:
    """Resume `run` from `path` in place. Raises ValueError when the file is from another run."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("identity_hash") != identity_hash(identity):
        old = json.loads(state.get("identity", "{}"))
        diff = sorted(k for k in set(old.get("config", {})) | set(identity["config"])
                      if old.get("config", {}).get(k) != identity["config"].get(k))
        diff += [k for k in ("hr_sha256", "real_lr_sha256") if old.get(k) != identity[k]]
        raise ValueError(f"{path}: a training state of another run (differs in {diff}); "
                         "pass --force to start over")
    for k, net in run.nets.items():
        net.load_state_dict(state["nets"][k], strict=True)
    run.optim_g.load_state_dict(state["optim_g"])
    run.optim_d.load_state_dict(state["optim_d"])
    for k, pool in run.pools.items():
        pool.load_state_dict(state["pools"][k])
    run.history = [list(map(float, h)) for h in state["history"]]
    run.step = int(state["step"])


def save_degrader(path: Path, net: nn.Module, cfg: LearnConfig, meta: dict[str, Any]) -> None:
    """G alone (`params`), its options and what it was trained on: what the `learned` step loads."""
    ckpt = {"kind": DEGRADER_KIND, "params": net.state_dict(), "opts": cfg.generator_opts(),
            "meta": {**meta, "scale": cfg.scale, "interp": cfg.interp, "crop": cfg.crop, "seed": cfg.seed}}
    atomic_write(path, lambda f: torch.save(ckpt, f))


# ---- the run ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    steps: int
    resumed_from: int
    history: list[list[float]]
    clean: list[np.ndarray]     # domain X images (clean LR)
    real: list[np.ndarray]      # domain Y images (real LR)


def learn_degradation(real_lr: Path, hr: Path, out: Path, cfg: LearnConfig,
                      log: Callable[[str], None] = lambda s: None) -> Summary:
    """Train (or resume) in `out`; writes out/train.pth as it goes and out/degrader.pth at the end.

    Raises:
        FileNotFoundError: a missing or empty input folder.
        ValueError: an image smaller than the crop; out/train.pth from another run.
    """
    y_keys, ys, y_digest = read_folder(real_lr)
    x_keys, hrs, x_digest = read_folder(hr)
    xs = [clean_lr(img, cfg.scale, cfg.interp) for img in hrs]
    check_sizes(x_keys, xs, cfg.crop, f"{hr} (downscaled x{cfg.scale})")
    check_sizes(y_keys, ys, cfg.crop, str(real_lr))
    identity = run_identity(cfg, x_digest, y_digest)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        run = build_run(cfg)
        state = Path(out) / TRAIN_STATE
        if state.is_file():
            load_run(state, run, identity)
            log(f"learn-degradation: resuming {state} at step {run.step}")
        start = run.step
        while run.step < cfg.steps:
            losses = train_step(run, xs, ys, cfg)
            if run.step % cfg.save_every == 0 or run.step == cfg.steps:
                save_run(state, run, identity)
                log(f"step {run.step}/{cfg.steps}: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    finally:
        torch.set_num_threads(threads)
    save_degrader(Path(out) / DEGRADER, run.nets["g"], cfg, {"steps": run.step, "hr_sha256": x_digest,
                                                             "real_lr_sha256": y_digest})
    return Summary(run.step, start, run.history, xs, ys)
