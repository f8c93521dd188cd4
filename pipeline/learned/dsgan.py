"""The frequency-separation method (`--method dsgan`, the default), after Fritsche et al. 2019 (DSGAN,
in the AIM 2019 real-world SR winner): one generator G, one PatchGAN D, no cycle.

Per step, with L(·) a Gaussian low-pass (σ `low_sigma` LR px), H(v) the high frequencies v − L(v) as
D sees them (`nets.d_view`: Y, and Cb/Cr averaged over 2×2) and c the written output (`nets.jpeg_ste`:
clipped, quantized, JPEG-coded when there is a codec in the loop; straight-through):
    G minimises  λ_low·|L(c(G(x))) − L(x)|₁ + λ_adv·LSGAN(D(H(c(G(x)))), 1)
    D minimises  ½[(D(H(y)) − 1)² + D(H(pool(c(G(x)))))²]
The low-frequency term pins content and colour to the clean input (what CycleGAN needs a second
generator, a cycle and an identity loss for), and D judges only noise, blur and artefact texture,
not the scenes, which differ between the unpaired domains. The paper's perceptual term is left out
(no VGG weights are downloaded). D has spectral normalisation and no feature normalisation:
instance norm would divide out the very amplitude (the noise level) it has to judge.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from pipeline.losses.gan import d_loss, g_loss
from pipeline.models import build_discriminator
from pipeline.models.cyclegan import CycleGANGenerator

from .config import LearnConfig, Run, fake_pool
from .nets import d_view, gaussian_kernel, jpeg_ste, lowpass, with_noise

LOSSES = ("g_low", "g_adv", "d_real", "d_fake")


def spectral(d: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) of every conv of D, in place: a Lipschitz-bounded D
    cannot grow the steep input gradients that let the adversarial term swamp the low-frequency L1."""
    for name, m in list(d.named_modules()):
        if isinstance(m, nn.Conv2d):
            spectral_norm(m)
    return d


def build(cfg: LearnConfig) -> Run:
    """Nets (g, then d, from torch.manual_seed(seed)), optimizers, an empty pool."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        nets = {"g": CycleGANGenerator(**cfg.generator_opts()),
                "d": spectral(build_discriminator("patchgan", num_feat=cfg.d_feat, n_layers=cfg.d_layers, norm="none"))}
    betas = (cfg.beta1, cfg.beta2)
    optim_g = torch.optim.Adam(nets["g"].parameters(), lr=cfg.lr, betas=betas)
    optim_d = torch.optim.Adam(nets["d"].parameters(), lr=cfg.lr, betas=betas)
    return Run(nets, optim_g, optim_d, {"y": fake_pool(cfg, "y")}, [])


def step(run: Run, x: Tensor, y: Tensor, z: Tensor, cfg: LearnConfig) -> dict[str, float]:
    """A G step, then a D step, on this step's crops x, y and G's noise z."""
    g, d = run.nets["g"], run.nets["d"]
    kernel = gaussian_kernel(cfg.low_sigma)

    def high(v: Tensor) -> Tensor:
        return d_view(v, kernel)

    d.requires_grad_(False)
    out = g(with_noise(x, z))
    fake = jpeg_ste(out, cfg.jpeg_quality)
    low = (lowpass(fake, kernel) - lowpass(x, kernel)).abs().mean()
    adv = g_loss("lsgan", d(high(fake)))
    run.optim_g.zero_grad(set_to_none=True)
    (cfg.lambda_low * low + cfg.lambda_adv * adv).backward()
    run.optim_g.step()
    d.requires_grad_(True)
    real_logits = d(high(y))
    fake_logits = d(high(run.pools["y"](fake.detach())))
    loss_d = 0.5 * d_loss("lsgan", real_logits, fake_logits)
    run.optim_d.zero_grad(set_to_none=True)
    loss_d.backward()
    run.optim_d.step()
    return {"g_low": low.item(), "g_adv": adv.item(), "d_real": ((real_logits - 1) ** 2).mean().item(),
            "d_fake": (fake_logits ** 2).mean().item()}
