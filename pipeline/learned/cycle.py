"""The CycleGAN method (`--method cyclegan`): G: X → Y, F: Y → X, PatchGANs D_X and D_Y.

Per step (Zhu et al. 2017): crops x ~ X, y ~ Y; G's and F's step minimises
    LSGAN(D_Y(c(G(x))), 1) + LSGAN(D_X(F(y)), 1)                   (adversarial)
  + λ_cyc·(|F(c(G(x))) - x|₁ + |G(F(y)) - y|₁)                     (cycle consistency)
  + λ_cyc·λ_idt·(|G(y) - y|₁ + |F(x) - x|₁)                        (identity; λ_idt 0 disables)
then D_X and D_Y each minimise ½[(D(real) - 1)² + D(pool(fake))²]; c is the codec in the loop
(`nets.jpeg_ste`: clip and quantize, then JPEG when there is a codec; straight-through). G also
sees the noise channels z; F does not.
Adam for the generators together and for the discriminators together.
"""
from __future__ import annotations

import torch
from torch import Tensor

from pipeline.losses.gan import d_loss, g_loss
from pipeline.models import build_discriminator
from pipeline.models.cyclegan import CycleGANGenerator

from .config import LearnConfig, Run, fake_pool
from .nets import jpeg_ste, with_noise

LOSSES = ("g_adv", "g_cycle", "g_identity", "d_x", "d_y")


def build(cfg: LearnConfig) -> Run:
    """Nets (built in the order g, f, dx, dy from torch.manual_seed(seed)), optimizers, empty pools."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        f_opts = {**cfg.generator_opts(), "num_in_ch": 3}
        nets = {"g": CycleGANGenerator(**cfg.generator_opts()), "f": CycleGANGenerator(**f_opts)}
        for name in ("dx", "dy"):
            nets[name] = build_discriminator("patchgan", num_feat=cfg.d_feat, n_layers=cfg.d_layers, norm="instance")
    betas = (cfg.beta1, cfg.beta2)
    optim_g = torch.optim.Adam([*nets["g"].parameters(), *nets["f"].parameters()], lr=cfg.lr, betas=betas)
    optim_d = torch.optim.Adam([*nets["dx"].parameters(), *nets["dy"].parameters()], lr=cfg.lr, betas=betas)
    pools = {k: fake_pool(cfg, k) for k in ("x", "y")}
    return Run(nets, optim_g, optim_d, pools, [])


def g_step(run: Run, x: Tensor, y: Tensor, z: Tensor, cfg: LearnConfig) -> tuple[dict[str, float], Tensor, Tensor]:
    """One generator update; returns (losses, c(G(x)), F(y))."""
    g, f, dx, dy = (run.nets[k] for k in ("g", "f", "dx", "dy"))
    for d in (dx, dy):
        d.requires_grad_(False)
    fake_y, fake_x = jpeg_ste(g(with_noise(x, z)), cfg.jpeg_quality), f(y)
    adv = g_loss("lsgan", dy(fake_y)) + g_loss("lsgan", dx(fake_x))
    cycle = (f(fake_y) - x).abs().mean() + (g(with_noise(fake_x, z)) - y).abs().mean()
    identity = (g(with_noise(y, z)) - y).abs().mean() + (f(x) - x).abs().mean() \
        if cfg.lambda_identity > 0 else torch.zeros(())
    total = adv + cfg.lambda_cycle * cycle + cfg.lambda_cycle * cfg.lambda_identity * identity
    run.optim_g.zero_grad(set_to_none=True)
    total.backward()
    run.optim_g.step()
    for d in (dx, dy):
        d.requires_grad_(True)
    return {"g_adv": adv.item(), "g_cycle": cycle.item(), "g_identity": identity.item()}, fake_y, fake_x


def d_step(run: Run, x: Tensor, y: Tensor, fake_x: Tensor, fake_y: Tensor) -> dict[str, float]:
    """One update of both discriminators on real crops and pooled fakes (½ of the LSGAN loss each)."""
    dx, dy = run.nets["dx"], run.nets["dy"]
    loss_y = 0.5 * d_loss("lsgan", dy(y), dy(run.pools["y"](fake_y.detach())))
    loss_x = 0.5 * d_loss("lsgan", dx(x), dx(run.pools["x"](fake_x.detach())))
    run.optim_d.zero_grad(set_to_none=True)
    (loss_x + loss_y).backward()
    run.optim_d.step()
    return {"d_x": loss_x.item(), "d_y": loss_y.item()}


def step(run: Run, x: Tensor, y: Tensor, z: Tensor, cfg: LearnConfig) -> dict[str, float]:
    """A G step, then a D step, on this step's crops x, y and G's noise z."""
    losses, fake_y, fake_x = g_step(run, x, y, z, cfg)
    losses.update(d_step(run, x, y, fake_x, fake_y))
    return losses
