"""FV-VAE: a convolutional VAE with *local* latents, a learnable GMM prior over them, and
Fisher-vector embeddings of its latent descriptors.

Model. The encoder maps an image to a grid of h × w local latents, one d-dimensional Gaussian
q(z_t | x) = N(μ_t(x), diag σ_t²(x)) per location t. The prior treats the locations as a bag
of descriptors (Krapac et al. 2011's spatial Fisher vectors): one diagonal GMM over the pairs
``(z_t, p_t)``, p_t the location's normalised (row, column) in [−1, 1], whose parameters live
in a :class:`~fisher_core.fisher.layer.FisherVectorLayer` (``model.fv``), and every z_t is
drawn independently from the GMM's conditional given its position,

    p(z_t | p_t) = Σ_k π_k(p_t) N(z_t | m_k, diag s_k²),   π_k(p) ∝ w_k N(p | a_k, diag b_k²)

(``log p(z_t, p_t) − log p(p_t)``, both mixtures in closed form). Components thus specialise
in regions of the image. With ``spatial=False`` the GMM is over z_t alone and the prior is the
same at every location. The decoder maps the grid of latents back to p(x | z) (Bernoulli,
categorical over L levels, or Gaussian), like :class:`~fisher_core.models.VAE`.

Objective. ``log_prob`` returns the ELBO

    ELBO(x) = E_q[log p(x | z)] + E_q[Σ_t log p(z_t | p_t)] + H[q(z | x)]  ≤  log p(x),

with reparameterised samples for the first two terms and the Gaussian entropy in closed form.
Training maximises ``recon + β (prior + entropy)`` with β = ``kl_weight`` (β-VAE weighting;
β = 1 is the ELBO). The encoder, decoder and GMM prior are learned jointly by one optimizer.
β < 1 is the default because the embedding is built from the posterior means: at β = 1 most
local latents collapse onto the prior (posterior variance ≈ 1, means ≈ 0) and carry little
about the image (``bench/eval_fvvae.py``: digits probe 75 % → 88 % at β = 0.3, faces far more).

The Fisher-vector GMM (``fv_gmm``). The proposal behind the FV-VAE reads "assume q to be a
GMM, and learn the parameters of the GMM; the FV layer computes the Fisher vector from
them": the GMM that encodes is a model of the *descriptors* the encoder produces, as in the
classical pipeline (a GMM fitted to the local descriptors, then their Fisher vector). With
``fv_gmm="descriptors"`` (default) ``model.fv`` is that GMM, a second diagonal mixture over
the descriptors ``(μ_t, p_t)``, fitted during training by stepwise EM (Cappé & Moulines
2009, :meth:`~fisher_core.fisher.layer.FisherVectorLayer.em_step`) on every batch's detached
posterior means, a constant step so that it tracks the moving encoder. It is fitted by EM
rather than by a gradient term: EM is exact and has no step size, and a log-likelihood term
on descriptors that the encoder could move would be raised without bound by shrinking the
descriptors and the mixture together; detached, the fit cannot change the encoder. Grid
positions are dequantised (uniform noise over their cell) for the fit, so that a component
cannot put all its mass on one row of the grid, and components whose weight falls below
1/(10 K) are moved onto random descriptors. With ``fv_gmm="prior"`` the prior GMM encodes
(``model.fv is model.prior``): the Fisher score of the model w.r.t. the prior parameters φ,
``∇φ log p(x) = E_p(z|x)[Σ_t ∇φ log p_φ(z_t | p_t)]``, approximated by plugging in the
posterior means (the FV differentiates the joint ``log p(μ_t, p_t)``; the difference from the
conditional, ``Σ_t ∇φ log p(p_t)``, is the same vector for every image). The prior is a worse
encoder: it models the noisy samples z_t (and, with β = 1, mostly collapsed ones), not the
means that are encoded (issue 17: 67 % against 90 % for an EM fit of the same descriptors).

Either way :meth:`FVVAE.embed` is the (1/n-scaled) Fisher vector of the descriptors
``(μ_t, p_t)`` under ``model.fv``, with the analytic diagonal Fisher information, power and
L2 normalisation of the improved FV.

Samples draw every local latent independently given its position and decode them: they have
the right local statistics per region but no correlations between regions. The model is meant
for embeddings; sample quality is not its strength.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..fisher.layer import FisherVectorLayer
from .base import ConfigError, GenerativeModel, check_images, make_generator, quantize

__all__ = ["FVVAE", "FVVAEConfig"]

_LIKELIHOODS = ("bernoulli", "categorical", "gaussian")
_FV_GMMS = ("descriptors", "prior")
# Stepwise EM of the descriptor GMM: a constant step (the descriptors move while the encoder
# trains; 0.05 of a 32-image batch of 16 descriptors ≈ a memory of 10,000 descriptors) and a
# variance floor for latent dimensions the encoder leaves unused.
_EM_RATE = 0.05
_EM_REG = 1e-4
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class FVVAEConfig:
    """Hyper-parameters of :class:`FVVAE`.

    Parameters
    ----------
    channels : int, default=1
    height, width : int, default=32
    latent_dim : int, default=4
        Dimension d of each local latent (= descriptor dimension).
    hidden : int, default=32
        Feature maps of every convolution.
    n_down : int or None, default=None
        Stride-2 encoder stages; ``None`` picks ``⌊log2(min(H, W) / 4)⌋`` (a ≈4×4 grid of
        local latents: 8×8 → 1 stage, 32×32 → 3).
    n_components : int, default=32
        Components K of the GMM prior; the embedding has ``K · (1 + 2d')`` entries, with
        d' = d + 2 when ``spatial`` (else d).
    spatial : bool, default=True
        Model positions with the latents (module docstring); ``False``: one location-free
        GMM over z_t.
    likelihood : {"bernoulli", "categorical", "gaussian"}, default="categorical"
        Decoder distribution, as in :class:`~fisher_core.models.VAEConfig` (``"bernoulli"``:
        images binarised with ``round(x)``).
    levels : int, default=4
        Levels L of the categorical likelihood.
    sigma : float, default=0.1
        Standard deviation of the Gaussian likelihood.
    kl_weight : float, default=0.3
        Weight β of the KL part of the training objective, ``recon + β (prior + entropy)``
        (β = 1: the ELBO; β < 1 keeps more information about the image in the local latents,
        which the embedding encodes). :meth:`FVVAE.log_prob` is always the ELBO.
    fv_gmm : {"descriptors", "prior"}, default="descriptors"
        Which GMM :meth:`FVVAE.embed` encodes with. ``"descriptors"``: a second GMM
        (``model.fv``) fitted by stepwise EM to the posterior-mean descriptors during
        training; ``"prior"``: the prior GMM itself (``model.fv is model.prior``).
    final_em : bool, default=True
        With ``fv_gmm="descriptors"``: refit that GMM by full EM (k-means start) on the
        training descriptors once training ends (:meth:`FVVAE.finish_training`).
    fv_normalization : {"analytic", "none"}, default="analytic"
    fv_power : float or None, default=0.5
    fv_l2 : bool, default=True
        How :meth:`FVVAE.embed` normalises the Fisher vectors (see
        :class:`~fisher_core.fisher.layer.FisherVectorLayer`); training does not use them.
    """

    channels: int = 1
    height: int = 32
    width: int = 32
    latent_dim: int = 4
    hidden: int = 32
    n_down: int | None = None
    n_components: int = 32
    spatial: bool = True
    likelihood: str = "categorical"
    levels: int = 4
    sigma: float = 0.1
    kl_weight: float = 0.3
    fv_gmm: str = "descriptors"
    final_em: bool = True
    fv_normalization: str = "analytic"
    fv_power: float | None = 0.5
    fv_l2: bool = True

    def __post_init__(self) -> None:
        for name, lo, hi in [
            ("channels", 1, 4), ("height", 1, 4096), ("width", 1, 4096),
            ("latent_dim", 1, 256), ("hidden", 1, 4096), ("n_components", 1, 1024),
            ("levels", 2, 256),
        ]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(
                    f"FVVAEConfig.{name} must be an integer in [{lo}, {hi}]; got {value!r}."
                )
        if self.n_down is None:
            side = min(self.height, self.width)
            self.n_down = max(0, int(math.floor(math.log2(side / 4)))) if side >= 4 else 0
        n = self.n_down
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 8:
            raise ConfigError(f"FVVAEConfig.n_down must be an integer in [0, 8]; got {n!r}.")
        if self.likelihood not in _LIKELIHOODS:
            raise ConfigError(
                f"FVVAEConfig.likelihood must be one of {_LIKELIHOODS}; got {self.likelihood!r}."
            )
        s = self.sigma
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or s <= 0:
            raise ConfigError(f"FVVAEConfig.sigma must be a positive number; got {s!r}.")
        b = self.kl_weight
        if isinstance(b, bool) or not isinstance(b, int | float) or not 0 < b <= 1:
            raise ConfigError(f"FVVAEConfig.kl_weight must be a number in (0, 1]; got {b!r}.")
        if self.fv_gmm not in _FV_GMMS:
            raise ConfigError(
                f"FVVAEConfig.fv_gmm must be one of {_FV_GMMS}; got {self.fv_gmm!r}.")
        if self.fv_normalization not in ("analytic", "none"):
            raise ConfigError("FVVAEConfig.fv_normalization must be 'analytic' or 'none'; got "
                              f"{self.fv_normalization!r}.")
        p = self.fv_power
        if p is not None and (isinstance(p, bool) or not isinstance(p, int | float) or p <= 0):
            raise ConfigError(f"FVVAEConfig.fv_power must be None or > 0; got {p!r}.")
        if not isinstance(self.spatial, bool):
            raise ConfigError(f"FVVAEConfig.spatial must be True or False; got {self.spatial!r}.")
        if not isinstance(self.fv_l2, bool):
            raise ConfigError(f"FVVAEConfig.fv_l2 must be True or False; got {self.fv_l2!r}.")
        if not isinstance(self.final_em, bool):
            raise ConfigError(
                f"FVVAEConfig.final_em must be True or False; got {self.final_em!r}.")


class FVVAE(GenerativeModel):
    """Convolutional VAE with local latents, a GMM prior and Fisher-vector embeddings.

    Parameters
    ----------
    config : FVVAEConfig or None, default=None
        Hyper-parameters; ``None`` uses the defaults (32×32 grey, 4×4 grid of 4-d latents,
        16 spatial components).

    Attributes
    ----------
    fv : FisherVectorLayer
        The GMM :meth:`embed` encodes with (``fv_gmm``).
    prior : FisherVectorLayer
        The GMM prior over local latents (a property; ``fv`` itself when
        ``fv_gmm="prior"``, else the module ``prior_gmm``).
    """

    family = "fvvae"
    #: FV-VAEs saved before ``fv_gmm`` and ``kl_weight`` existed: prior GMM, plain ELBO.
    saved_defaults = {"fv_gmm": "prior", "kl_weight": 1.0, "final_em": False}
    # Same settings as the VAE (tuned on the built-in faces).
    training_defaults = {"lr": 3e-3, "batch_size": 32}

    def __init__(self, config: FVVAEConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else FVVAEConfig()
        C, Hd, n, d = cfg.channels, cfg.hidden, cfg.n_down, cfg.latent_dim
        f = 2**n
        self._padded = (-(-cfg.height // f) * f, -(-cfg.width // f) * f)
        self.grid = (self._padded[0] // f, self._padded[1] // f)
        self.enc_in = nn.Conv2d(C, Hd, 3, padding=1)
        self.enc_down = nn.ModuleList(nn.Conv2d(Hd, Hd, 3, stride=2, padding=1) for _ in range(n))
        self.enc_out = nn.Conv2d(Hd, 2 * d, 1)
        self.dec_in = nn.Conv2d(d, Hd, 1)
        self.dec_up = nn.ModuleList(nn.Conv2d(Hd, Hd, 3, padding=1) for _ in range(n))
        self._n_out = cfg.levels if cfg.likelihood == "categorical" else 1
        self.dec_out = nn.Conv2d(Hd, C * self._n_out, 3, padding=1)
        layer = lambda: FisherVectorLayer(  # noqa: E731
            cfg.n_components, d + 2 * cfg.spatial, normalization=cfg.fv_normalization,
            power=cfg.fv_power, l2=cfg.fv_l2)
        if cfg.fv_gmm == "prior":
            self.fv = layer()
        else:  # the prior first: the same initial prior as with fv_gmm="prior"
            self.prior_gmm = layer()
            self.fv = layer()
        rows, cols = (torch.linspace(-1.0, 1.0, g) if g > 1 else torch.zeros(1)
                      for g in self.grid)
        pos = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)  # (h, w, 2)
        self.register_buffer("positions", pos.reshape(-1, 2), persistent=False)  # (h·w, 2)
        # half-widths of the grid cells, for dequantising positions when fitting ``fv``
        self._cell = tuple(1.0 / (g - 1) if g > 1 else 1.0 for g in self.grid)
        # the deepest encoder feature map, (B, hidden, h, w)
        self.activation_layer = f"enc_down.{n - 1}" if n else "enc_in"

    @property
    def prior(self) -> FisherVectorLayer:
        """The GMM prior over local latents (``fv`` itself when ``fv_gmm="prior"``)."""
        return self.fv if self.config.fv_gmm == "prior" else self.prior_gmm

    # ---- encoder / decoder -------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters per location.

        Returns
        -------
        mu, logvar : Tensor of shape (B, h·w, d)
            Local latent descriptors in raster order of the (h, w) grid.
        """
        check_images(x, channels=self.config.channels)
        ph, pw = self._padded
        h = self.enc_in(F.pad(x, (0, pw - x.shape[-1], 0, ph - x.shape[-2])))
        for conv in self.enc_down:
            h = conv(F.relu(h))  # (B, hidden, H'/2^i, W'/2^i)
        stats = self.enc_out(F.relu(h)).flatten(2).transpose(1, 2)  # (B, h·w, 2d)
        mu, logvar = stats.chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)

    def _with_positions(self, z: torch.Tensor) -> torch.Tensor:
        """(..., h·w, d) latents → (..., h·w, d + 2) with the locations appended (if spatial)."""
        if not self.config.spatial:
            return z
        pos = self.positions.to(z.dtype).expand(*z.shape[:-1], 2)  # (..., h·w, 2)
        return torch.cat([z, pos], dim=-1)

    def descriptors(self, x: torch.Tensor) -> torch.Tensor:
        """The local descriptors the Fisher vectors encode: posterior means μ_t with their
        locations appended when ``spatial``, shape (B, h·w, d') (d' = d + 2 or d)."""
        return self._with_positions(self.encode(x)[0])

    def latent_means(self, x: torch.Tensor) -> torch.Tensor:
        """All posterior means flattened, shape (B, h·w·d) (the "latent" baseline embedding)."""
        return self.encode(x)[0].flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Fisher vectors of the descriptors under the prior GMM, shape (B, K·(1 + 2d')).

        Differentiable w.r.t. the encoder and the GMM (fine-tune through it if needed).
        """
        return self.fv(self.descriptors(x))

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z_t | p_t) of local latents z (..., h·w, d) at their locations: (..., h·w)."""
        joint = self.prior.log_likelihood(self._with_positions(z))
        if not self.config.spatial:
            return joint
        d = self.config.latent_dim
        return joint - self.prior.log_likelihood(self.positions.to(z.dtype), dims=slice(d, d + 2))

    def decoder_params(self, z: torch.Tensor) -> torch.Tensor:
        """Raw decoder output for local latents z (B, h·w, d): (B, C, P, H, W), P = L or 1."""
        cfg = self.config
        h = self.dec_in(z.transpose(1, 2).reshape(z.shape[0], -1, *self.grid))  # (B, Hd, h, w)
        for conv in self.dec_up:
            h = conv(F.interpolate(F.relu(h), scale_factor=2.0, mode="nearest"))
        out = self.dec_out(F.relu(h))[:, :, : cfg.height, : cfg.width]  # (B, C·P, H, W)
        return out.reshape(z.shape[0], cfg.channels, self._n_out, cfg.height, cfg.width)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image E[x|z] in [0, 1], shape (B, C, H, W)."""
        out = self.decoder_params(z)
        if self.config.likelihood == "categorical":
            grid = torch.linspace(0.0, 1.0, self.config.levels, device=z.device, dtype=z.dtype)
            return torch.einsum("bcphw,p->bchw", F.softmax(out, dim=2), grid)
        return torch.sigmoid(out[:, :, 0])

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over pixels and channels, shape (B,)."""
        cfg = self.config
        out = self.decoder_params(z)  # (B, C, P, H, W)
        if cfg.likelihood == "bernoulli":
            target = quantize(x, 2).to(out.dtype)
            ll = -F.binary_cross_entropy_with_logits(out[:, :, 0], target, reduction="none")
        elif cfg.likelihood == "categorical":
            level = quantize(x, cfg.levels).unsqueeze(2)  # (B, C, 1, H, W)
            ll = F.log_softmax(out, dim=2).gather(2, level).squeeze(2)
        else:
            s = cfg.sigma
            mean = torch.sigmoid(out[:, :, 0])
            ll = -0.5 * ((x - mean) / s).pow(2) - math.log(s) - 0.5 * _LOG_2PI
        return ll.sum(dim=(1, 2, 3))

    # ---- the bound ---------------------------------------------------------------------------

    def elbo_terms(
        self, x: torch.Tensor, *, n_samples: int = 1, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """The three ELBO terms per example, each of shape (B,), in nats.

        Returns
        -------
        dict
            ``"recon"`` = E_q log p(x|z), ``"prior"`` = E_q Σ_t log p(z_t | p_t),
            ``"entropy"`` = H[q(z|x)] (closed form); their sum is the ELBO. Expectations use
            ``n_samples`` reparameterised draws (``generator=None``: ``torch.randn_like``,
            which works under ``torch.func.vmap(randomness="different")``).
        """
        return self._elbo(x, n_samples, generator)[0]

    def _elbo(
        self, x: torch.Tensor, n_samples: int, generator: torch.Generator | None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """:meth:`elbo_terms` and the posterior means (B, T, d) they were computed from."""
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
        mu, logvar = self.encode(x)  # (B, T, d)
        S, B = n_samples, x.shape[0]
        shape = (S, *mu.shape)
        if generator is None:
            eps = torch.randn_like(mu.expand(shape))
        else:
            eps = torch.randn(shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + (0.5 * logvar).exp() * eps  # (S, B, T, d)
        x_rep = x.expand(S, *x.shape).reshape(S * B, *x.shape[1:])  # (S·B, C, H, W)
        recon = self.log_px_given_z(x_rep, z.reshape(S * B, *mu.shape[1:])).view(S, B)
        prior = self.prior_log_prob(z).sum(-1)  # (S, B)
        entropy = 0.5 * (logvar + 1.0 + _LOG_2PI).sum(dim=(1, 2))  # (B,)
        return {"recon": recon.mean(0), "prior": prior.mean(0), "entropy": entropy}, mu

    def log_prob(
        self, x: torch.Tensor, *, n_samples: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The ELBO per example (a stochastic lower bound on log p(x)), in nats, shape (B,)."""
        t = self.elbo_terms(x, n_samples=n_samples, generator=generator)
        return t["recon"] + t["prior"] + t["entropy"]

    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator | int | None = None
    ) -> torch.Tensor:
        """Draw every local latent from the prior given its location; return decoder means.

        Returns
        -------
        Tensor of shape (n, C, H, W)
            Float images in [0, 1].
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}.")
        gen = make_generator(generator, self.device)
        d, fv = self.config.latent_dim, self.prior
        T = self.grid[0] * self.grid[1]
        if self.config.spatial:  # π_k(p_t) ∝ w_k N(p_t | a_k, b_k²), one row per location
            log_pi = fv.log_posteriors(self.positions.to(fv.means.dtype), dims=slice(d, d + 2))
            probs = log_pi.exp().repeat(n, 1)  # (n·T, K)
            k = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        else:
            k = torch.multinomial(fv.weights(), n * T, replacement=True, generator=gen)
        eps = torch.randn(n * T, d, generator=gen, device=self.device, dtype=fv.means.dtype)
        z = fv.means[k, :d] + fv.log_std[k, :d].exp() * eps  # (n·T, d)
        return self.decode(z.view(n, T, d))

    # ---- training hook -----------------------------------------------------------------------

    def fit_descriptor_gmm(self, mu: torch.Tensor, *, rate: float = _EM_RATE) -> None:
        """One stepwise-EM update of ``fv`` from the descriptors of posterior means ``mu``.

        ``mu`` (B, h·w, d) is detached; positions are dequantised (uniform noise over their
        grid cell), which keeps the mixture's variance along a grid axis from collapsing
        onto a single row or column.
        """
        desc = self._dequantised(self._with_positions(mu.detach()))  # (B, T, d')
        self._reseed_dead_components(desc.reshape(-1, desc.shape[-1]))
        self.fv.em_step(desc, rate=rate, reg=_EM_REG)

    @torch.no_grad()
    def finish_training(self, images: torch.Tensor | np.ndarray, *, seed: int = 0,
                        max_descriptors: int = 200_000, batch_size: int = 256) -> None:
        """Refit ``fv`` by full EM on the training descriptors (``fv_gmm="descriptors"``).

        The training loop calls this once, after its last epoch. Stepwise EM during training
        follows a moving encoder; on the final one, a full EM fit (k-means start, to
        convergence; :class:`~fisher_core.fisher.GaussianMixture`) of the dequantised
        descriptors of at most ``max_descriptors`` is 3–8 probe points better
        (``bench/eval_fvvae.py``). With ``fv_gmm="prior"`` it does nothing: the prior is the
        model.
        """
        if self.config.fv_gmm != "descriptors" or not self.config.final_em:
            return
        from ..fisher.gmm import GaussianMixture

        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        gen = torch.Generator().manual_seed(seed)
        n_keep = max(1, max_descriptors // (self.grid[0] * self.grid[1]))
        rows = torch.randperm(x.shape[0], generator=gen)[:n_keep].sort().values
        parts = []
        for start in range(0, rows.numel(), batch_size):
            xb = x[rows[start:start + batch_size]].to(self.device, torch.float32)
            parts.append(self._dequantised(self.descriptors(xb), gen).reshape(
                -1, self.fv.means.shape[1]).double().cpu())
        flat = torch.cat(parts).numpy()  # (n·h·w, d')
        gmm = GaussianMixture(self.config.n_components, reg_covar=_EM_REG,
                              random_state=seed).fit(flat)
        fv = self.fv
        as_t = lambda a: torch.as_tensor(np.asarray(a, np.float64), dtype=fv.means.dtype,  # noqa: E731
                                         device=fv.means.device)
        fv.means.copy_(as_t(gmm.means_))
        fv.log_std.copy_(0.5 * torch.log(as_t(gmm.covariances_)))
        fv.logits.copy_(torch.log(as_t(gmm.weights_)))

    def _dequantised(self, desc: torch.Tensor, gen: torch.Generator | None = None
                     ) -> torch.Tensor:
        """Descriptors (B, T, d') with positions spread uniformly over their grid cell."""
        if not self.config.spatial:
            return desc
        cell = torch.tensor(self._cell, dtype=desc.dtype, device=desc.device)
        u = torch.rand(desc[..., -2:].shape, generator=gen, dtype=desc.dtype).to(desc.device)
        return torch.cat([desc[..., :-2], desc[..., -2:] + (2.0 * u - 1.0) * cell], dim=-1)

    @torch.no_grad()
    def _reseed_dead_components(self, desc: torch.Tensor) -> None:
        """Move components of ``fv`` with weight < 1/(10 K) onto random descriptors (N, d')."""
        fv = self.fv
        dead = torch.nonzero(fv.weights() < 0.1 / fv.n_components).flatten()
        if dead.numel() == 0:
            return
        pick = torch.randint(0, desc.shape[0], (dead.numel(),), device=desc.device)
        fv.means[dead] = desc[pick]
        fv.log_std[dead] = 0.5 * torch.log(desc.var(0) + _EM_REG)
        fv.logits[dead] = fv.logits.logsumexp(0) - math.log(fv.n_components)  # w ≈ 1/K

    def training_step(
        self, batch: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, float]:
        """One Adam step on ``−(recon + β (prior + entropy))`` (encoder, decoder and prior
        together) plus, with ``fv_gmm="descriptors"``, :meth:`descriptor_nll` for ``fv``.

        The two parts share no parameter (the descriptors are detached), so adding them is
        the same as two optimisations, and Adam's per-parameter step sizes make any relative
        weight between them irrelevant. ``"loss"`` reports −ELBO (what ``log_prob`` bounds).
        """
        (opt,) = optimizers.values()
        opt.zero_grad(set_to_none=True)
        t, mu = self._elbo(batch, 1, None)
        beta = self.config.kl_weight
        loss = -(t["recon"] + t["prior"] + t["entropy"]).mean()
        objective = -(t["recon"] + beta * (t["prior"] + t["entropy"])).mean()
        metrics = {"loss": float(loss.detach())}
        if not torch.isfinite(objective):
            return metrics | {"loss": float("nan")}
        objective.backward()
        opt.step()
        if self.config.fv_gmm == "descriptors":
            self.fit_descriptor_gmm(mu)
        return metrics | {k: float(v.detach().mean()) for k, v in t.items()}
