"""Patch GMM: the classical Fisher-vector model as a model family — a diagonal GMM over the
dense local descriptors of an image (patches, optional PCA, optional (x, y) position).

Model. An image x is a bag of L local descriptors d_l(x) (:mod:`fisher_core.fisher.descriptors`),
each drawn independently from one diagonal mixture,

    log p(x) := Σ_l log Σ_k w_k N(d_l(x) | μ_k, diag σ_k²),

the density whose Fisher score with respect to (w, μ, σ), normalised by the analytic Fisher
information, is the image's Fisher vector (Perronnin & Dance 2007; Sánchez et al. 2013). With
positions, a component's last two coordinates place it in the image (Krapac et al. 2011).
``log_prob`` is in nats per image; it is a density of the descriptors, not of the pixels (with
overlapping patches a pixel is counted more than once), so it compares models of one
descriptor recipe, not with a PixelCNN's bits/dim.

Fitting is EM (:func:`fisher_core.training.fit_patch_gmm`, used by the training entry points),
not gradient steps: the PCA of the patches, then :class:`fisher_core.fisher.GaussianMixture`
on a subsample of the descriptors. The parameters are buffers; :meth:`PatchGMM.descriptor` and
:meth:`PatchGMM.mixture` give back the fitted scikit-learn-style objects, so a Fisher-vector
embedding reuses the trained model instead of fitting a new mixture.

Samples draw every patch independently (its component given its position when ``spatial``),
map it back through the PCA and average overlapping patches: they show what each region's
components look like, not coherent images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..fisher._em import augment, gemm_coefficients
from ..fisher.descriptors import PatchDescriptor, default_patch, patch_positions
from ..fisher.gmm import GaussianMixture
from .base import ConfigError, GenerativeModel, check_images, make_generator

__all__ = ["PatchGMM", "PatchGMMConfig"]

@dataclass
class PatchGMMConfig:
    """Hyper-parameters of :class:`PatchGMM`.

    Parameters
    ----------
    channels : int, default=1
    height, width : int, default=32
    n_components : int, default=32
        Components K of the mixture; the Fisher vector has ``K (1 + 2 d)`` entries.
    patch : int, default=0
        Patch side p; 0 picks it from the image size (8×8 → 3, 32×32 → 6).
    stride : int, default=0
        Step between patches; 0 picks it with the patch (8×8 → 1, 32×32 → 2).
    pca : int, default=0
        Project each C·p·p patch on its top ``pca`` principal directions; 0 keeps raw patches.
    spatial : bool, default=True
        Append the patch centre (x, y) ∈ [0, 1] to each descriptor.
    max_descriptors : int, default=100000
        Random subsample of the training descriptors the mixture is fitted on.
    max_iter : int, default=100
        EM iterations at most (k-means initialisation first).
    tol : float, default=0.001
        EM stops when the mean log-likelihood per descriptor improves by less than this.
    """

    channels: int = 1
    height: int = 32
    width: int = 32
    n_components: int = 32
    patch: int = 0
    stride: int = 0
    pca: int = 0
    spatial: bool = True
    max_descriptors: int = 100_000
    max_iter: int = 100
    tol: float = 1e-3

    def __post_init__(self) -> None:
        for name, lo, hi in [
            ("channels", 1, 4), ("height", 1, 4096), ("width", 1, 4096),
            ("n_components", 1, 4096), ("patch", 0, 4096), ("stride", 0, 4096),
            ("pca", 0, 65536), ("max_descriptors", 1, 10**9), ("max_iter", 1, 100_000),
        ]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(
                    f"PatchGMMConfig.{name} must be an integer in [{lo}, {hi}]; got {value!r}."
                )
        auto_patch, auto_stride = default_patch(self.height, self.width)
        self.patch = self.patch or auto_patch
        self.stride = self.stride or auto_stride
        if self.patch > min(self.height, self.width):
            raise ConfigError(
                "PatchGMMConfig.patch must be at most the image side "
                f"{min(self.height, self.width)}; got {self.patch}."
            )
        raw = self.channels * self.patch**2
        if self.pca > raw:
            raise ConfigError(
                f"PatchGMMConfig.pca must be at most C·p·p = {raw} (0: no PCA); got {self.pca}."
            )
        t = self.tol
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise ConfigError(f"PatchGMMConfig.tol must be a number >= 0; got {t!r}.")
        if not isinstance(self.spatial, bool):
            raise ConfigError(
                f"PatchGMMConfig.spatial must be True or False; got {self.spatial!r}."
            )


class PatchGMM(GenerativeModel):
    """Diagonal GMM over dense patch descriptors (module docstring), fitted by EM.

    Parameters
    ----------
    config : PatchGMMConfig or None
        ``None`` uses the defaults.
    """

    family = "gmm"
    fitted_by_em = True  # :func:`fisher_core.training.fit_patch_gmm`, not gradient steps

    def __init__(self, config: PatchGMMConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or PatchGMMConfig()
        raw = cfg.channels * cfg.patch**2
        dim = (cfg.pca or raw) + 2 * cfg.spatial
        k = cfg.n_components
        self.register_buffer("pca_mean", torch.zeros(raw if cfg.pca else 0, dtype=torch.float64))
        self.register_buffer("pca_components", torch.zeros(cfg.pca, raw, dtype=torch.float64))
        self.register_buffer("weights", torch.full((k,), 1.0 / k, dtype=torch.float64))
        self.register_buffer("means", torch.zeros(k, dim, dtype=torch.float64))
        self.register_buffer("variances", torch.ones(k, dim, dtype=torch.float64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        positions = patch_positions(cfg.height, cfg.width, cfg.patch, cfg.stride)
        self.register_buffer("positions", torch.from_numpy(positions), persistent=False)  # (L, 2)

    @property
    def device(self) -> torch.device:
        return self.weights.device

    @property
    def n_parameters(self) -> int:
        """Free parameters of the mixture, K − 1 + 2 K d (the PCA is not counted)."""
        k, d = self.means.shape
        return k - 1 + 2 * k * d

    @property
    def descriptor_dim(self) -> int:
        """Dimension d of one descriptor."""
        return self.means.shape[1]

    # ------------------------------------------------------------------ descriptors
    def descriptors(self, x: torch.Tensor) -> torch.Tensor:
        """Descriptors of a batch, (B, C, H, W) → (B, L, d), as :class:`PatchDescriptor`."""
        cfg = self.config
        x = check_images(x, channels=cfg.channels)
        cols = F.unfold(x.to(torch.float64), kernel_size=cfg.patch, stride=cfg.stride)
        desc = cols.transpose(1, 2)  # (B, L, C·p·p)
        if cfg.pca:
            desc = (desc - self.pca_mean) @ self.pca_components.T  # (B, L, pca)
        if cfg.spatial:
            desc = torch.cat([desc, self.positions.expand(desc.shape[0], -1, -1)], dim=2)
        return desc

    def descriptor(self) -> PatchDescriptor:
        """The fitted :class:`PatchDescriptor` of this model (same patches, PCA, positions)."""
        cfg = self.config
        out = PatchDescriptor(patch=cfg.patch, stride=cfg.stride, pca=cfg.pca or None,
                              spatial=cfg.spatial)
        out.patch_, out.stride_, out.n_channels_ = cfg.patch, cfg.stride, cfg.channels
        if cfg.pca:
            out.mean_ = self.pca_mean.cpu().numpy().copy()
            out.components_ = self.pca_components.cpu().numpy().copy()
        return out

    def mixture(self) -> GaussianMixture:
        """The fitted mixture as a :class:`~fisher_core.fisher.GaussianMixture` (float64)."""
        self._require_fitted()
        gmm = GaussianMixture(self.config.n_components, dtype="float64")
        variances = self.variances.cpu().numpy().copy()
        gmm.weights_ = self.weights.cpu().numpy().copy()
        gmm.means_ = self.means.cpu().numpy().copy()
        gmm.covariances_ = variances
        gmm.precisions_ = 1.0 / variances
        gmm.precisions_cholesky_ = 1.0 / np.sqrt(variances)
        gmm.n_features_in_ = variances.shape[1]
        gmm.converged_, gmm.n_iter_, gmm.lower_bound_, gmm.lower_bounds_ = True, 0, np.nan, []
        return gmm

    def set_fitted(self, descriptor: PatchDescriptor, mixture: Any) -> None:
        """Take the parameters of a fitted descriptor (its PCA) and diagonal mixture."""
        cfg = self.config
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64,  # noqa: E731
                                         device=self.device)
        if cfg.pca:
            self.pca_mean.copy_(as_t(descriptor.mean_))
            self.pca_components.copy_(as_t(descriptor.components_))
        self.weights.copy_(as_t(mixture.weights_))
        self.means.copy_(as_t(mixture.means_))
        self.variances.copy_(as_t(mixture.covariances_))
        self.fitted.fill_(True)

    def _require_fitted(self) -> None:
        if not bool(self.fitted):
            raise RuntimeError(
                "this PatchGMM is not fitted yet; fit it with fisher_core.training."
                "fit_patch_gmm (or train it from the Train page / 'fisherlab train gmm')."
            )

    # ------------------------------------------------------------------ protocol
    def _log_joint(self, desc: torch.Tensor, dims: slice = slice(None)) -> torch.Tensor:
        """log w_k + log N(d | μ_k, σ_k²) over the dimensions ``dims``: (n, d') → (n, K)."""
        w_mat, bias = gemm_coefficients(self.weights, self.means[:, dims],
                                        self.variances[:, dims], torch.float64)
        return augment(desc) @ w_mat + bias  # (n, 2d') @ (2d', K)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Σ over patches of log p(descriptor), nats per image, shape (B,)."""
        self._require_fitted()
        desc = self.descriptors(x)  # (B, L, d)
        per_patch = torch.logsumexp(self._log_joint(desc.reshape(-1, desc.shape[2])), dim=1)
        return per_patch.reshape(desc.shape[:2]).sum(1).to(x.dtype)  # (B,)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | int | None = None) -> torch.Tensor:
        """``n`` images of independently drawn patches, overlaps averaged, shape (n, C, H, W)."""
        self._require_fitted()
        cfg = self.config
        gen = make_generator(generator, self.device)
        n_loc = self.positions.shape[0]
        if cfg.spatial:  # p(k | position) ∝ w_k N(position | μ_k^pos, σ_k^pos²)
            logits = self._log_joint(self.positions, slice(-2, None))  # (L, K)
        else:
            logits = torch.log(self.weights).expand(n_loc, -1)
        probs = torch.softmax(logits, dim=-1).expand(n, -1, -1).reshape(n * n_loc, -1)
        comp = torch.multinomial(probs, 1, generator=gen).squeeze(1)  # (n·L,)
        app = slice(0, self.descriptor_dim - 2 * cfg.spatial)
        mu, std = self.means[comp, app], self.variances[comp, app].sqrt()
        noise = torch.randn(mu.shape, generator=gen, dtype=mu.dtype, device=mu.device)
        z = mu + std * noise  # (n·L, d_app)
        if cfg.pca:
            z = z @ self.pca_components + self.pca_mean  # (n·L, C·p·p)
        cols = z.reshape(n, n_loc, -1).transpose(1, 2)  # (n, C·p·p, L)
        size = (cfg.height, cfg.width)
        images = F.fold(cols, size, kernel_size=cfg.patch, stride=cfg.stride)
        cover = F.fold(torch.ones_like(cols[:1]), size, kernel_size=cfg.patch, stride=cfg.stride)
        return (images / cover.clamp(min=1.0)).clamp(0.0, 1.0).float()

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        raise TypeError(
            "a PatchGMM is fitted by EM, not by gradient steps; use "
            "fisher_core.training.fit_patch_gmm (train_and_save does so for family 'gmm')."
        )

