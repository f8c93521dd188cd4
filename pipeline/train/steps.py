"""One training step, in small named functions the loop calls in order: lr → targets → G → D.

    t = make_targets(hr, lr, usm=..., ...)            # USM-sharpened HR where a loss wants it
    g = g_step(model_g, net_d, opt_g, t, crit, ...)   # pixel (+ perceptual + adversarial) update
    d = d_step(model_d, opt_d, g.sr, t, crit, ...)    # discriminator (critic) update

`model_*` is a net as trained (compiled, G in DDP), `net_d` the plain D (see `loop`).

A step whose loss is not finite changes nothing (its gradients are dropped before any optimizer
step) and returns None; under DDP every rank agrees on that before anyone runs backward, so no rank
is left waiting in a gradient all-reduce.
"""
from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.spectral_norm import SpectralNorm

from pipeline.losses import clip_weights, d_loss, g_loss, gradient_penalty
from pipeline.train.usm import usm_sharp

Autocast = Callable[[], AbstractContextManager]


def lr_at(step: int, base: float, *, warmup: int, milestones: Sequence[int], gamma: float) -> float:
    """Learning rate of 0-based `step`: linear warm-up over `warmup` steps, then ×gamma at each milestone
    passed (MultiStepLR). A pure function of the step, so resuming needs no scheduler state.

    >>> lr_at(150, 1e-4, warmup=0, milestones=[100, 200], gamma=0.5)
    5e-05
    """
    factor = gamma ** bisect.bisect_right(list(milestones), step)
    if warmup and step < warmup:
        factor *= (step + 1) / warmup
    return base * factor


def set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


@dataclass(frozen=True)
class Targets:
    """What each loss compares with: HR (B, 3, H, W), USM-sharpened where its `target_usm` says so;
    `lr_up` is the LR upsampled to HR size for a conditional D (else None)."""
    lr: Tensor
    pixel: Tensor
    perceptual: Tensor
    real: Tensor
    lr_up: Tensor | None


def make_targets(hr: Tensor, lr: Tensor, *, usm: dict, pixel_usm: bool, perceptual_usm: bool, gan_usm: bool,
                 conditional: bool) -> Targets:
    """Sharpen HR once if any loss wants it (`usm`: size, weight, threshold) and hand each loss its target."""
    sharp = usm_sharp(hr, **usm) if (pixel_usm or perceptual_usm or gan_usm) else hr
    lr_up = None
    if conditional:
        lr_up = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    return Targets(lr=lr, pixel=sharp if pixel_usm else hr, perceptual=sharp if perceptual_usm else hr,
                   real=sharp if gan_usm else hr, lr_up=lr_up)


@dataclass(frozen=True)
class Criteria:
    """The loss functions and their factors; a None function is off."""
    pixel: Callable[[Tensor, Tensor], Tensor] | None
    pixel_weight: float
    perceptual: nn.Module | None      # PerceptualLoss, factors inside
    gan_kind: str
    gan_weight: float
    label_smoothing: float
    gp_weight: float
    clip: float


def has_spectral_norm(net: nn.Module) -> bool:
    """True if a module of `net` carries torch.nn.utils.spectral_norm's hook. Such a D is not compiled:
    its power iteration updates `weight_u` in place at each forward, and inductor's code for D's second
    forward of a step (fakes after reals) overwrites a `u` the first forward's backward saved ("one of the
    variables needed for gradient computation has been modified by an inplace operation"; torch 2.14)."""
    return any(isinstance(hook, SpectralNorm) for m in net.modules() for hook in m._forward_pre_hooks.values())


def d_input(img: Tensor, lr_up: Tensor | None) -> Tensor:
    """What D sees: the image, or cat(upsampled LR, image) for a conditional (pix2pix) D."""
    return img if lr_up is None else torch.cat([lr_up, img], dim=1)


def all_finite(loss: Tensor, ddp: bool) -> bool:
    """True if `loss` is finite on every rank (one all-reduce under DDP)."""
    ok = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
    if ddp:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def all_reduce_grads(net: nn.Module, world_size: int) -> None:
    """Average the gradients of `net` over the ranks in one flat all-reduce (D is not wrapped in DDP:
    it runs several forwards per step and a double backward for wgan-gp)."""
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


@dataclass(frozen=True)
class GStep:
    sr: Tensor                 # (B, 3, H, W) generator output, detached
    losses: dict[str, Tensor]  # detached scalars: pix, percep, g_gan, g_total


def g_step(net_g: nn.Module, net_d: nn.Module | None, opt_g: torch.optim.Optimizer, t: Targets, crit: Criteria, *,
           autocast: Autocast, grad_clip: float, ddp: bool) -> GStep | None:
    """One generator update on (t.lr → targets) through net_g (the loop's model_g). net_d, the plain D, is
    frozen for it; None in the net phase.

    Returns the output and the losses, or None (nothing updated) if the loss is not finite.
    """
    use_gan = net_d is not None and crit.gan_weight > 0
    if use_gan:
        net_d.requires_grad_(False)
    with autocast():
        sr = net_g(t.lr)
        losses: dict[str, Tensor] = {}
        if crit.pixel is not None:
            losses["pix"] = crit.pixel_weight * crit.pixel(sr.float(), t.pixel)
        if crit.perceptual is not None:
            losses["percep"] = crit.perceptual(sr, t.perceptual)
        if use_gan:
            fake_logits = net_d(d_input(sr, t.lr_up)).float()
            real_logits = net_d(d_input(t.real, t.lr_up)).float() if crit.gan_kind == "ragan" else None
            losses["g_gan"] = crit.gan_weight * g_loss(crit.gan_kind, fake_logits, real_logits)
    total = sum(losses.values())
    opt_g.zero_grad(set_to_none=True)
    if not all_finite(total, ddp):
        return None
    total.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(net_g.parameters(), grad_clip)
    opt_g.step()
    losses["g_total"] = total
    return GStep(sr=sr.detach(), losses={k: v.detach() for k, v in losses.items()})


def d_step(net_d: nn.Module, opt_d: torch.optim.Optimizer, sr: Tensor, t: Targets, crit: Criteria, *,
           autocast: Autocast, grad_clip: float, ddp: bool, world_size: int,
           fake_pool: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor] | None:
    """One discriminator (critic) update: real = t.real, fake = sr (detached), through `fake_pool` (an
    `ImagePool` of D's inputs, the condition included for a conditional D) when given.

    Returns detached d_loss, d_real and d_fake (mean logits), or None if the loss is not finite.
    wgan-gp adds the gradient penalty (computed in float32); wgan clips the weights after the step.
    """
    net_d.requires_grad_(True)
    real, fake = d_input(t.real, t.lr_up), d_input(sr.detach(), t.lr_up)
    if fake_pool is not None:
        fake = fake_pool(fake)
    with autocast():
        real_logits = net_d(real).float()
        fake_logits = net_d(fake).float()
        loss = d_loss(crit.gan_kind, real_logits, fake_logits, crit.label_smoothing)
    if crit.gan_kind == "wgan-gp":  # through the plain D: a compiled one has no double backward (aot_autograd)
        plain_d = getattr(net_d, "_orig_mod", net_d)
        loss = loss + gradient_penalty(plain_d, real.float(), fake.float(), weight=crit.gp_weight)
    opt_d.zero_grad(set_to_none=True)
    if not all_finite(loss, ddp):
        return None
    loss.backward()
    if ddp:
        all_reduce_grads(net_d, world_size)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(net_d.parameters(), grad_clip)
    opt_d.step()
    if crit.gan_kind == "wgan":
        clip_weights(net_d, crit.clip)
    return {"d_loss": loss.detach(), "d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean()}
