"""The training loop of both phases, top to bottom (nanoGPT's train.py is the model).

    report = train(cfg, pairs_dir=Path("data/pairs"), out_dir=Path("models/net"), scale=4, seed=0,
                   phase="net", init_from=None)

Order: checks → DDP/device → resume decision → nets → losses → optimizers → resume → data → logging →
`for step in range(start, cfg.iterations)` (lr, batch, pool, targets, G step, D step, EMA, log,
validate, checkpoint) → export. Run it under `torchrun --nproc_per_node=N` for DDP: every rank
trains on its share of each epoch with `batch_size` samples per step; rank 0 logs, validates and
writes checkpoints and the export.

Outputs in `out_dir`: `generator.pth` (`params_ema`, `params`, `meta`), `ckpt/step_*.pt`
(resume state, see `checkpoint`), `live/` (dvclive, see `live`).
"""
from __future__ import annotations

import itertools
import os
import random
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from pipeline.losses import PerceptualLoss, build_pixel_loss
from pipeline.models import build_discriminator, build_generator
from pipeline.data.loader import LoaderState, infinite_batches, make_loader
from pipeline.train.checkpoint import (clear_checkpoints, config_hash, describe_change, export_generator,
                                       load_latest, remove_partial, rng_state, run_identity, save_checkpoint,
                                       set_rng_state)
from pipeline.train.config import TrainConfig
from pipeline.train.ema import ema_decay_at, make_ema, update_ema
from pipeline.train.live import log_metrics, logged_value, open_live
from pipeline.train.pool import PairPool
from pipeline.train.steps import Criteria, d_step, g_step, lr_at, make_targets, set_lr
from pipeline.train.validate import bicubic_psnr_y, psnr_y, sample_grid, to_images, upscale_batches


class NonFiniteLossError(RuntimeError):
    """Training stopped after `max_nonfinite` non-finite steps in a row."""


def train(cfg: TrainConfig, *, pairs_dir: Path, out_dir: Path, scale: int, seed: int, phase: str,
          init_from: Path | None = None) -> dict[str, Any]:
    """Train one phase ('net': pixel loss only; 'gan': + perceptual + adversarial) and export the generator.

    Resumes from `out_dir/ckpt` when the stored config hash matches (else starts fresh, saying why).

    Returns:
        {"step", "start_step", "skipped_steps", "val_psnr_y", "val_psnr_y_bicubic", "generator", "seconds"}.

    Raises:
        FileNotFoundError: no training pairs; (gan) no init_from file, naming the stage to run.
        ValueError: phase disagrees with cfg; init weights that do not fit the generator; bf16 without CUDA.
        NonFiniteLossError: `cfg.max_nonfinite` non-finite steps in a row.
    """
    t0 = time.time()
    # -- checks -----------------------------------------------------------------------------------
    if phase != cfg.phase:
        raise ValueError(f"phase {phase!r} does not match the config's phase {cfg.phase!r}")
    train_dir, val_dir = Path(pairs_dir) / "train", Path(pairs_dir) / "val"
    if not (train_dir / "index.parquet").is_file():
        raise FileNotFoundError(f"{train_dir}: no training pairs (index.parquet missing); run `dvc repro shard`")
    if phase == "gan":
        if init_from is None or not Path(init_from).is_file():
            raise FileNotFoundError(f"{init_from}: net-phase generator not found; run `dvc repro train_net` "
                                    f"first (or set train_gan.init_from)")
        init_from = Path(init_from)
    else:
        init_from = None
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "ckpt"

    # -- DDP and device -------------------------------------------------------------------------
    ddp = int(os.environ.get("RANK", -1)) != -1
    if ddp:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    else:
        rank, world_size, local_rank = 0, 1, 0
    master = rank == 0  # logs, validates, checkpoints, exports
    device = _device(cfg.device, local_rank)
    if ddp:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(cfg, phase=phase, train_dir=train_dir, val_dir=val_dir, out_dir=out_dir, ckpt_dir=ckpt_dir,
                      scale=scale, seed=seed, init_from=init_from, ddp=ddp, rank=rank, world_size=world_size,
                      master=master, device=device, t0=t0)
    finally:
        if ddp:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, *, phase: str, train_dir: Path, val_dir: Path, out_dir: Path, ckpt_dir: Path,
           scale: int, seed: int, init_from: Path | None, ddp: bool, rank: int, world_size: int, master: bool,
           device: torch.device, t0: float) -> dict[str, Any]:
    say = print if master else (lambda *a, **k: None)
    tag = f"train_{phase}"
    bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    if bf16 and device.type != "cuda":
        raise ValueError(f"{tag}.amp: bf16 autocast needs a CUDA device, got device {device.type!r}")
    autocast = partial(torch.autocast, "cuda", dtype=torch.bfloat16) if bf16 else nullcontext
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    base_seed = seed + cfg.seed_offset
    if cfg.reproducible and device.type == "cuda":
        say(f"{tag}: reproducible pins CPU numerics only; CUDA kernels differ between GPU models")

    # -- resume or start fresh: the stored config hash decides --------------------------------
    config = cfg.to_dict()
    identity = run_identity(config, scale=scale, seed=seed, world_size=world_size,
                            train_index=train_dir / "index.parquet", init_from=init_from)
    chash = config_hash(identity)
    ckpt, note = load_latest(ckpt_dir)
    if note:
        say(f"{tag}: {note}")
    if ddp:
        dist.barrier()  # every rank has read the checkpoint before rank 0 may clear it
    if ckpt is not None and ckpt.get("config_hash") != chash:
        change = describe_change(ckpt.get("run", {}), identity) or "unknown difference"
        say(f"{tag}: starting fresh: {ckpt['path']} was made with another config ({change})")
        ckpt = None
        if master:
            clear_checkpoints(ckpt_dir)
    if master:
        remove_partial(ckpt_dir)  # what a kill during a checkpoint write leaves

    # -- nets: built from the base seed, so every rank starts identical ---------------------
    torch.manual_seed(base_seed)
    raw_g = build_generator(cfg.generator.name, scale=scale, **cfg.generator.opts)
    if phase == "gan" and ckpt is None:
        _load_init(raw_g, init_from, tag)
    raw_g.to(device, memory_format=memory_format).train()
    net_g_ema = make_ema(raw_g)  # params_ema; in the gan phase it starts at the net phase's EMA weights
    raw_d = None
    if phase == "gan" and cfg.gan.weight > 0:
        raw_d = build_discriminator(cfg.discriminator.name, **cfg.discriminator.opts)
        raw_d.to(device, memory_format=memory_format).train()

    # -- losses ----------------------------------------------------------------------------------
    perceptual = None
    if cfg.perceptual.weight > 0 or cfg.perceptual.style_weight > 0:
        perceptual = PerceptualLoss(dict(cfg.perceptual.layer_weights), weights=cfg.perceptual.weights or None,
                                    perceptual_weight=cfg.perceptual.weight, style_weight=cfg.perceptual.style_weight,
                                    criterion=cfg.perceptual.criterion).to(device, memory_format=memory_format)
    crit = Criteria(pixel=build_pixel_loss(cfg.pixel_loss.kind) if cfg.pixel_loss.weight > 0 else None,
                    pixel_weight=cfg.pixel_loss.weight, perceptual=perceptual, gan_kind=cfg.gan.kind,
                    gan_weight=cfg.gan.weight, label_smoothing=cfg.gan.label_smoothing,
                    gp_weight=cfg.gan.gp_weight, clip=cfg.gan.clip)

    # -- optimizers ------------------------------------------------------------------------------
    opt_g = torch.optim.Adam(raw_g.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(raw_d.parameters(), lr=cfg.lr_d, betas=cfg.betas) if raw_d is not None else None

    # -- maybe resume ----------------------------------------------------------------------------
    start, nonfinite, skipped_total = 0, 0, 0
    loader_state = LoaderState()
    pool = PairPool(cfg.pair_pool_size)
    if ckpt is not None:
        raw_g.load_state_dict(ckpt["params"])
        net_g_ema.load_state_dict(ckpt["params_ema"])
        opt_g.load_state_dict(ckpt["optim_g"])
        if raw_d is not None:
            raw_d.load_state_dict(ckpt["net_d"])
            opt_d.load_state_dict(ckpt["optim_d"])
        start, nonfinite, skipped_total = int(ckpt["step"]), int(ckpt["nonfinite"]), int(ckpt["skipped_total"])
        mine = ckpt["ranks"][rank]
        set_rng_state(mine["rng"])
        loader_state = LoaderState.from_dict(ckpt["loader"])
        if mine["pool"] is not None:
            pool.load_state_dict(mine["pool"], device)
        say(f"{tag}: resuming from {ckpt['path']} at step {start}")
    else:
        torch.manual_seed(base_seed + rank)  # from here on each rank draws its own numbers
        np.random.seed(base_seed + rank)
        random.seed(base_seed + rank)
    del ckpt

    # -- compile and wrap: G in DDP; D's gradients are all-reduced by hand (steps.all_reduce_grads) ---
    net_g = torch.compile(raw_g) if cfg.compile else raw_g
    if ddp:
        net_g = DDP(net_g, device_ids=[device.index] if device.type == "cuda" else None)
    net_d = torch.compile(raw_d) if cfg.compile and raw_d is not None else raw_d

    # -- data --------------------------------------------------------------------------------------
    # The stream's position is global (the same on every rank), a pure function of (seed, epoch, sample).
    stream = infinite_batches(train_dir, batch_size=cfg.batch_size, workers=cfg.workers, seed=base_seed, rank=rank,
                              world_size=world_size, state=loader_state, augment=cfg.augment)
    val = []
    if master and (val_dir / "index.parquet").is_file():  # fixed batches: the first val_batches, stored order
        with torch.random.fork_rng(devices=[]):  # see _next_batch
            val = list(itertools.islice(make_loader(val_dir, batch_size=cfg.batch_size, workers=0, seed=base_seed,
                                                    shuffle=False, augment=False), cfg.val_batches))
    if master and not val:
        say(f"{tag}: no val pairs in {val_dir}; validation is skipped")
    usm = {"size": cfg.usm.size, "weight": cfg.usm.weight, "threshold": cfg.usm.threshold}

    # -- logging (rank 0) ------------------------------------------------------------------------
    live = open_live(out_dir / "live", resume_step=start) if master else None
    psnr_bicubic = bicubic_psnr_y(val, scale) if val else float("nan")

    def validate(step: int) -> float:
        """PSNR-Y of the EMA generator on the val batches; logs it and a sample grid at `step`."""
        srs = upscale_batches(net_g_ema, val, device=device, autocast=autocast, memory_format=memory_format)
        hrs = [img for b in val for img in to_images(b["hr"])]
        value = psnr_y(srs, hrs, scale)
        log_metrics(live, step, {"val/psnr_y": value, "val/psnr_y_bicubic": psnr_bicubic})
        n = min(4, len(srs))
        live.log_image(f"val_{step:06d}.png", sample_grid(to_images(val[0]["lr"])[:n], srs[:n], hrs[:n], scale))
        say(f"{tag}: step {step}: val PSNR-Y {value:.2f} dB (bicubic {psnr_bicubic:.2f} dB)")
        return value

    def checkpoint(step: int) -> None:
        """Every rank hands its RNG, loader and pool state to rank 0, which writes one file."""
        mine = {"rng": rng_state(), "pool": pool.state_dict() if pool.size else None}
        ranks = [None] * world_size if ddp else [mine]
        if ddp:
            dist.all_gather_object(ranks, mine)
        if master:
            state = {"params": _state(raw_g), "params_ema": _state(net_g_ema),
                     "net_d": _state(raw_d) if raw_d is not None else None,
                     "optim_g": opt_g.state_dict(), "optim_d": opt_d.state_dict() if opt_d is not None else None,
                     "scheduler": {"kind": "multistep", "warmup": cfg.warmup, "milestones": list(cfg.milestones),
                                   "gamma": cfg.gamma, "lr_g": opt_g.param_groups[0]["lr"],
                                   "lr_d": opt_d.param_groups[0]["lr"] if opt_d is not None else None},
                     "step": step, "nonfinite": nonfinite, "skipped_total": skipped_total,
                     "loader": stream.state.to_dict(), "ranks": ranks,
                     "config": config, "run": identity, "config_hash": chash, "meta": meta}
            save_checkpoint(ckpt_dir, step, state, cfg.keep_last)

    meta = {"name": cfg.generator.name, "opts": dict(cfg.generator.opts), "scale": scale, "phase": phase}
    window: dict[str, tuple[torch.Tensor, int]] = {}  # loss name → (sum, steps) since the last log
    window_steps, window_t0 = 0, time.time()
    psnr_last, val_step = float("nan"), -1
    say(f"{tag}: {cfg.recipe} {phase} phase, {cfg.generator.name} x{scale} on {device} "
        f"({world_size} process{'es' if world_size > 1 else ''} x batch {cfg.batch_size}), steps {start} -> {cfg.iterations}"
        f"{', bf16' if bf16 else ''}{', compiled' if cfg.compile else ''}")

    # -- the loop --------------------------------------------------------------------------------
    for step in range(start, cfg.iterations):
        lr_g = set_lr(opt_g, lr_at(step, cfg.lr_g, warmup=cfg.warmup, milestones=cfg.milestones, gamma=cfg.gamma))
        lr_d = set_lr(opt_d, lr_at(step, cfg.lr_d, warmup=cfg.warmup, milestones=cfg.milestones,
                                   gamma=cfg.gamma)) if opt_d is not None else 0.0
        batch = _next_batch(stream)
        lr, hr = pool(batch["lr"].to(device, non_blocking=True), batch["hr"].to(device, non_blocking=True))
        lr, hr = lr.contiguous(memory_format=memory_format), hr.contiguous(memory_format=memory_format)
        t = make_targets(hr, lr, usm=usm, pixel_usm=cfg.pixel_loss.target_usm,
                         perceptual_usm=cfg.perceptual.target_usm, gan_usm=cfg.gan.target_usm,
                         conditional=cfg.gan.conditional and raw_d is not None)

        ok, losses = True, {}
        if raw_d is None or step % cfg.d_steps == 0:  # WGAN critics: d_steps D updates per G update
            g = g_step(net_g, raw_d, opt_g, t, crit, autocast=autocast, grad_clip=cfg.grad_clip, ddp=ddp)
            ok = g is not None
            sr = g.sr if ok else None
            losses.update(g.losses if ok else {})
        else:
            with torch.no_grad(), autocast():
                sr = raw_g(t.lr)
        if ok and net_d is not None:
            d = d_step(net_d, opt_d, sr, t, crit, autocast=autocast, grad_clip=cfg.grad_clip, ddp=ddp,
                       world_size=world_size)
            ok = d is not None
            losses.update(d or {})

        if ok:
            update_ema(net_g_ema, raw_g, ema_decay_at(step + 1, cfg.ema_decay, cfg.ema_warmup))
            nonfinite = 0
        else:
            nonfinite += 1
            skipped_total += 1
            say(f"{tag}: step {step + 1}: non-finite loss, step skipped ({nonfinite} in a row)")
            if nonfinite >= cfg.max_nonfinite:
                raise NonFiniteLossError(
                    f"{tag}: {nonfinite} non-finite losses in a row (step {step + 1}); stopping. Lower "
                    f"{tag}.lr_g/lr_d, set {tag}.grad_clip, or check the data; the last good checkpoint is in {ckpt_dir}")

        # -- bookkeeping: averages every log_every steps, val, checkpoint -------------------
        done = step + 1
        for k, v in losses.items():
            total, count = window.get(k, (0.0, 0))
            window[k] = (total + v, count + 1)
        window_steps += 1
        if done % cfg.log_every == 0 or done == cfg.iterations:
            if master:
                values = {f"train/{k}": float(total) / count for k, (total, count) in window.items()}
                values.update({"train/lr_g": lr_g, "train/skipped_steps": float(skipped_total)})
                if opt_d is not None:
                    values["train/lr_d"] = lr_d
                log_metrics(live, done, values)
                sec = (time.time() - window_t0) / window_steps
                shown = ", ".join(f"{k.removeprefix('train/')} {v:.4g}" for k, v in values.items()
                                  if k != "train/skipped_steps")
                say(f"{tag}: step {done}/{cfg.iterations}: {shown}; {sec:.2f} s/step")
            window, window_steps, window_t0 = {}, 0, time.time()
        if master and val and cfg.val_every and done % cfg.val_every == 0:
            psnr_last, val_step = validate(done), done
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            checkpoint(done)

    # -- the end: final validation (unless just done), export -----------------------------------
    stream.close()
    if master:
        if val and val_step != cfg.iterations:
            # a run resumed at its last step validated there before: reuse it rather than log it twice
            before = logged_value(out_dir / "live", "val/psnr_y", cfg.iterations) if start == cfg.iterations else None
            psnr_last = before if before is not None else validate(cfg.iterations)
        export = out_dir / "generator.pth"
        export_generator(export, _state(raw_g), _state(net_g_ema), {**meta, "step": cfg.iterations})
        live.end()
        say(f"{tag}: exported {export} (params_ema, params) after {cfg.iterations} steps")
    return {"step": cfg.iterations, "start_step": start, "skipped_steps": skipped_total,
            "val_psnr_y": psnr_last, "val_psnr_y_bicubic": psnr_bicubic,
            "generator": str(out_dir / "generator.pth"), "seconds": time.time() - t0}


def _next_batch(stream: Any) -> dict[str, Any]:
    """The stream's next batch without touching the global torch RNG.

    A DataLoader draws its workers' base seed from the global RNG when it starts iterating; that
    would happen at step 0 of a fresh run but at the resume step of a resumed one and shift every
    later draw (pair pool, gradient penalty). The data's own randomness comes from (seed, epoch, key).
    """
    with torch.random.fork_rng(devices=[]):
        _, batch = next(stream)
    return batch


def _device(name: str, local_rank: int) -> torch.device:
    """auto → cuda:<local_rank> when CUDA is available, else cpu. Raises ValueError for cuda without one."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("train.device: 'cuda' requested but torch sees no CUDA device")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict on the CPU in the standard (contiguous) layout, whatever the training memory format."""
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def _load_init(net: torch.nn.Module, path: Path, tag: str) -> None:
    """Load the net phase's export into the gan phase's generator: `params_ema`, else `params`, strictly.

    Raises:
        ValueError: the file has neither key, or its tensors do not fit the generator of this config.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    key = "params_ema" if "params_ema" in state else "params" if "params" in state else None
    if key is None:
        raise ValueError(f"{path}: expected a generator export with 'params_ema' or 'params', got keys {sorted(state)[:5]}")
    try:
        net.load_state_dict(state[key], strict=True)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:300]
        raise ValueError(f"{path}: its {key} do not fit {tag}.generator (train_net and train_gan must use the "
                         f"same generator name and opts): {first}") from None
