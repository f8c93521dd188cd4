"""The training loop of both phases, top to bottom (nanoGPT's train.py is the model).

    report = train(cfg, pairs_dir=Path("data/pairs"), out_dir=Path("models/net"), scale=4, seed=0,
                   phase="net", init_from=None)

`train` reads: checks → DDP/device (`ddp.distributed`, a context manager) → resume decision → nets and
optimizers → losses → resume → compile/wrap → data → logging → `for step in range(start, cfg.iterations)`
(lr, batch through the pair pool, targets, G update, D update, EMA, log, validate, checkpoint) → export. Run it under
`torchrun --nproc_per_node=N` for DDP: every rank trains on its share of each epoch with `batch_size`
samples per step; rank 0 logs, validates and writes checkpoints and the export.

Names: `net_g`, `net_d` are the plain modules (what the optimizers step, the EMA reads and the
checkpoints save); `model_g`, `model_d` are what the G and D updates train through (`torch.compile`d
when `compile`, and G in DDP under torchrun; D's gradients are all-reduced by `steps.all_reduce_grads`);
`net_g_ema` is the EMA copy, exported as `params_ema`.

Outputs in `out_dir`: `generator.pth` (`params_ema`, `params`, `meta`), `ckpt/step_*.pt`
(resume state, see `checkpoint`), `live/` (dvclive, see `live`).
"""
from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from pipeline.data.loader import LoaderState, make_loader
from pipeline.data.online import OnlineSpec, train_stream
from pipeline.losses import PerceptualLoss, build_pixel_loss
from pipeline.models import build_discriminator, build_generator
from pipeline.models.prosr import ProgressiveRRDBNet, without_heads
from pipeline.io.atomic import sweep_stale
from pipeline.io.shards import INDEX, is_shard_set
from pipeline.train.checkpoint import (clear_checkpoints, config_hash, cpu_state, describe_change, export_generator,
                                       gather_ranks, load_latest, remove_partial, run_identity, save_checkpoint,
                                       set_rng_state, training_state)
from pipeline.train.config import TrainConfig
from pipeline.train.ddp import distributed
from pipeline.train.ema import ema_decay_at, make_ema, update_ema
from pipeline.train.live import TrainLog
from pipeline.train.optim import build_optimizer
from pipeline.train.pool import PairPool, rank_image_pool
from pipeline.train.progressive import Growth
from pipeline.train.steps import (Criteria, Targets, d_step, g_step, has_spectral_norm, lr_at, make_targets,
                                  set_lr)
from pipeline.train.validate import upscale_batches


class NonFiniteLossError(RuntimeError):
    """Training stopped after `max_nonfinite` non-finite steps in a row."""


def train(cfg: TrainConfig, *, pairs_dir: Path, out_dir: Path, scale: int, seed: int, phase: str,
          init_from: Path | None = None, online: OnlineSpec | None = None) -> dict[str, Any]:
    """Train one phase ('net': pixel loss only; 'gan': + perceptual + adversarial) and export the generator;
    resume from `out_dir/ckpt` when the stored config hash matches (else start fresh, saying why). Returns
    {"step", "start_step", "skipped_steps", "val_psnr_y", "val_psnr_y_bicubic", "generator", "seconds"}.
    Raises FileNotFoundError (no training pairs; gan: no init_from file, naming the stage to run), ValueError
    (phase disagrees with cfg; init weights that do not fit the generator; bf16 without CUDA) and
    NonFiniteLossError (`cfg.max_nonfinite` non-finite steps in a row). `online`: see `data.online`.
    """
    t0, tag, out_dir = time.time(), f"train_{phase}", Path(out_dir)
    train_dir, val_dir, init_from = _check_inputs(cfg, phase, Path(pairs_dir), init_from, online)
    ckpt_dir, export = out_dir / "ckpt", out_dir / "generator.pth"
    with distributed(cfg.device) as (ddp, rank, world_size, device):
        master, say = rank == 0, (print if rank == 0 else _silent)  # rank 0 logs, validates, checkpoints, exports
        autocast, bf16, fmt = _precision(cfg, device, tag, say)
        base_seed = seed + cfg.seed_offset
        growth = Growth.of(cfg, scale=scale, tag=tag, say=say)  # ProSR stages; None unless progressive.enabled

        # -- resume or start fresh: the stored config hash decides ------------------------------
        config = cfg.to_dict()
        run = run_identity(config, scale=scale, seed=seed, world_size=world_size, init_from=init_from,
                           train_index=online.index if online else train_dir / INDEX) | _online_identity(online)
        ckpt = _matching_checkpoint(ckpt_dir, run, cfg.iterations, ddp=ddp, master=master, say=say, tag=tag)

        # -- nets and optimizers (built from the base seed, so every rank starts identical), losses --
        torch.manual_seed(base_seed)
        net_g, net_g_ema, net_d, opt_g, opt_d = _build_nets(cfg, scale, device, fmt, tag=tag,
                                                            init_from=init_from if ckpt is None else None)
        crit = _criteria(cfg, device, fmt)

        # -- maybe resume (a fresh run seeds each rank apart from here on), compile and wrap -------
        pool = PairPool(cfg.pair_pool_size)
        start, nonfinite, skipped, loader_state = _resume(ckpt, net_g, net_g_ema, net_d, opt_g, opt_d, pool, rank=rank,
                                                          device=device, seed=base_seed + rank, say=say, tag=tag)
        fake_pool = rank_image_pool(cfg.fake_pool_size, ckpt, seed=base_seed, rank=rank, device=device)
        del ckpt
        model_g, model_d = _compile_and_wrap(net_g, net_d, compile=cfg.compile, ddp=ddp, device=device)

        # -- data (the stream's position is global: the same on every rank), logging (rank 0) ----
        stream = train_stream(train_dir, online, batch_size=cfg.batch_size, workers=cfg.workers, seed=base_seed,
                              rank=rank, world_size=world_size, state=loader_state, augment=cfg.augment)
        log = TrainLog(out_dir / "live", resume_step=start, val=_val_batches(val_dir, cfg, base_seed, tag), scale=scale,
                       upscale=partial(upscale_batches, net_g_ema, device=device, autocast=autocast, memory_format=fmt),
                       tag=tag, iterations=cfg.iterations) if master else None
        targets = _targets(cfg, conditional=cfg.gan.conditional and net_d is not None)  # make_targets(hr, lr)
        lr_of = partial(lr_at, warmup=cfg.warmup, milestones=cfg.milestones, gamma=cfg.gamma)
        meta = {"name": cfg.generator.name, "opts": dict(cfg.generator.opts), "scale": scale, "phase": phase}
        say(_banner(cfg, tag, scale, device, world_size, start, bf16))

        for step in range(start, cfg.iterations):
            lr_g = set_lr(opt_g, lr_of(step, cfg.lr_g))
            lr_d = set_lr(opt_d, lr_of(step, cfg.lr_d)) if opt_d is not None else None
            t = targets(*_next_pair(stream, pool, device, fmt))
            t = growth.step(net_g, step, t) if growth else t  # progressive: the step's stage on G, targets to its scale

            # G update (WGAN critics: only every d_steps-th step), D update, EMA; a non-finite loss skips all
            if net_d is None or step % cfg.d_steps == 0:
                # G's loss runs the plain D (net_d): g_step freezes it, which would recompile a compiled one
                g = g_step(model_g, net_d, opt_g, t, crit, autocast=autocast, grad_clip=cfg.grad_clip, ddp=ddp)
                ok, sr, losses = (True, g.sr, dict(g.losses)) if g is not None else (False, None, {})
            else:  # D's fakes from the current G, which is not updated
                ok, sr, losses = True, _generate(net_g, t.lr, autocast), {}
            if ok and model_d is not None:
                d = d_step(model_d, opt_d, sr, t, crit, autocast=autocast, grad_clip=cfg.grad_clip, ddp=ddp,
                           world_size=world_size, fake_pool=fake_pool)
                ok = d is not None
                losses.update(d or {})
            if ok:
                update_ema(net_g_ema, net_g, ema_decay_at(step + 1, cfg.ema_decay, cfg.ema_warmup))
                nonfinite = 0
            else:
                nonfinite, skipped = nonfinite + 1, skipped + 1
                _check_nonfinite(nonfinite, step + 1, cfg.max_nonfinite, tag, ckpt_dir, say)

            # -- bookkeeping: loss averages every log_every steps, validation, checkpoint ---------
            done = step + 1
            if master:
                log.add(losses)
                if done % cfg.log_every == 0 or done == cfg.iterations:
                    log.log_window(done, lr_g=lr_g, lr_d=lr_d, skipped=skipped)
                if log.val and cfg.val_every and done % cfg.val_every == 0:
                    log.validate(done)
            if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
                ranks = gather_ranks(pool, ddp=ddp, world_size=world_size, fake_pool=fake_pool)  # RNGs, pools
                if master:
                    save_checkpoint(ckpt_dir, done, training_state(
                        net_g=net_g, net_g_ema=net_g_ema, net_d=net_d, opt_g=opt_g, opt_d=opt_d,
                        schedule=_schedule(cfg, growth, done), step=done, nonfinite=nonfinite, skipped_total=skipped,
                        loader=stream.state.to_dict(), ranks=ranks, config=config, run=run, meta=meta), cfg.keep_last)

        # -- the end: final validation (unless just done), export --------------------------------
        stream.close()
        if master:
            log.finish(start)
            export_generator(export, _plain_state(net_g), _plain_state(net_g_ema), {**meta, "step": cfg.iterations})
            say(f"{tag}: exported {export} (params_ema, params) after {cfg.iterations} steps")
    return {"step": cfg.iterations, "start_step": start, "skipped_steps": skipped,
            "val_psnr_y": log.psnr_last if log else float("nan"),
            "val_psnr_y_bicubic": log.psnr_bicubic if log else float("nan"),
            "generator": str(export), "seconds": time.time() - t0}


# ---- numerics ----------------------------------------------------------------------------------------------

def _precision(cfg: TrainConfig, device: torch.device, tag: str,
               say: Callable[..., None]) -> tuple[Callable[[], Any], bool, torch.memory_format]:
    """(autocast: a context-manager factory for the forwards, whether it is bf16, the nets' memory format).

    bf16 autocast for amp 'bf16', or 'auto' on a CUDA device with bf16; else nullcontext.
    Raises ValueError for bf16 off CUDA.
    """
    bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    if bf16 and device.type != "cuda":
        raise ValueError(f"{tag}.amp: bf16 autocast needs a CUDA device, got device {device.type!r}")
    if cfg.reproducible and device.type == "cuda":
        say(f"{tag}: reproducible pins CPU numerics only; CUDA kernels differ between GPU models")
    autocast = partial(torch.autocast, "cuda", dtype=torch.bfloat16) if bf16 else nullcontext
    return autocast, bf16, torch.channels_last if cfg.channels_last else torch.contiguous_format


# ---- setup: inputs, resume, nets, losses, data ------------------------------------------------------

def _check_inputs(cfg: TrainConfig, phase: str, pairs_dir: Path, init_from: Path | None,
                  online: OnlineSpec | None = None) -> tuple[Path, Path, Path | None]:
    """(train set, val set, init_from: the net-phase export in the gan phase, None in the net phase).

    Raises:
        ValueError: phase disagrees with cfg; `online` given without `cfg.online` or the other way round.
        FileNotFoundError: no training pairs (offline) or HR tiles (online); (gan) no init_from file, naming
            the stage to run.
    """
    if phase != cfg.phase:
        raise ValueError(f"phase {phase!r} does not match the config's phase {cfg.phase!r}")
    if cfg.online != (online is not None):
        raise ValueError(f"train_{phase}.online is {cfg.online} but {'no' if online is None else 'an'} online spec "
                         f"(HR set, preset) was given")
    train_dir, val_dir = pairs_dir / "train", pairs_dir / "val"
    if online is not None and not is_shard_set(online.hr_dir):
        raise FileNotFoundError(f"{online.hr_dir}: no HR tiles ({INDEX} missing); run `dvc repro ingest`")
    if online is None and not is_shard_set(train_dir):
        raise FileNotFoundError(f"{train_dir}: no training pairs ({INDEX} missing); run `dvc repro shard`")
    if phase != "gan":
        return train_dir, val_dir, None
    if init_from is None or not Path(init_from).is_file():
        raise FileNotFoundError(f"{init_from}: net-phase generator not found; run `dvc repro train_net` "
                                f"first (or set train_gan.init_from)")
    return train_dir, val_dir, Path(init_from)


def _matching_checkpoint(ckpt_dir: Path, run: dict[str, Any], iterations: int, *, ddp: bool, master: bool,
                         say: Callable[..., None], tag: str) -> dict[str, Any] | None:
    """The latest checkpoint if it was made with this run's config hash and is not past `iterations`, else
    None (rank 0 then deletes the checkpoints, saying why: a shorter run, e.g. a quick `dvc exp run`, must not
    export a longer run's weights). Rank 0 also removes what a kill during a checkpoint or export write left."""
    ckpt, note = load_latest(ckpt_dir)
    if note:
        say(f"{tag}: {note}")
    if ddp:
        dist.barrier()  # every rank has read the checkpoint before rank 0 may clear it
    if ckpt is not None and ckpt.get("config_hash") != config_hash(run):
        change = describe_change(ckpt.get("run", {}), run) or "unknown difference"
        say(f"{tag}: starting fresh: {ckpt['path']} was made with another config ({change})")
        ckpt = None
    elif ckpt is not None and int(ckpt["step"]) > iterations:
        say(f"{tag}: starting fresh: {ckpt['path']} is at step {ckpt['step']}, past {tag}.iterations {iterations}")
        ckpt = None
    if ckpt is None and master:
        clear_checkpoints(ckpt_dir)
    if master:
        remove_partial(ckpt_dir)
        sweep_stale(ckpt_dir.parent / "generator.pth")
    return ckpt


def _build_nets(cfg: TrainConfig, scale: int, device: torch.device, memory_format: torch.memory_format, *,
                tag: str, init_from: Path | None) -> tuple[nn.Module, nn.Module, nn.Module | None,
                                                           torch.optim.Optimizer, torch.optim.Optimizer | None]:
    """(net_g, net_g_ema, net_d, opt_g, opt_d) in training mode on `device`; D and opt_d are None without
    an adversarial loss. `init_from`: the net-phase export G (and so the EMA) starts from."""
    net_g = (ProgressiveRRDBNet(scale=scale, **cfg.generator.opts) if cfg.progressive.enabled
             else build_generator(cfg.generator.name, scale=scale, **cfg.generator.opts))
    if init_from is not None:
        _load_init(net_g, init_from, tag)
    net_g.to(device, memory_format=memory_format).train()
    net_g_ema = make_ema(net_g)  # params_ema; in the gan phase it starts at the net phase's EMA weights
    net_d = None
    if cfg.phase == "gan" and cfg.gan.weight > 0:
        net_d = build_discriminator(cfg.discriminator.name, **cfg.discriminator.opts)
        net_d.to(device, memory_format=memory_format).train()
    opt_g = torch.optim.Adam(net_g.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = build_optimizer(net_d.parameters(), cfg.optim_d.name, lr=cfg.lr_d, betas=cfg.betas,
                            alpha=cfg.optim_d.alpha) if net_d is not None else None
    return net_g, net_g_ema, net_d, opt_g, opt_d


def _load_init(net: nn.Module, path: Path, tag: str) -> None:
    """Load the net phase's export into the gan phase's generator: `params_ema`, else `params`, strictly.

    Raises:
        ValueError: the file has neither key, or its tensors do not fit the generator of this config.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    key = "params_ema" if "params_ema" in state else "params" if "params" in state else None
    if key is None:
        raise ValueError(f"{path}: expected a generator export with 'params_ema' or 'params', "
                         f"got keys {sorted(state)[:5]}")
    try:
        net.load_state_dict(state[key], strict=True)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:300]
        raise ValueError(f"{path}: its {key} do not fit {tag}.generator (train_net and train_gan must use the "
                         f"same generator name and opts): {first}") from None


def _criteria(cfg: TrainConfig, device: torch.device, memory_format: torch.memory_format) -> Criteria:
    """The losses of the config (a 0 weight turns one off; no VGG is built without a perceptual loss)."""
    perceptual = None
    if cfg.perceptual.weight > 0 or cfg.perceptual.style_weight > 0:
        perceptual = PerceptualLoss(dict(cfg.perceptual.layer_weights), weights=cfg.perceptual.weights or None,
                                    perceptual_weight=cfg.perceptual.weight, style_weight=cfg.perceptual.style_weight,
                                    criterion=cfg.perceptual.criterion, sha256=cfg.perceptual.sha256 or None,
                                    ).to(device, memory_format=memory_format)
    return Criteria(pixel=build_pixel_loss(cfg.pixel_loss.kind) if cfg.pixel_loss.weight > 0 else None,
                    pixel_weight=cfg.pixel_loss.weight, perceptual=perceptual, gan_kind=cfg.gan.kind,
                    gan_weight=cfg.gan.weight, label_smoothing=cfg.gan.label_smoothing,
                    gp_weight=cfg.gan.gp_weight, clip=cfg.gan.clip)


def _resume(ckpt: dict[str, Any] | None, net_g: nn.Module, net_g_ema: nn.Module, net_d: nn.Module | None,
            opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None, pool: PairPool, *, rank: int,
            device: torch.device, seed: int, say: Callable[..., None], tag: str) -> tuple[int, int, int, LoaderState]:
    """Load `ckpt` into the nets, optimizers, this rank's RNGs and pool; without one, seed this rank's
    torch, NumPy and Python RNGs with `seed` (from here on each rank draws its own numbers).

    Returns (step, non-finite steps in a row, skipped steps in all, the data stream's position).
    """
    if ckpt is None:
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        return 0, 0, 0, LoaderState()
    net_g.load_state_dict(ckpt["params"])
    net_g_ema.load_state_dict(ckpt["params_ema"])
    opt_g.load_state_dict(ckpt["optim_g"])
    if net_d is not None:
        net_d.load_state_dict(ckpt["net_d"])
        opt_d.load_state_dict(ckpt["optim_d"])
    mine = ckpt["ranks"][rank]
    set_rng_state(mine["rng"])
    if mine["pool"] is not None:
        pool.load_state_dict(mine["pool"], device)
    say(f"{tag}: resuming from {ckpt['path']} at step {int(ckpt['step'])}")
    return (int(ckpt["step"]), int(ckpt["nonfinite"]), int(ckpt["skipped_total"]),
            LoaderState.from_dict(ckpt["loader"]))


def _online_identity(online: OnlineSpec | None) -> dict[str, Any]:
    """What decides an online run's samples besides the seed (HR index, preset, geometry, backend)."""
    return {"online": online.identity()} if online else {}


def _compile_and_wrap(net_g: nn.Module, net_d: nn.Module | None, *, compile: bool, ddp: bool,
                      device: torch.device) -> tuple[nn.Module, nn.Module | None]:
    """(model_g, model_d): the nets `torch.compile`d when `compile`, G in DDP under torchrun. D is not in
    DDP: it runs several forwards per step and a double backward for wgan-gp (steps.all_reduce_grads). A D with
    spectral norm stays uncompiled (`steps.has_spectral_norm`; README "Known limits"). A progressive G leaves
    the layers of its other stages without gradients: DDP is told to expect that."""
    model_g = torch.compile(net_g) if compile else net_g
    if ddp:
        model_g = DDP(model_g, device_ids=[device.index] if device.type == "cuda" else None,
                      find_unused_parameters=isinstance(net_g, ProgressiveRRDBNet))
    model_d = torch.compile(net_d) if compile and net_d is not None and not has_spectral_norm(net_d) else net_d
    return model_g, model_d


def _val_batches(val_dir: Path, cfg: TrainConfig, seed: int, tag: str) -> list[dict[str, Any]]:
    """The first `cfg.val_batches` val batches in stored order, the same at every validation ([] without
    val pairs, saying so)."""
    val: list[dict[str, Any]] = []
    if is_shard_set(val_dir):
        with torch.random.fork_rng(devices=[]):  # see _next_pair
            val = list(itertools.islice(make_loader(val_dir, batch_size=cfg.batch_size, workers=0, seed=seed,
                                                    shuffle=False, augment=False), cfg.val_batches))
    if not val:
        print(f"{tag}: no val pairs in {val_dir}; validation is skipped")
    return val


def _targets(cfg: TrainConfig, *, conditional: bool) -> Callable[[Tensor, Tensor], Targets]:
    """`make_targets(hr, lr)` with the config's USM and which losses compare with the sharpened HR."""
    return partial(make_targets, usm={"size": cfg.usm.size, "weight": cfg.usm.weight, "threshold": cfg.usm.threshold},
                   pixel_usm=cfg.pixel_loss.target_usm, perceptual_usm=cfg.perceptual.target_usm,
                   gan_usm=cfg.gan.target_usm, conditional=conditional)


def _schedule(cfg: TrainConfig, growth: Growth | None, step: int) -> dict[str, Any]:
    """The lr schedule (and a progressive run's stage at `step`), as the checkpoint records them (`steps.lr_at`
    and `Growth.at` compute them from the step)."""
    return {"kind": "multistep", "warmup": cfg.warmup, "milestones": list(cfg.milestones), "gamma": cfg.gamma,
            **(growth.record(step) if growth else {})}


def _plain_state(net: nn.Module) -> dict[str, Tensor]:
    """What the export holds: `cpu_state`, without a progressive G's training-only heads (RRDBNet's keys)."""
    return without_heads(cpu_state(net))


def _banner(cfg: TrainConfig, tag: str, scale: int, device: torch.device, world_size: int, start: int,
            bf16: bool) -> str:
    return (f"{tag}: {cfg.recipe} {cfg.phase} phase, {cfg.generator.name} x{scale} on {device} "
            f"({world_size} process{'es' if world_size > 1 else ''} x batch {cfg.batch_size}), "
            f"steps {start} -> {cfg.iterations}{', bf16' if bf16 else ''}{', compiled' if cfg.compile else ''}")


# ---- in the loop ---------------------------------------------------------------------------------------

def _next_pair(stream: Any, pool: PairPool, device: torch.device,
               memory_format: torch.memory_format) -> tuple[Tensor, Tensor]:
    """(hr, lr) of the next training batch on `device`, through the pair pool.

    The batch is drawn without touching the global torch RNG: a DataLoader draws its workers' base
    seed from it when it starts iterating, which would happen at step 0 of a fresh run but at the
    resume step of a resumed one and shift every later draw (pair pool, gradient penalty). The data's
    own randomness comes from (seed, epoch, key).
    """
    with torch.random.fork_rng(devices=[]):
        _, batch = next(stream)
    lr, hr = pool(batch["lr"].to(device, non_blocking=True), batch["hr"].to(device, non_blocking=True))
    return hr.contiguous(memory_format=memory_format), lr.contiguous(memory_format=memory_format)


@torch.no_grad()
def _generate(net_g: nn.Module, lr: Tensor, autocast: Callable[[], Any]) -> Tensor:
    """G's output for D's update on a step without a G update (no graph)."""
    with autocast():
        return net_g(lr)


def _check_nonfinite(in_a_row: int, step: int, max_nonfinite: int, tag: str, ckpt_dir: Path,
                     say: Callable[..., None]) -> None:
    """Report a skipped step (1-based `step`); raise NonFiniteLossError at `max_nonfinite` in a row."""
    say(f"{tag}: step {step}: non-finite loss, step skipped ({in_a_row} in a row)")
    if in_a_row >= max_nonfinite:
        raise NonFiniteLossError(
            f"{tag}: {in_a_row} non-finite losses in a row (step {step}); stopping. Lower "
            f"{tag}.lr_g/lr_d, set {tag}.grad_clip, or check the data; the last good checkpoint is in {ckpt_dir}")


def _silent(*args: Any, **kwargs: Any) -> None:
    """`print` on the ranks that do not log."""
