"""Adversarial Fisher vectors (Zhai et al., NeurIPS 2019), their D-pool baseline and a monitor.

A GAN discriminator read as an energy-based model, ``pθ(x) = exp(D(x)) / Z(θ)``, has the
Fisher score ``∇θ log pθ(x) = ∇θ D(x) − E_pθ[∇θ D]``; the generator stands in for pθ, so

    U_x = ∇θ D(x) − E_z ∇θ D(G(z)),      I = E_z[U_G(z)²] (diagonal),
    V_x = diag(I)^(−1/2) U_x             (in practice U_x / (√I + 1e-6), as the reference code)

over the **discriminator's parameters only**. With the Fisher-score engine this is
``FisherScorer(model, center=True, normalize=...)`` fitted on generator samples (mean and
variance of their scores) and applied to real images: centring subtracts the generator mean,
and with ``center=True`` the engine's diagonal is the variance ``E[(U − m)²] = E_z[U_G(z)²]``.

Projections. The paper's AFV lives in parameter space (dimension = D's parameter count).
``projection=None`` gives exactly that. With a random projection R (``dim`` outputs) there
are two different things one may call "the AFV", both available:

- ``normalize="fim_diag_exact"`` (default): the paper's V_x, computed in parameter space
  and then projected, ``Rᵀ V_x`` (Johnson–Lindenstrauss: inner products of V, i.e. the Fisher
  kernel, are approximately kept). Costs one extra pass with explicit per-example gradients;
- ``normalize="fim_diag"``: project first, then centre and scale each *projected* coordinate
  by its own variance over generator samples (cheaper; a different, data-whitened kernel).

The training monitor built on these vectors is :class:`fisher_core.metrics.FisherMonitor`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..fisher import FisherScorer
from .embedding import Embedding

__all__ = [
    "adversarial_fisher_vectors",
    "afv_embedding",
    "afv_scorer",
    "d_pool_embedding",
    "discriminator_pool",
    "generator_samples",
]

Progress = Callable[[float, str], None]
_NORMALIZE = ("fim_diag", "fim_diag_exact")


def as_image_tensor(images: Any, name: str = "images") -> torch.Tensor:
    """(N, C, H, W) float32 tensor from an ndarray, a tensor or an ImageDataset."""
    if hasattr(images, "images") and isinstance(images.images, np.ndarray):
        images = images.images
    if isinstance(images, torch.Tensor):  # keep float64 for float64 models
        t = images.detach().cpu()
        t = t if t.is_floating_point() else t.float()
    else:
        t = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if t.ndim != 4 or t.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, C, H, W) with N ≥ 1; got "
                         f"{tuple(t.shape)}.")
    return t


def check_gan(model: Any) -> None:
    if not isinstance(model, nn.Module) or not all(
            callable(getattr(model, a, None)) for a in ("log_prob", "sample")):
        raise TypeError(
            f"model must be an nn.Module with log_prob (the discriminator D(x)) and sample "
            f"(the generator), e.g. fisher_core.models.EBGAN; got {type(model).__name__}."
        )


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return value


def discriminator_params(model: nn.Module) -> list[str] | None:
    names = getattr(model, "discriminator_parameter_names", None)
    return list(names()) if callable(names) else None


@torch.no_grad()
def generator_samples(model: nn.Module, n: int, *, seed: int = 0,
                      batch_size: int = 256) -> torch.Tensor:
    """``n`` generator images from ``model.sample``, drawn in chunks with one seeded generator.

    Returns
    -------
    Tensor of shape (n, C, H, W), on the CPU
        What ``model.log_prob`` takes (for FisherLab models: floats in [0, 1]).
    """
    check_gan(model)
    positive_int(n, "n_generator_samples")
    where = next(iter(model.parameters()), None)
    where = where if where is not None else next(iter(model.buffers()))  # fitted by EM
    gen = torch.Generator(device=where.device)
    gen.manual_seed(int(seed))
    parts = [model.sample(min(batch_size, n - s), generator=gen)
             for s in range(0, n, batch_size)]
    return torch.cat(parts).detach().cpu()


def afv_scorer(
    model: nn.Module,
    *,
    n_generator_samples: int = 1024,
    dim: int | None = 512,
    projection: str | None = "sparse",
    normalize: str = "fim_diag_exact",
    params: Sequence[str] | None = None,
    batch_size: int = 64,
    seed: int = 0,
    samples: torch.Tensor | np.ndarray | None = None,
    progress: Progress | None = None,
) -> FisherScorer:
    """A :class:`~fisher_core.fisher.FisherScorer` fitted on generator samples (AFV statistics).

    Parameters
    ----------
    model : nn.Module
        A GAN with ``log_prob(x) = D(x)`` and ``sample(n, generator=)`` (e.g. ``EBGAN``).
    n_generator_samples : int, default=1024
        Samples G(z) that estimate the mean score and the diagonal Fisher information
        (1,024 in the reference code).
    dim : int or None, default=512
        Output dimension; ``None`` with ``projection=None`` keeps one column per parameter.
    projection : {"sparse", "gaussian", "kron"} or None, default="sparse"
        Random projection (see the module docstring for how it interacts with ``normalize``).
    normalize : {"fim_diag_exact", "fim_diag"}, default="fim_diag_exact"
        Parameter-space diagonal (the paper's) or the projected-space one; identical when
        ``projection=None``.
    params : list of str or None, default=None
        Parameters to differentiate; ``None`` takes ``model.discriminator_parameter_names()``
        when the model has it (D only, as in the paper), else every trainable parameter.
    batch_size : int, default=64
    seed : int, default=0
        Seeds the generator samples and the projection.
    samples : Tensor, ndarray or None, default=None
        Use these generator samples instead of drawing ``n_generator_samples``.
    progress : callable(fraction, message) or None, default=None

    Returns
    -------
    FisherScorer
        Fitted; ``transform(images)`` gives AFVs.
    """
    check_gan(model)
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be one of {_NORMALIZE}; got {normalize!r}.")
    if samples is None:
        samples = generator_samples(model, n_generator_samples, seed=seed)
    fake = as_image_tensor(samples, "samples")
    scorer = FisherScorer(
        model, dim=dim, projection=projection, normalize=normalize, center=True,
        params=list(params) if params is not None else discriminator_params(model),
        batch_size=batch_size, seed=seed,
    )

    def report(done: int, total: int | None) -> None:
        if progress is not None:
            total = total or fake.shape[0]
            progress(done / total, f"AFV statistics: {done:,}/{total:,} generator samples")

    return scorer.fit(fake, progress=report)


def adversarial_fisher_vectors(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    n_generator_samples: int = 1024,
    dim: int | None = 512,
    projection: str | None = "sparse",
    normalize: str = "fim_diag_exact",
    params: Sequence[str] | None = None,
    batch_size: int = 64,
    seed: int = 0,
    samples: torch.Tensor | np.ndarray | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Adversarial Fisher vectors ``V_x = diag(I)^(−1/2) (∇θ D(x) − E_z ∇θ D(G(z)))``.

    Parameters
    ----------
    model : nn.Module
        A GAN with ``log_prob(x) = D(x)`` and ``sample`` (e.g. ``EBGAN``).
    images : ndarray or Tensor of shape (N, C, H, W)
        Images to embed, in the range ``log_prob`` takes ([0, 1] for FisherLab models).
    n_generator_samples, dim, projection, normalize, params, batch_size, seed, samples
        See :func:`afv_scorer`.
    progress : callable(fraction, message) or None, default=None

    Returns
    -------
    ndarray of shape (N, dim), float32
        ``dim`` = number of differentiated parameters when ``projection=None``.
    """
    x = as_image_tensor(images)
    n_fit = n_generator_samples if samples is None else len(samples)
    passes = 2 if normalize == "fim_diag_exact" and projection is not None else 1
    share = passes * n_fit / (passes * n_fit + x.shape[0])

    def stage(lo: float, hi: float) -> Progress | None:
        if progress is None:
            return None
        return lambda f, msg: progress(lo + (hi - lo) * f, msg)

    scorer = afv_scorer(model, n_generator_samples=n_generator_samples, dim=dim,
                        projection=projection, normalize=normalize, params=params,
                        batch_size=batch_size, seed=seed, samples=samples,
                        progress=stage(0.0, share))
    after = stage(share, 1.0)

    def report(done: int, total: int | None) -> None:
        if after is not None:
            after(done / (total or x.shape[0]), f"AFVs: {done:,}/{total or x.shape[0]:,} images")

    return scorer.transform(x, progress=report)


@torch.no_grad()
def discriminator_pool(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    layer: str | int = "all",
    batch_size: int = 256,
) -> np.ndarray:
    """Spatially averaged discriminator activations ("D-pool", the baseline of Table 1).

    Parameters
    ----------
    model : nn.Module
        A model with ``pool_features(x, layer=)`` (``EBGAN``).
    images : ndarray or Tensor of shape (N, C, H, W)
    layer : "all" or int, default="all"
        ``"all"``: the spatial means of every D block concatenated (the reference code's
        ``get_pool``); an int: one block (0 = finest, −1 = deepest).
    batch_size : int, default=256

    Returns
    -------
    ndarray of shape (N, F), float32
    """
    if not callable(getattr(model, "pool_features", None)):
        raise TypeError(
            f"{type(model).__name__} has no pool_features(x, layer=); D-pool features need a "
            "discriminator such as fisher_core.models.EBGAN (or use "
            "fisher_core.activation_embedding with a layer name)."
        )
    x = as_image_tensor(images)
    positive_int(batch_size, "batch_size")
    was = model.training
    model.eval()  # spectral norm: use the stored power-iteration vectors, update nothing
    try:
        p = next(model.parameters())
        parts = [model.pool_features(x[s : s + batch_size].to(p.device, p.dtype), layer=layer)
                 .float().cpu() for s in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was)
    return torch.cat(parts).numpy()


def _model_name(model: nn.Module, model_name: str | None) -> str:
    return model_name or getattr(type(model), "family", "") or type(model).__name__


def afv_embedding(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    dataset_key: str = "",
    model_name: str | None = None,
    n_generator_samples: int = 1024,
    dim: int | None = 512,
    projection: str | None = "sparse",
    normalize: str = "fim_diag_exact",
    batch_size: int = 64,
    seed: int = 0,
    progress: Progress | None = None,
) -> Embedding:
    """:func:`adversarial_fisher_vectors` as an :class:`Embedding` (kind ``"afv"``)."""
    vectors = adversarial_fisher_vectors(
        model, images, n_generator_samples=n_generator_samples, dim=dim,
        projection=projection, normalize=normalize, batch_size=batch_size, seed=seed,
        progress=progress)
    return Embedding(vectors, dataset_key, "afv", model=_model_name(model, model_name),
                     normalization=f"center+{normalize}",
                     projection=f"{projection}-{dim}" if projection else None,
                     params={"n_generator_samples": n_generator_samples, "dim": dim,
                             "projection": projection, "normalize": normalize, "seed": seed})


def d_pool_embedding(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    layer: str | int = "all",
    dataset_key: str = "",
    model_name: str | None = None,
    batch_size: int = 256,
) -> Embedding:
    """:func:`discriminator_pool` as an :class:`Embedding` (kind ``"d_pool"``)."""
    vectors = discriminator_pool(model, images, layer=layer, batch_size=batch_size)
    return Embedding(vectors, dataset_key, "d_pool", model=_model_name(model, model_name),
                     normalization="none", params={"layer": layer})
