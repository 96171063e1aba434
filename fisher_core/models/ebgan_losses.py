"""Objectives of the energy-based GAN (:mod:`fisher_core.models.ebgan`) and its sampler's batch.

Two objectives, both reading the discriminator as the negative energy of
``pθ(x) ∝ exp(D(x))`` (Zhai et al. 2019):

- ``least_squares`` (the reference code apple/ml-afv, ``losses.py``): D is the sigmoid output
  σ(a(x)) of the network's last linear layer a(x) (its *logit*); real → 1, generated → 0.
- ``log_loss``: the energy-based objective written with the logistic log loss. The negative
  energy is ``D(x) = log σ(a(x))`` (the log of D's probability that x is real), so the density
  the generator is asked to sample is ``pθ(x) ∝ σ(a(x))``.

  * D: ``−E_data[log σ(a(x))] − E_q[log(1 − σ(a(x̃)))]``. The first term is exactly
    ``−E_data[D(x)]``, the positive phase of maximum likelihood. The second is the negative
    phase: maximum likelihood would subtract ``log Z``, whose gradient ``E_pθ[∇D]`` is
    estimated with the sampler's batch x̃ ~ q; the log loss pushes D down on those samples with
    the same sign but is bounded below, where ``E_q[D]`` itself is not (D could lower it
    forever on samples it already rejects).
  * G: ``KL(q_G ‖ pθ) + log Z = −E_z[D(G(z))] − H(q_G) = E_z[−log σ(a(G(z)))] − H(q_G)``, the
    non-saturating generator loss plus the entropy term that makes it a KL divergence. The
    entropy of an implicit sampler has no closed form: :func:`knn_entropy` estimates it on the
    generated batch (Kozachenko–Leonenko nearest-neighbour estimator), and
    :func:`log_generator_loss` weighs the per-dimension value, see there.

All log-loss terms work on logits through ``softplus`` (``−log σ(a) = softplus(−a)``,
``−log(1 − σ(a)) = softplus(a)``), so they stay finite for any logit.

:func:`mix_real` builds the negative batch of the D update from a mixture of the sampler and
the data (the ``real_mix`` option).

Sources: the energy-based reading (D the negative energy, ``log Z`` through generator samples,
G minimising ``KL(q_G ‖ pθ)``, hence an entropy term) is Zhai et al.'s; the reference code
(apple/ml-afv) implements only the least-squares and hinge losses, a ``gsteps`` loop and no
entropy estimate or real-image mixing. The exact text of the paper's Section 2 could not be
consulted when this was written, so the log-loss form, the entropy estimator and the
per-image reading of ``real_mix`` are the choices documented here, not quotations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "knn_entropy",
    "log_discriminator_loss",
    "log_generator_loss",
    "ls_discriminator_loss",
    "ls_generator_loss",
    "mcmc_penalty",
    "mix_real",
]


def mcmc_penalty(
    fake: torch.Tensor, fake_ema: torch.Tensor, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """The reference code's MCMC-inspired term ``mean((G(z) − G_ema(z) + ε)²)``.

    Parameters
    ----------
    fake, fake_ema : Tensor of shape (B, C, H, W)
        G(z) and the EMA generator's G_ema(z) for the same z; ``fake_ema`` is a constant.
    noise : Tensor like ``fake`` or None, default=None
        ε; ``None`` means zero.

    Returns
    -------
    Tensor of shape ()
    """
    target = fake_ema.detach() if noise is None else fake_ema.detach() - noise
    return (fake - target).pow(2).mean()


def ls_discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares D loss ``mean((D(x) − 1)²) + mean(D(G(z))²)`` (real → 1, fake → 0).

    Parameters
    ----------
    d_real, d_fake : Tensor of shape (B,)
        D on the real batch and on the sampler's batch.

    Returns
    -------
    Tensor of shape ()
    """
    return (d_real - 1.0).pow(2).mean() + d_fake.pow(2).mean()


def ls_generator_loss(
    d_fake: torch.Tensor,
    fake: torch.Tensor | None = None,
    fake_ema: torch.Tensor | None = None,
    *,
    gamma: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Least-squares G loss ``mean((D(G(z)) − 1)²) + γ · mean((G(z) − G_ema(z) + ε)²)``.

    Parameters
    ----------
    d_fake : Tensor of shape (B,)
        D on the generated batch.
    fake, fake_ema : Tensor of shape (B, C, H, W) or None
        G(z) and the EMA generator's G_ema(z) for the same z (only needed when γ > 0);
        ``fake_ema`` is treated as a constant.
    gamma : float, default=0.0
        Weight of the MCMC-inspired term (:func:`mcmc_penalty`).
    noise : Tensor like ``fake`` or None
        ε; ``None`` means zero.

    Returns
    -------
    Tensor of shape ()
    """
    loss = (d_fake - 1.0).pow(2).mean()
    if gamma > 0:
        loss = loss + gamma * mcmc_penalty(fake, fake_ema, noise)
    return loss


def log_discriminator_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """Log-loss D loss ``mean(−log σ(a(x))) + mean(−log(1 − σ(a(x̃))))`` on logits.

    Equal to binary cross-entropy with targets 1 (real) and 0 (the sampler's batch), computed
    as ``mean(softplus(−a_real)) + mean(softplus(a_fake))``: finite for any logit.

    Parameters
    ----------
    logit_real, logit_fake : Tensor of shape (B,)
        D's logits a(x) on the real batch and on the sampler's batch.

    Returns
    -------
    Tensor of shape ()
    """
    return F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean()


def log_generator_loss(
    logit_fake: torch.Tensor,
    entropy: torch.Tensor | None = None,
    *,
    entropy_weight: float = 0.1,
) -> torch.Tensor:
    """Log-loss G loss ``mean(−log σ(a(G(z)))) − λ · Ĥ``: the KL to the energy model.

    With ``D = log σ(a)`` the first term is ``−E_z[D(G(z))]``; with ``Ĥ`` the entropy of the
    generated distribution in nats *per dimension* and ``λ = d`` (the number of pixel values
    C·H·W) the loss is ``KL(q_G ‖ pθ) + log Z``. A smaller λ is the same KL to the sharper
    model ``pθ^(d/λ)`` (temperature λ/d): the literal λ = d weighs spreading the samples over
    the whole image cube far above matching D (a bounded D gives a nearly flat density), so
    the per-dimension form keeps both terms of comparable size for any image size.

    Parameters
    ----------
    logit_fake : Tensor of shape (B,)
        D's logits on the generated batch.
    entropy : Tensor of shape () or None, default=None
        Ĥ, e.g. ``knn_entropy(G(z)) / d``; ``None`` drops the term.
    entropy_weight : float, default=0.1
        λ (the default of :class:`fisher_core.models.EBGANConfig`).

    Returns
    -------
    Tensor of shape ()
    """
    loss = F.softplus(-logit_fake).mean()
    if entropy is not None and entropy_weight > 0:
        loss = loss - entropy_weight * entropy
    return loss


def knn_entropy(x: torch.Tensor, *, k: int = 1, eps: float = 1e-30) -> torch.Tensor:
    """Kozachenko–Leonenko k-nearest-neighbour estimate of the entropy of a sample, in nats.

    ``Ĥ = ψ(N) − ψ(k) + log V_d + (d / N) Σ_i log ρ_i``, where ρ_i is the Euclidean distance
    from row i to its k-th nearest other row, V_d = π^(d/2) / Γ(d/2 + 1) the volume of the
    unit d-ball and ψ the digamma function (Kozachenko & Leonenko 1987; Kraskov, Stögbauer &
    Grassberger 2004, eq. 20). It is consistent, needs no density model, and is differentiable
    in the samples: its gradient pushes each sample away from its nearest neighbour, which is
    what an entropy bonus for a generator should do (mode collapse makes ρ_i → 0 and Ĥ → −∞).
    It is why this estimator is used for the generator's entropy: the generator's density is
    implicit, and a batch is all there is. In high dimension with few samples its absolute
    value is biased; its gradient is what training uses.

    Parameters
    ----------
    x : Tensor of shape (N, ...)
        N samples; trailing dimensions are flattened to d.
    k : int, default=1
        Which neighbour (1 = nearest); needs N > k.
    eps : float, default=1e-30
        Floor on the distances, so duplicated samples give a large finite value.

    Returns
    -------
    Tensor of shape ()
        Ĥ in nats (of the d-dimensional distribution), in ``x``'s dtype; computed in float64.
    """
    n = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"k must be an integer in [1, N - 1] = [1, {n - 1}]; got {k!r}.")
    flat = x.reshape(n, -1).double()  # (N, d)
    d = flat.shape[1]
    # distances from differences, not ‖x‖² + ‖y‖² − 2x·y, which cancels for close pairs
    dist = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist")  # (N, N)
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    dist = torch.where(eye, torch.full_like(dist, math.inf), dist)
    rho = torch.kthvalue(dist, k, dim=1).values.clamp_min(eps)  # (N,)
    log_vd = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)
    psi = torch.special.digamma(torch.tensor([float(n), float(k)], dtype=torch.float64))
    h = psi[0] - psi[1] + log_vd + d * torch.log(rho).mean()
    return h.to(x.dtype)


def mix_real(
    fake: torch.Tensor,
    real: torch.Tensor,
    p: float,
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's batch with each image replaced by a real one with probability ``p``.

    Each row of ``fake`` is independently kept (probability 1 − p) or swapped for a real
    image (probability p), so the batch is a draw from the mixture ``(1 − p) q_G + p p_data``.
    The real images are drawn without replacement from ``real`` (a random permutation), so a
    real image appears at most once. In :meth:`fisher_core.models.EBGAN.training_step`
    ``real`` is the D update's own real batch, so a swapped-in image is pushed up (positive
    phase) and down (negative phase) at once: D is pulled towards "undecided" on it instead of
    becoming arbitrarily sure of the training images.

    Parameters
    ----------
    fake : Tensor of shape (B, ...)
        The sampler's images, e.g. (B, C, H, W).
    real : Tensor of shape (N, ...), N ≥ B
        Real images of the same shape.
    p : float
        Mixing probability in [0, 1].
    generator : torch.Generator or None, default=None
        Source of the coin flips and the permutation (None: torch's global RNG).

    Returns
    -------
    mixed : Tensor like ``fake``
    is_real : Tensor of shape (B,), bool
        Which rows of ``mixed`` are real images.
    """
    b = fake.shape[0]
    if real.shape[0] < b or real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real must hold at least {b} images of shape "
                         f"{tuple(fake.shape[1:])}; got {tuple(real.shape)}.")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1]; got {p!r}.")
    dev = fake.device
    gen_dev = generator.device if generator is not None else dev
    is_real = (torch.rand(b, generator=generator, device=gen_dev) < p).to(dev)
    pick = torch.randperm(real.shape[0], generator=generator, device=gen_dev)[:b].to(dev)
    rows = is_real.view(b, *([1] * (fake.dim() - 1)))  # (B, 1, ..., 1)
    mixed = torch.where(rows, real[pick].to(fake.dtype), fake)
    return mixed, is_real
