"""An energy-based GAN: the discriminator is the model, the generator its sampler (Zhai 2019).

Adversarial Fisher vectors read a GAN discriminator as an energy-based model,
``pθ(x) = exp(D(x)) / Z(θ)``: ``D(x)`` is the *negative energy* and the generator G learns to
draw samples from the density D defines. ``log_prob(x)`` returns ``D(x)`` itself, the
**unnormalised** log-density (``log Z(θ)`` is unknown, so it is not comparable across models
and bits/dim mean nothing: ``normalized = False``). Its parameter gradient is still the
Fisher score up to the term ``−∇θ log Z = −E_pθ[∇θ D]``, which adversarial Fisher vectors
estimate with generator samples (:mod:`fisher_core.embeddings.afv`).

Objective (the least-squares GAN of the reference code, apple/ml-afv ``losses.py``; see
/work/shared/REFERENCES.md), per mini-batch of real images x and latents z ~ N(0, I):

- discriminator: ``mean((D(x) − 1)²) + mean(D(G(z))²)`` (real → 1, generated → 0);
- generator: ``mean((D(G(z)) − 1)²) + γ · mean((G(z) − G_ema(z) + ε)²)``, ε ~ N(0, s²).
  The second, "MCMC-inspired" term pulls each sample towards a noisy copy of what the
  exponential moving average of G produced for the same z, so G moves like a Langevin chain
  (one noisy step from its previous sample towards higher D); γ = 0 (off) by default, as in
  the reference.

Like the reference, one training step updates G first, then D, each on its own fresh z (the
EMA copy of G is updated at the end of the step); D ends in a sigmoid (so D(x) ∈ (0, 1)), both
use Adam with β1 = 0, and D's learning rate is twice G's. Samples come from the EMA generator
(the reference checkpoints the EMA copy); with the default decay 0.9 it trails G by about ten
steps.

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .base import ConfigError, GenerativeModel, check_images, make_generator

__all__ = ["EBGAN", "EBGANConfig", "ls_discriminator_loss", "ls_generator_loss"]


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

    def __post_init__(self) -> None:
        for name, lo, hi in [
            ("channels", 1, 4), ("height", 1, 4096), ("width", 1, 4096),
            ("latent_dim", 1, 4096), ("g_width", 1, 1024), ("d_width", 1, 1024),
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
        ]:
            v = getattr(self, name)
            ok = (not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
                  and (v > lo if lo_open else v >= lo) and v <= hi)
            if name in ("ema_decay", "beta1", "beta2") and ok:
                ok = v < 1.0
            if not ok:
                bound = "(0, inf)" if lo_open else f"[{lo}, {hi})" if hi < math.inf else ">= 0"
                raise ConfigError(f"EBGANConfig.{name} must be a number in {bound}; got {v!r}.")


def ls_discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares D loss ``mean((D(x) − 1)²) + mean(D(G(z))²)`` (real → 1, fake → 0)."""
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
        Weight of the MCMC-inspired term.
    noise : Tensor like ``fake`` or None
        ε; ``None`` means zero.
    """
    loss = (d_fake - 1.0).pow(2).mean()
    if gamma > 0:
        target = fake_ema.detach() if noise is None else fake_ema.detach() - noise
        loss = loss + gamma * (fake - target).pow(2).mean()
    return loss


def _widths(base: int, n: int) -> list[int]:
    """Feature maps per scale, finest first: base, 2·base, ... capped at 4·base."""
    return [base * min(2**i, 4) for i in range(n + 1)]


class Discriminator(nn.Module):
    """Spectrally normalised conv net: (B, C, H', W') in [−1, 1] → (B,) scalar."""

    def __init__(self, cfg: EBGANConfig, grid: tuple[int, int]):
        super().__init__()
        w = _widths(cfg.d_width, cfg.n_scale)
        stem = spectral_norm(nn.Conv2d(cfg.channels, w[0], 3, padding=1))
        convs = [stem] + [
            spectral_norm(nn.Conv2d(w[i], w[i + 1], 4, stride=2, padding=1))
            for i in range(cfg.n_scale)
        ]
        # one block per scale; block outputs (after the activation) feed the D-pool baseline
        self.blocks = nn.ModuleList(nn.Sequential(c, nn.LeakyReLU(0.2)) for c in convs)
        self.out = spectral_norm(nn.Linear(w[-1] * grid[0] * grid[1], 1))
        self.sigmoid = cfg.sigmoid

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output, finest first: (B, w_i, H'/2^i, W'/2^i)."""
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)[-1]
        out = self.out(h.flatten(1)).squeeze(1)  # (B,)
        return torch.sigmoid(out) if self.sigmoid else out


class Generator(nn.Module):
    """z (B, Z) → images (B, C, H', W') in [−1, 1] (tanh)."""

    def __init__(self, cfg: EBGANConfig, grid: tuple[int, int]):
        super().__init__()
        w = _widths(cfg.g_width, cfg.n_scale)[::-1]  # coarsest first
        self.grid = grid
        self.w0 = w[0]
        self.inp = nn.Linear(cfg.latent_dim, w[0] * grid[0] * grid[1])
        self.inp_bn = nn.BatchNorm2d(w[0])
        # a 4×4 stride-2 transposed convolution costs ~2× less than upsampling + 3×3 conv
        self.ups = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(w[i], w[i + 1], 4, stride=2, padding=1, bias=False),
                          nn.BatchNorm2d(w[i + 1]), nn.ReLU())
            for i in range(cfg.n_scale)
        )
        self.to_img = nn.Conv2d(w[-1], cfg.channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(z).view(z.shape[0], self.w0, *self.grid)  # (B, w0, h, w)
        h = F.relu(self.inp_bn(h))
        for up in self.ups:
            h = up(h)  # (B, w_i, 2h, 2w)
        return torch.tanh(self.to_img(h))


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients to ``module``'s parameters (saves their weight gradients)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class EBGAN(GenerativeModel):
    """Energy-based least-squares GAN whose discriminator is the (unnormalised) model.

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
        meaningful, absolute values are not (and with the default sigmoid read-out they lie in
        (0, 1)).
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
        """One G update, then one D update (each with fresh z), then the EMA update of G.

        Returns
        -------
        dict
            ``loss`` (D loss + G loss), ``d_loss``, ``g_loss``, ``d_real`` and ``d_fake``
            (mean D on the real batch and on the generated batch of the D update).
        """
        cfg = self.config
        opt_g, opt_d = optimizers["generator"], optimizers["discriminator"]
        real = check_images(batch, channels=cfg.channels)
        b = real.shape[0]
        # -- generator
        z = self._latents(b, None)
        g = self.gen(z)  # (B, C, H', W') in [−1, 1]
        fake_ema = noise = None
        if cfg.gamma > 0:
            with torch.no_grad():
                fake_ema = self.gen_ema(z)
            if cfg.noise_std > 0:
                noise = torch.randn_like(g) * cfg.noise_std
        with _frozen(self.disc):
            d_gen = self.disc(self._to_disc_input(self._from_gen(g)))
        g_loss = ls_generator_loss(d_gen, g, fake_ema, gamma=cfg.gamma, noise=noise)
        if not torch.isfinite(g_loss):
            return {"loss": float(g_loss.detach())}
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        # -- discriminator
        with torch.no_grad():
            fake = self._from_gen(self.gen(self._latents(b, None)))
        d_real = self.discriminate(real)
        d_fake = self.discriminate(fake)
        d_loss = ls_discriminator_loss(d_real, d_fake)
        if not torch.isfinite(d_loss):
            return {"loss": float(d_loss.detach())}
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        self.update_ema()  # after G's last forward here, so its BatchNorm statistics are current
        return {"loss": float(d_loss.detach() + g_loss.detach()),
                "d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()),
                "d_real": float(d_real.detach().mean()), "d_fake": float(d_fake.detach().mean())}

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
