"""A differentiable Fisher-vector layer: sets of local descriptors → Fisher vectors, in torch.

:class:`FisherVectorLayer` holds a diagonal GMM as ``nn.Parameter`` s — mixture weights through
softmax logits, means, and standard deviations through their logarithm (always positive) —
and encodes a batch of sets of descriptors (B, n, D) exactly as
:func:`fisher_core.fisher.fisher_vector` does (same layout, signs, normalisations), but with
autograd: gradients reach the descriptors (so an encoder upstream can be trained through it)
and the GMM parameters. :meth:`FisherVectorLayer.log_likelihood` gives the GMM log-density
of each descriptor, for learning the mixture by gradient ascent (e.g. as a prior).

With posteriors γ_t(k) of the N descriptors of a set:

    G_α_k = 1/N Σ_t (γ_t(k) − w_k) · c_α            c_α = 1/√w_k
    G_μ_k = 1/N Σ_t γ_t(k) (x_t − μ_k)/σ_k² · c_μ    c_μ = σ_k/√w_k
    G_σ_k = 1/N Σ_t γ_t(k) [(x_t − μ_k)²/σ_k³ − 1/σ_k] · c_σ,   c_σ = σ_k/√(2 w_k)

(``normalization="analytic"``: the analytical diagonal FIM^(−1/2) of Sánchez et al. 2013;
``"none"``: all c = 1, the plain gradient of the mean log-likelihood w.r.t. the softmax
logits, μ and σ). Then an optional signed power ``sign(z)|z|^p`` and L2 (norm floored at
1e-12). The derivative of ``|z|^p`` is infinite at 0; the backward pass evaluates it at
``max(|z|, power_eps)`` so that gradients stay finite (the forward value is exact).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FisherVectorLayer", "signed_power"]

_LOG_2PI = math.log(2.0 * math.pi)
_NORMALIZATIONS = ("analytic", "none")
_L2_FLOOR = 1e-12


class _SignedPower(torch.autograd.Function):
    """``sign(z)·|z|^p`` with the derivative ``p·max(|z|, eps)^(p−1)`` (finite at 0)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, p: float, eps: float) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.p, ctx.eps = p, eps
        return torch.sign(z) * z.abs().pow(p)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (z,) = ctx.saved_tensors
        return grad * ctx.p * z.abs().clamp_min(ctx.eps).pow(ctx.p - 1.0), None, None


def signed_power(z: torch.Tensor, power: float, eps: float = 1e-6) -> torch.Tensor:
    """Signed power normalisation ``sign(z)·|z|^power`` with a finite derivative at 0.

    Parameters
    ----------
    z : Tensor
    power : float
        Exponent p > 0 (0.5 for "improved" Fisher vectors).
    eps : float, default=1e-6
        The derivative is evaluated at ``max(|z|, eps)``.
    """
    return _SignedPower.apply(z, float(power), float(eps))


class FisherVectorLayer(nn.Module):
    """Fisher-vector encoding of sets of local descriptors under a learnable diagonal GMM.

    Parameters
    ----------
    n_components : int
        GMM components K.
    dim : int
        Descriptor dimension D.
    normalization : {"analytic", "none"}, default="analytic"
        Per-block scaling (module docstring).
    power : float or None, default=0.5
        Signed power exponent; ``None`` skips it.
    l2 : bool, default=True
        Final L2 normalisation.
    power_eps : float, default=1e-6
        Where the power's derivative is floored (see :func:`signed_power`).
    init_scale : float, default=1.0
        Means start as ``init_scale · N(0, I)`` draws (torch's global RNG), standard
        deviations at ``init_scale``, weights uniform.

    Attributes
    ----------
    logits : Parameter of shape (K,)
        ``w = softmax(logits)``.
    means : Parameter of shape (K, D)
    log_std : Parameter of shape (K, D)
        ``σ = exp(log_std)``.

    Notes
    -----
    The output has ``K + 2·K·D`` entries, laid out [α (K), μ (K·D, component-major),
    σ (K·D)], and equals :func:`fisher_core.fisher.fisher_vector` with the same mixture
    (:meth:`to_gmm`) and options.
    """

    def __init__(self, n_components: int, dim: int, *, normalization: str = "analytic",
                 power: float | None = 0.5, l2: bool = True, power_eps: float = 1e-6,
                 init_scale: float = 1.0):
        super().__init__()
        for name, v in (("n_components", n_components), ("dim", dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer; got {v!r}.")
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {_NORMALIZATIONS}; got {normalization!r}.")
        if power is not None and (isinstance(power, bool) or not isinstance(power, int | float)
                                  or not power > 0):
            raise ValueError(f"power must be None or a number > 0 (0.5 is usual); got {power!r}.")
        if not isinstance(init_scale, int | float) or not init_scale > 0:
            raise ValueError(f"init_scale must be a positive number; got {init_scale!r}.")
        self.n_components, self.dim = n_components, dim
        self.normalization, self.power, self.l2 = normalization, power, bool(l2)
        self.power_eps = float(power_eps)
        self.logits = nn.Parameter(torch.zeros(n_components))
        self.means = nn.Parameter(torch.randn(n_components, dim) * init_scale)
        self.log_std = nn.Parameter(torch.full((n_components, dim), math.log(init_scale)))

    @property
    def out_features(self) -> int:
        """Length of one Fisher vector, ``K + 2·K·D``."""
        return self.n_components * (1 + 2 * self.dim)

    def extra_repr(self) -> str:
        return (f"n_components={self.n_components}, dim={self.dim}, "
                f"normalization={self.normalization!r}, power={self.power}, l2={self.l2}")

    # ---- the mixture -------------------------------------------------------------------------

    def weights(self) -> torch.Tensor:
        """Mixture weights ``softmax(logits)``, shape (K,)."""
        return F.softmax(self.logits, dim=0)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"descriptors must be a float tensor; got "
                            f"{getattr(x, 'dtype', type(x).__name__)}.")
        if x.ndim < 2 or x.shape[-1] != self.dim:
            raise ValueError(
                f"descriptors must have shape (..., n, {self.dim}) (D = {self.dim}); got "
                f"{tuple(x.shape)}.")
        return x

    def _log_joint(self, x: torch.Tensor, dims: slice = slice(None)) -> torch.Tensor:
        """log w_k + log N(x | μ_k, σ_k²) for every descriptor and component: (..., n, K)."""
        means, log_std = self.means[:, dims], self.log_std[:, dims]  # (K, D')
        z = (x.unsqueeze(-2) - means) * torch.exp(-log_std)  # (..., n, K, D')
        log_n = -0.5 * (z.pow(2).sum(-1) + _LOG_2PI * means.shape[1]) - log_std.sum(-1)
        return F.log_softmax(self.logits, dim=0) + log_n  # (..., n, K)

    def _marginal_joint(self, x: torch.Tensor, dims: slice | None) -> torch.Tensor:
        if dims is None:
            return self._log_joint(self._check(x))
        width = len(range(self.dim)[dims])
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[-1] != width:
            raise ValueError(f"descriptors must have shape (..., n, {width}) for dims={dims}; "
                             f"got {tuple(getattr(x, 'shape', ()))}.")
        return self._log_joint(x, dims)

    def log_posteriors(self, descriptors: torch.Tensor, *, dims: slice | None = None
                       ) -> torch.Tensor:
        """log γ_t(k), the log posterior of each component for each descriptor: (..., n, K).

        ``dims`` as in :meth:`log_likelihood` (posteriors under the marginal mixture).
        """
        return F.log_softmax(self._marginal_joint(descriptors, dims), dim=-1)

    def log_likelihood(self, descriptors: torch.Tensor, *, dims: slice | None = None
                       ) -> torch.Tensor:
        """GMM log-density ``log Σ_k w_k N(x_t | μ_k, σ_k²)`` of every descriptor, in nats.

        Parameters
        ----------
        descriptors : Tensor of shape (..., n, D) (or (..., n, D') with ``dims``)
        dims : slice or None, default=None
            Evaluate the *marginal* mixture of these feature dimensions (for a diagonal GMM,
            the same weights with the selected means and deviations); ``None``: all D.

        Returns
        -------
        Tensor of shape (..., n)
        """
        return torch.logsumexp(self._marginal_joint(descriptors, dims), dim=-1)

    @torch.no_grad()
    def em_step(self, descriptors: torch.Tensor, *, rate: float = 1.0,
                reg: float = 1e-6) -> FisherVectorLayer:
        """One (stepwise) EM update of the mixture from a batch of descriptors, in place.

        The E-step takes the posteriors γ_t(k) of all descriptors under the current mixture;
        the sufficient statistics ``(w_k, w_k μ_k, w_k (σ_k² + μ_k²))`` move a fraction
        ``rate`` towards the batch's ``(mean γ, mean γ x, mean γ x²)``, and the M-step reads
        the parameters back (``σ² + reg``). ``rate=1`` on all the data is one iteration of
        classical EM; ``rate < 1`` on mini-batches is stepwise EM (Cappé & Moulines 2009)
        with a constant step, which tracks descriptors that move while an encoder trains.

        Parameters
        ----------
        descriptors : Tensor of shape (..., n, D)
            All descriptors are pooled (sets do not matter for the mixture).
        rate : float, default=1.0
            Step ρ in (0, 1].
        reg : float, default=1e-6
            Added to every variance (as scikit-learn's ``reg_covar``).

        Returns
        -------
        FisherVectorLayer
            self.
        """
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise ValueError(f"rate must be a number in (0, 1]; got {rate!r}.")
        x = self._check(descriptors).reshape(-1, self.dim)  # (N, D)
        gamma = F.softmax(self._log_joint(x), dim=-1)  # (N, K)
        w, var = self.weights(), torch.exp(2.0 * self.log_std)  # (K,), (K, D)
        s0 = (1.0 - rate) * w + rate * gamma.mean(0)  # (K,)
        s1 = (1.0 - rate) * w[:, None] * self.means + rate * gamma.T @ x / x.shape[0]
        s2 = ((1.0 - rate) * w[:, None] * (var + self.means.pow(2))
              + rate * gamma.T @ x.pow(2) / x.shape[0])  # (K, D)
        s0 = s0.clamp_min(torch.finfo(s0.dtype).tiny)
        means = s1 / s0[:, None]
        var = (s2 / s0[:, None] - means.pow(2)).clamp_min(0.0) + reg
        self.logits.copy_(torch.log(s0))
        self.means.copy_(means)
        self.log_std.copy_(0.5 * torch.log(var))
        return self

    # ---- the encoding ------------------------------------------------------------------------

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        """Fisher vectors of ``B`` sets of ``n`` descriptors.

        Parameters
        ----------
        descriptors : Tensor of shape (B, n, D) or (n, D)

        Returns
        -------
        Tensor of shape (B, K + 2·K·D) or (K + 2·K·D,)
        """
        x = self._check(descriptors)
        single = x.ndim == 2
        if single:
            x = x.unsqueeze(0)  # (1, n, D)
        if x.ndim != 3 or x.shape[1] == 0:
            raise ValueError(f"descriptors must be (B, n, D) or (n, D) with n ≥ 1; got "
                             f"{tuple(descriptors.shape)}.")
        fv = self._encode(x)
        if self.power is not None:
            fv = signed_power(fv, self.power, self.power_eps)
        if self.l2:
            fv = fv / torch.linalg.vector_norm(fv, dim=1, keepdim=True).clamp_min(_L2_FLOOR)
        return fv[0] if single else fv

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Un-normalised (power/L2-free) Fisher vectors (B, K + 2KD) of (B, n, D) sets."""
        b, n, _ = x.shape
        gamma = F.softmax(self._log_joint(x), dim=-1)  # (B, n, K)
        w = self.weights()  # (K,)
        std = torch.exp(self.log_std)  # (K, D)
        u = (x.unsqueeze(-2) - self.means) / std  # (B, n, K, D), (x − μ)/σ
        g_alpha = gamma.mean(1) - w  # (B, K)
        # γ (x − μ)/σ² and γ [(x − μ)²/σ³ − 1/σ], averaged over the set
        g_mu = torch.einsum("bnk,bnkd->bkd", gamma, u) / (n * std)  # (B, K, D)
        g_sigma = torch.einsum("bnk,bnkd->bkd", gamma, u.pow(2) - 1.0) / (n * std)
        if self.normalization == "analytic":
            g_alpha = g_alpha / w.sqrt()
            g_mu = g_mu * std / w.sqrt()[:, None]
            g_sigma = g_sigma * std / (2.0 * w).sqrt()[:, None]
        return torch.cat([g_alpha, g_mu.flatten(1), g_sigma.flatten(1)], dim=1)

    # ---- interoperability --------------------------------------------------------------------

    def to_gmm(self):
        """The current mixture as a fitted :class:`fisher_core.GaussianMixture` (float64).

        Usable with :func:`fisher_core.fisher.fisher_vector` and for ``score_samples``.
        """
        from .gmm import GaussianMixture

        gmm = GaussianMixture(self.n_components)
        with torch.no_grad():
            gmm.weights_ = self.weights().double().cpu().numpy()
            gmm.means_ = self.means.double().cpu().numpy().copy()
            gmm.covariances_ = torch.exp(2.0 * self.log_std.double()).cpu().numpy()
        gmm.n_features_in_ = self.dim
        gmm.lower_bound_, gmm.n_iter_, gmm.converged_ = float("nan"), 0, True
        return gmm

    @torch.no_grad()
    def load_gmm(self, gmm) -> FisherVectorLayer:
        """Copy the parameters of a fitted diagonal GMM (ours or scikit-learn's) into the layer.

        Returns
        -------
        FisherVectorLayer
            self.
        """
        from .gmm import gmm_parameters

        w, mu, var = gmm_parameters(gmm)
        if mu.shape != (self.n_components, self.dim):
            raise ValueError(
                f"gmm has {mu.shape[0]} components of dimension {mu.shape[1]}; the layer "
                f"needs K={self.n_components}, D={self.dim}.")
        to = lambda a: torch.as_tensor(np.asarray(a), dtype=self.means.dtype,  # noqa: E731
                                       device=self.means.device)
        self.logits.copy_(to(np.log(w)))
        self.means.copy_(to(mu))
        self.log_std.copy_(to(0.5 * np.log(var)))
        return self
