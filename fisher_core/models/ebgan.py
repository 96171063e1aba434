"""An energy-based GAN: the discriminator is the model, the generator its sampler (Zhai 2019).

Adversarial Fisher vectors read a GAN discriminator as an energy-based model,
``pθ(x) = exp(D(x)) / Z(θ)``: ``D(x)`` is the *negative energy* and the generator G learns to
draw samples from the density D defines. ``log_prob(x)`` returns ``D(x)`` itself, the
**unnormalised** log-density (``log Z(θ)`` is unknown, so it is not comparable across models
and bits/dim mean nothing: ``normalized = False``). Its parameter gradient is still the
Fisher score up to the term ``−∇θ log Z = −E_pθ[∇θ D]``, which adversarial Fisher vectors
estimate with generator samples (:mod:`fisher_core.embeddings.afv`).

Objectives (``objective``; the losses live in :mod:`fisher_core.models.ebgan_losses`), per
mini-batch of real images x and latents z ~ N(0, I); a(x) is D's last linear output (logit):

- ``"least_squares"`` (default; the reference code apple/ml-afv ``losses.py``, see
  /work/shared/REFERENCES.md): D(x) = σ(a(x)) (or a(x) with ``sigmoid=False``);
  discriminator ``mean((D(x) − 1)²) + mean(D(x̃)²)`` (real → 1, generated → 0); generator
  ``mean((D(G(z)) − 1)²) + γ · mean((G(z) − G_ema(z) + ε)²)``, ε ~ N(0, s²). The second,
  "MCMC-inspired" term pulls each sample towards a noisy copy of what the exponential moving
  average of G produced for the same z, so G moves like a Langevin chain (one noisy step from
  its previous sample towards higher D); γ = 0 (off) by default, as in the reference.
- ``"log_loss"``: the energy-based objective with the logistic log loss, D(x) = log σ(a(x)).
  Discriminator ``mean(softplus(−a(x))) + mean(softplus(a(x̃)))`` (positive phase
  −E_data[D(x)], negative phase on the sampler's batch); generator
  ``mean(softplus(−a(G(z)))) − λ · Ĥ(G(z)) / d`` (+ the same γ term), i.e. the KL divergence
  ``KL(q_G ‖ pθ) = −E_z[D(G(z))] − H(q_G) + log Z`` with the generator's entropy estimated on
  the batch by nearest neighbours (Kozachenko–Leonenko), per pixel value (``entropy_weight``
  λ; λ = d = C·H·W is the literal KL).

Like the reference, one training step updates G first (``g_steps`` times, each on fresh z: the
sampler runs several steps per D step, as a Markov chain would), then D once on fresh z; with
``real_mix`` = p each image of D's negative batch is replaced by a real image with probability
p (a draw from ``(1 − p) q_G + p p_data``). The EMA copy of G is updated after every G update
(the last one at the end of the step). D ends in a sigmoid, both use Adam with β1 = 0, and D's
learning rate is twice G's. Samples come from the EMA generator (the reference checkpoints the
EMA copy); with the default decay 0.9 it trails G by about ten updates.

Architecture (small, for CPU): D is a 3×3 convolution followed by ``n_scale`` stride-2 4×4
convolutions (LeakyReLU 0.2 after each) and a linear read-out of the last feature map; every
convolution and the read-out are spectrally normalised
(:func:`torch.nn.utils.parametrizations.spectral_norm`), and D has no normalisation layers,
so per-example scores are independent of the batch. G mirrors it: a linear map of z to a
(·, h, w) map, ``n_scale`` × [4×4 stride-2 transposed convolution + BatchNorm + ReLU] and a
3×3 convolution with tanh. Images in [0, 1] are mapped to [−1, 1] for D; any size works
(inputs are zero-padded to a multiple of ``2^n_scale`` and G's output is cropped).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import ConfigError, GenerativeModel, check_images, make_generator
from .ebgan_losses import (
    knn_entropy,
    log_discriminator_loss,
    log_generator_loss,
    ls_discriminator_loss,
    ls_generator_loss,
    mcmc_penalty,
    mix_real,
)
from .ebgan_nets import Discriminator, Generator, frozen

__all__ = ["EBGAN", "EBGANConfig", "OBJECTIVES", "log_discriminator_loss", "log_generator_loss",
           "ls_discriminator_loss", "ls_generator_loss"]

#: Training objectives of :class:`EBGAN` (see the module docstring).
OBJECTIVES = ("least_squares", "log_loss")


@dataclass
class EBGANConfig:
    """Hyper-parameters of :class:`EBGAN`.

    Parameters
    ----------
    channels : int, default=1
        Image channels C.
    height, width : int, default=32
        Image size.
    latent_dim : int, default=32
        Dimension of z.
    g_width : int, default=32
        Feature maps of G at full resolution; each coarser scale doubles them, up to
        ``4 · g_width``.
    d_width : int, default=16
        Feature maps of D's first convolution; each stride-2 stage doubles them, up to
        ``4 · d_width``. The AFV dimension is D's parameter count (107,841 at the
        defaults for 32×32, 8,897 for 8×8).
    n_scale : int or None, default=None
        Stride-2 stages of D (= upsampling stages of G); ``None`` picks
        ``⌊log2(min(H, W) / 4)⌋`` so the coarsest map is about 4×4.
    sigmoid : bool, default=True
        End D with a sigmoid, as the reference code does (D(x) ∈ (0, 1)); ``False`` reads the
        linear output directly.
    gamma : float, default=0.0
        Weight γ of the generator's MCMC-inspired term (0 = off).
    noise_std : float, default=0.0
        Standard deviation s of the noise ε in that term (reference default 0).
    ema_decay : float, default=0.9
        Decay of the generator's exponential moving average (reference: 0.9); 0 copies G.
    d_lr_ratio : float, default=2.0
        D's learning rate divided by G's (reference: 4e-4 / 2e-4).
    beta1, beta2 : float, default=0.0, 0.999
        Adam betas of both optimizers (reference: (0, 0.999)).
    objective : {"least_squares", "log_loss"}, default="least_squares"
        Training objective. ``"least_squares"``: the reference code's, D(x) = σ(a(x)) pulled
        to 1 on real and 0 on generated images. ``"log_loss"``: the energy-based objective
        with the logistic log loss on D's logit a(x), D(x) = log σ(a(x)) (what ``log_prob``
        returns), and the generator minimising KL(q_G ‖ pθ) = −E[D(G(z))] − H(q_G) + const;
        needs ``sigmoid=True``.
    entropy_weight : float, default=0.1
        Weight λ of the generator's entropy bonus (``objective="log_loss"`` only): a
        nearest-neighbour (Kozachenko–Leonenko) estimate of the entropy of the generated batch,
        in nats per pixel value; λ = C·H·W is the literal KL, 0 drops the term. Larger λ
        spreads the samples (against mode collapse) at the cost of noisier images: on the 8×8
        digits, λ = 1 gave visibly noisy samples after 350 steps, λ = 0.1 samples as clean as
        λ = 0.
    g_steps : int, default=1
        Generator updates per discriminator update (each on fresh z), the sampler running
        several steps per D step.
    real_mix : float, default=0.0
        Probability p in [0, 1) that each image of D's negative batch is replaced by a real
        image of the batch (0 = off).
    """

    channels: int = 1
    height: int = 32
    width: int = 32
    latent_dim: int = 32
    g_width: int = 32
    d_width: int = 16
    n_scale: int | None = None
    sigmoid: bool = True
    gamma: float = 0.0
    noise_std: float = 0.0
    ema_decay: float = 0.9
    d_lr_ratio: float = 2.0
    beta1: float = 0.0
    beta2: float = 0.999
    objective: str = "least_squares"
    entropy_weight: float = 0.1
    g_steps: int = 1
    real_mix: float = 0.0

    def __post_init__(self) -> None:
        for name, lo, hi in [
            ("channels", 1, 4), ("height", 1, 4096), ("width", 1, 4096),
            ("latent_dim", 1, 4096), ("g_width", 1, 1024), ("d_width", 1, 1024),
            ("g_steps", 1, 100),
        ]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(
                    f"EBGANConfig.{name} must be an integer in [{lo}, {hi}]; got {value!r}."
                )
        if self.n_scale is None:
            side = min(self.height, self.width)
            self.n_scale = max(0, int(math.floor(math.log2(side / 4)))) if side >= 4 else 0
        n = self.n_scale
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 8:
            raise ConfigError(f"EBGANConfig.n_scale must be an integer in [0, 8]; got {n!r}.")
        if not isinstance(self.sigmoid, bool):
            raise ConfigError(f"EBGANConfig.sigmoid must be True or False; got {self.sigmoid!r}.")
        for name, lo, hi, lo_open in [
            ("gamma", 0.0, math.inf, False), ("noise_std", 0.0, math.inf, False),
            ("ema_decay", 0.0, 1.0, False), ("d_lr_ratio", 0.0, math.inf, True),
            ("beta1", 0.0, 1.0, False), ("beta2", 0.0, 1.0, False),
            ("entropy_weight", 0.0, math.inf, False), ("real_mix", 0.0, 1.0, False),
        ]:
            v = getattr(self, name)
            ok = (not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
                  and (v > lo if lo_open else v >= lo) and v <= hi)
            if name in ("ema_decay", "beta1", "beta2", "real_mix") and ok:
                ok = v < 1.0
            if not ok:
                bound = "(0, inf)" if lo_open else f"[{lo}, {hi})" if hi < math.inf else ">= 0"
                raise ConfigError(f"EBGANConfig.{name} must be a number in {bound}; got {v!r}.")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"EBGANConfig.objective must be one of "
                              f"{', '.join(map(repr, OBJECTIVES))}; got {self.objective!r}.")
        if self.objective == "log_loss" and not self.sigmoid:
            raise ConfigError("EBGANConfig.objective='log_loss' needs sigmoid=True: the log "
                              "loss reads D's last linear output as the logit of a sigmoid.")


class EBGAN(GenerativeModel):
    """Energy-based GAN whose discriminator is the (unnormalised) model.

    Parameters
    ----------
    config : EBGANConfig or None, default=None
        Hyper-parameters; ``None`` uses the defaults (32×32 grey).

    Attributes
    ----------
    disc : Discriminator
        D; its parameters (names starting with ``"disc."``) are the ones AFVs differentiate.
    gen : Generator
        G, trained by the generator optimizer.
    gen_ema : Generator
        Exponential moving average of G (no gradients); :meth:`sample` draws from it.
    """

    family = "ebgan"
    normalized = False
    #: EBM-GANs saved before these options existed: least squares, one G step, no mixing.
    saved_defaults = {"objective": "least_squares", "entropy_weight": 0.1, "g_steps": 1,
                      "real_mix": 0.0}
    # Recognisable digits (8×8) and faces (32×32) after ~300-400 steps at these settings.
    training_defaults = {"lr": 1e-3, "batch_size": 64}

    def __init__(self, config: EBGANConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else EBGANConfig()
        f = 2**cfg.n_scale
        self._padded = (-(-cfg.height // f) * f, -(-cfg.width // f) * f)
        grid = (self._padded[0] // f, self._padded[1] // f)
        self.disc = Discriminator(cfg, grid)
        self.gen = Generator(cfg, grid)
        self.gen_ema = copy.deepcopy(self.gen)
        for p in self.gen_ema.parameters():
            p.requires_grad_(False)
        # the deepest discriminator block, (B, w, h, w): the "D activations" baseline layer
        self.activation_layer = f"disc.blocks.{cfg.n_scale}"

    # ---- networks ----------------------------------------------------------------------------

    def discriminator_parameter_names(self) -> list[str]:
        """Names of D's parameters (what adversarial Fisher vectors differentiate)."""
        return [n for n, _ in self.named_parameters() if n.startswith("disc.")]

    def _to_disc_input(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self._padded
        x = x * 2.0 - 1.0  # [0, 1] → [−1, 1], the range of G's tanh output
        return F.pad(x, (0, pw - x.shape[-1], 0, ph - x.shape[-2]))  # (B, C, H', W')

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """D(x) for images in [0, 1], shape (B,)."""
        check_images(x, channels=self.config.channels)
        return self.disc(self._to_disc_input(x))

    def generate(self, z: torch.Tensor, *, ema: bool = False) -> torch.Tensor:
        """G(z) (or G_ema(z)) as images in [0, 1], shape (B, C, H, W), differentiable."""
        g = (self.gen_ema if ema else self.gen)(z)
        return self._from_gen(g)

    def _from_gen(self, g: torch.Tensor) -> torch.Tensor:
        return (g[:, :, : self.config.height, : self.config.width] + 1.0) * 0.5

    def pool_features(self, x: torch.Tensor, *, layer: str | int = "all") -> torch.Tensor:
        """Spatially averaged D activations ("D-pool", the baseline of Zhai et al. 2019).

        Parameters
        ----------
        x : Tensor of shape (B, C, H, W)
            Images in [0, 1].
        layer : "all" or int, default="all"
            ``"all"`` concatenates the spatial means of every block (as the reference
            code's ``get_pool``); an int picks one block (0 = finest, −1 = deepest).

        Returns
        -------
        Tensor of shape (B, F)
        """
        check_images(x, channels=self.config.channels)
        feats = [f.mean(dim=(2, 3)) for f in self.disc.features(self._to_disc_input(x))]
        if layer == "all":
            return torch.cat(feats, dim=1)
        if isinstance(layer, bool) or not isinstance(layer, int) or not (
                -len(feats) <= layer < len(feats)):
            raise ValueError(
                f"layer must be 'all' or a block index in [{-len(feats)}, {len(feats) - 1}]; "
                f"got {layer!r}."
            )
        return feats[layer]

    # ---- protocol ----------------------------------------------------------------------------

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-density ``D(x)`` (the negative energy), shape (B,).

        ``pθ(x) = exp(D(x)) / Z(θ)`` with an unknown ``Z``: differences between images are
        meaningful, absolute values are not. D(x) is what the objective trains: σ(a(x)) in
        (0, 1) for least squares with the default sigmoid (a(x) without it), and
        log σ(a(x)) ≤ 0 for the log loss, whose generator samples pθ ∝ σ(a).
        """
        return self.discriminate(x)

    def _latents(self, n: int, gen: torch.Generator | None) -> torch.Tensor:
        dtype = self.gen.inp.weight.dtype
        return torch.randn(n, self.config.latent_dim, generator=gen, device=self.device,
                           dtype=dtype)

    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator | int | None = None, ema: bool = True
    ) -> torch.Tensor:
        """Draw ``n`` images ``G_ema(z)``, z ~ N(0, I) (BatchNorm with running statistics).

        Parameters
        ----------
        n : int
            Number of images.
        generator : torch.Generator, int or None, default=None
            Source of z; a seed makes the draw reproducible.
        ema : bool, default=True
            Use the EMA generator (``False``: the generator being trained).

        Returns
        -------
        Tensor of shape (n, C, H, W)
            Float images in [0, 1].
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}.")
        net = self.gen_ema if ema else self.gen
        z = self._latents(n, make_generator(generator, self.device))
        was = net.training
        net.eval()
        try:
            return self._from_gen(net(z)).clamp(0.0, 1.0)
        finally:
            net.train(was)

    # ---- training hooks ----------------------------------------------------------------------

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Two Adam optimizers: ``"generator"`` (lr) and ``"discriminator"`` (lr · ratio)."""
        betas = (self.config.beta1, self.config.beta2)
        return {
            "generator": torch.optim.Adam(self.gen.parameters(), lr=lr, betas=betas),
            "discriminator": torch.optim.Adam(
                self.disc.parameters(), lr=lr * self.config.d_lr_ratio, betas=betas),
        }

    def training_step(
        self, batch: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, float]:
        """``g_steps`` G updates, then one D update (each with fresh z), then the EMA of G.

        The EMA copy follows every G update (the last one after the D update, whose forward
        pass of G leaves its BatchNorm statistics current).

        Returns
        -------
        dict
            ``loss`` (D loss + mean G loss), ``d_loss``, ``g_loss``, ``d_real`` and ``d_fake``
            (mean D on the real batch and on the negative batch of the D update); with the log
            loss also ``entropy`` (the last G update's estimate, nats per pixel value), with
            ``real_mix`` > 0 also ``mixed`` (the share of real images in the negative batch).
        """
        cfg = self.config
        opt_g, opt_d = optimizers["generator"], optimizers["discriminator"]
        real = check_images(batch, channels=cfg.channels)
        b = real.shape[0]
        g_losses = []
        for i in range(cfg.g_steps):
            g_loss, extra = self._generator_update(b, opt_g)
            if not torch.isfinite(g_loss):
                return {"loss": float(g_loss.detach())}
            g_losses.append(g_loss.detach())
            if i < cfg.g_steps - 1:
                self.update_ema()
        g_loss = torch.stack(g_losses).mean()
        # -- discriminator
        with torch.no_grad():
            fake = self._from_gen(self.gen(self._latents(b, None)))
        if cfg.real_mix > 0:
            fake, is_real = mix_real(fake, real, cfg.real_mix)
            extra["mixed"] = float(is_real.float().mean())
        a_real = self.disc.logit(self._to_disc_input(real))
        a_fake = self.disc.logit(self._to_disc_input(fake))
        if cfg.objective == "log_loss":
            d_loss = log_discriminator_loss(a_real, a_fake)
        else:
            d_loss = ls_discriminator_loss(self.disc.readout(a_real), self.disc.readout(a_fake))
        if not torch.isfinite(d_loss):
            return {"loss": float(d_loss.detach())}
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        self.update_ema()  # after G's last forward here, so its BatchNorm statistics are current
        with torch.no_grad():
            d_real, d_fake = self.disc.readout(a_real.detach()), self.disc.readout(a_fake.detach())
        return {"loss": float(d_loss.detach() + g_loss),
                "d_loss": float(d_loss.detach()), "g_loss": float(g_loss),
                "d_real": float(d_real.mean()), "d_fake": float(d_fake.mean())} | extra

    def _generator_update(
        self, b: int, opt_g: torch.optim.Optimizer
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One G step on ``b`` fresh latents; its loss (not stepped when not finite)."""
        cfg = self.config
        z = self._latents(b, None)
        g = self.gen(z)  # (B, C, H', W') in [−1, 1]
        fake_ema = noise = None
        if cfg.gamma > 0:
            with torch.no_grad():
                fake_ema = self.gen_ema(z)
            if cfg.noise_std > 0:
                noise = torch.randn_like(g) * cfg.noise_std
        fake = self._from_gen(g)  # (B, C, H, W) in [0, 1]
        with frozen(self.disc):
            a_gen = self.disc.logit(self._to_disc_input(fake))
        extra: dict[str, float] = {}
        if cfg.objective == "log_loss":
            entropy = None
            if cfg.entropy_weight > 0 and b > 1:  # one image has no neighbour
                entropy = knn_entropy(fake) / fake[0].numel()  # nats per pixel value
                extra["entropy"] = float(entropy.detach())
            loss = log_generator_loss(a_gen, entropy, entropy_weight=cfg.entropy_weight)
            if cfg.gamma > 0:
                loss = loss + cfg.gamma * mcmc_penalty(g, fake_ema, noise)
        else:
            loss = ls_generator_loss(self.disc.readout(a_gen), g, fake_ema, gamma=cfg.gamma,
                                     noise=noise)
        if torch.isfinite(loss):
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
        return loss, extra

    @torch.no_grad()
    def update_ema(self) -> None:
        """``θ_ema ← d · θ_ema + (1 − d) · θ_G``; BatchNorm running statistics are copied."""
        d = self.config.ema_decay
        for p_ema, p in zip(self.gen_ema.parameters(), self.gen.parameters(), strict=True):
            p_ema.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for b_ema, b in zip(self.gen_ema.buffers(), self.gen.buffers(), strict=True):
            b_ema.copy_(b)

    def validation_nll(self, batch: torch.Tensor) -> torch.Tensor:
        """``−D(x)``: an unnormalised energy, not a negative log-likelihood (no bits/dim).

        Lower means held-out images look more "real" to D; it does not measure sample quality,
        so select GAN checkpoints with :class:`fisher_core.metrics.FisherMonitor` instead.
        """
        return -self.log_prob(batch)
