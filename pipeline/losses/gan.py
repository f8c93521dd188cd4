"""GAN losses on discriminator **logits** (no sigmoid anywhere), numerically stable.

Every loss is a mean over all logit elements (per image for global discriminators, per pixel for
unet_sn/patchgan). Conventions, with r = real logits, f = fake logits, s = label smoothing,
softplus(z) = log(1 + e^z) = BCE-with-logits(z, target 0) and softplus(-z) = BCE(z, target 1):

| kind           | d_loss (real term + fake term)                       | g_loss                                   |
|----------------|------------------------------------------------------|------------------------------------------|
| vanilla        | BCE(r, 1-s) + BCE(f, 0)                              | BCE(f, 1) = softplus(-f) (non-saturating) |
| lsgan          | (r - (1-s))² + f²                                    | (f - 1)²                                 |
| wgan, wgan-gp  | -r + f                                               | -f                                       |
| hinge          | relu(1 - r) + relu(1 + f)                            | -f                                       |
| ragan          | ½[BCE(r - mean f, 1) + BCE(f - mean r, 0)]           | ½[BCE(r - mean f, 0) + BCE(f - mean r, 1)] |

D losses are the **sum** of the real and fake terms (BasicSR's Real-ESRGAN steps back-propagate the
two terms separately, which is the same gradient); so vanilla at r = f = 0 gives 2·log 2. ragan keeps
ESRGAN's average of its two terms (so ESRGAN's GAN weight 0.005 carries over); at r = f = 0 it is log 2.
wgan-gp's d_loss is the wgan critic loss: add `gradient_penalty(net_d, real, fake)` (λ = 10) to it;
plain wgan instead clips the critic weights after each D step with `clip_weights(net_d, 0.01)`.
Label smoothing (one-sided: real target 1 - s) applies to vanilla and lsgan only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GAN_KINDS = ("vanilla", "lsgan", "wgan", "wgan-gp", "hinge", "ragan")


def _check_kind(kind: str) -> None:
    if kind not in GAN_KINDS:
        raise ValueError(f"unknown GAN loss kind {kind!r}; choose from {list(GAN_KINDS)}")


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def d_loss(kind: str, real_logits: Tensor, fake_logits: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Discriminator (critic) loss for `kind` on D's logits for real HR and generated images.

    real_logits, fake_logits: D outputs, any shape (e.g. (B, 1) or (B, 1, H, W)); fake_logits must come
    from detached generator outputs. Returns a scalar; see the module table for the formulas.

    Raises:
        ValueError: on an unknown kind, label_smoothing outside [0, 1), or label smoothing for a kind
            other than vanilla/lsgan.

    Example:
        >>> import torch
        >>> d_loss("vanilla", torch.zeros(2, 1), torch.zeros(2, 1))  # 2·log 2
        tensor(1.3863)
    """
    _check_kind(kind)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if label_smoothing and kind not in ("vanilla", "lsgan"):
        raise ValueError(f"label_smoothing applies to 'vanilla' and 'lsgan' only, got kind {kind!r}")
    real_target = 1.0 - label_smoothing
    if kind == "vanilla":
        return _bce(real_logits, real_target) + _bce(fake_logits, 0.0)
    if kind == "lsgan":
        return ((real_logits - real_target) ** 2).mean() + (fake_logits**2).mean()
    if kind in ("wgan", "wgan-gp"):
        return fake_logits.mean() - real_logits.mean()
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    # ragan: each side judged relative to the mean logit of the other side.
    return 0.5 * (_bce(real_logits - fake_logits.mean(), 1.0) + _bce(fake_logits - real_logits.mean(), 0.0))


def g_loss(kind: str, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
    """Generator (adversarial) loss for `kind` on D's logits for generated images.

    fake_logits: D(net_g(lr)), any shape, with gradient to the generator. real_logits: D(hr), needed
    (and detached here) for ragan only. Returns a scalar; see the module table.

    Raises:
        ValueError: on an unknown kind, or ragan without real_logits.

    Example:
        >>> import torch
        >>> g_loss("hinge", torch.tensor([1.0, 3.0]))
        tensor(-2.)
    """
    _check_kind(kind)
    if kind == "vanilla":
        return _bce(fake_logits, 1.0)
    if kind == "lsgan":
        return ((fake_logits - 1.0) ** 2).mean()
    if kind in ("wgan", "wgan-gp", "hinge"):
        return -fake_logits.mean()
    if real_logits is None:
        raise ValueError("g_loss kind 'ragan' needs real_logits (D's logits for the HR images)")
    real_logits = real_logits.detach()
    return 0.5 * (_bce(real_logits - fake_logits.mean(), 0.0) + _bce(fake_logits - real_logits.mean(), 1.0))


def gradient_penalty(net_d: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None = None,
                     weight: float = 10.0) -> Tensor:
    """WGAN-GP penalty: weight · mean over the batch of (‖∇ₓ D(x̂)‖₂ - 1)² at random interpolates.

    x̂ = α·real + (1 - α)·fake with α ~ U[0, 1) per image (drawn from `generator` if given, which
    must live on real's device). For a per-pixel D the gradient of the sum of its outputs is used.
    The graph is kept (create_graph) so the penalty back-propagates into net_d.

    real, fake: (B, C, H, W), same shape; fake is detached here.

    Raises:
        ValueError: if real and fake shapes differ or weight < 0.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real and fake shapes differ, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    if weight < 0:
        raise ValueError(f"gradient_penalty weight must be >= 0, got {weight!r}")
    alpha_shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    alpha = torch.rand(alpha_shape, generator=generator, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(net_d(mixed).sum(), mixed, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return weight * ((norms - 1.0) ** 2).mean()


@torch.no_grad()
def clip_weights(net_d: nn.Module, c: float = 0.01) -> None:
    """Clamp every parameter of the critic to [-c, c] in place (original WGAN's Lipschitz constraint).

    Raises:
        ValueError: if c <= 0.
    """
    if not c > 0:
        raise ValueError(f"clip_weights c must be positive, got {c!r}")
    for p in net_d.parameters():
        p.clamp_(-c, c)
