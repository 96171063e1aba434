"""Embeddings from trained deep models: Fisher scores and the baselines they are compared with.

Every function returns an :class:`~fisher_core.embeddings.Embedding`, the same type as the
classical Fisher vectors, so UMAP, probes, decoders and metrics treat all spaces alike:

- :func:`fisher_score_embedding`: ``U(x) = ∇θ log pθ(x)`` through the Fisher-score engine
  (projected, optionally centred and scaled by the diagonal Fisher information);
- :func:`activation_embedding`: a layer's activations, pooled over space;
- :func:`latent_embedding`: a VAE's posterior means.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .embedding import Embedding

__all__ = [
    "POOLS",
    "activation_embedding",
    "default_activation_layer",
    "fisher_score_embedding",
    "latent_embedding",
]

Progress = Callable[[float, str], None]
POOLS = ("mean", "max", "meanmax", "none")


def _images(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if t.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W); got {tuple(t.shape)}.")
    return t


def _model_name(model: nn.Module, model_name: str | None) -> str:
    return model_name or getattr(type(model), "family", "") or type(model).__name__


def _model_samples(model: nn.Module, n: int, seed: int, progress: Progress | None,
                   share: float, batch: int = 64) -> torch.Tensor:
    """``n`` samples of ``model`` (seeded), drawn in batches with progress: (n, C, H, W)."""
    if not callable(getattr(model, "sample", None)):
        raise TypeError(f"fim_from='samples' needs a model with sample(n); "
                        f"{type(model).__name__} has none.")
    gen = torch.Generator().manual_seed(seed)
    parts = []
    with torch.no_grad():
        for start in range(0, n, batch):
            parts.append(model.sample(min(batch, n - start), generator=gen).float().cpu())
            if progress is not None:
                done = min(n, start + batch)
                progress(share * done / n, f"model samples for the Fisher information: "
                                           f"{done:,}/{n:,}")
    return torch.cat(parts)


def fisher_score_embedding(
    model: nn.Module,
    images: np.ndarray,
    *,
    dim: int | None = 512,
    projection: str | None = "sparse",
    normalize: str | None = "fim_diag",
    center: bool = True,
    power: float | None = None,
    l2: bool = False,
    fim_from: str = "data",
    n_fim_samples: int = 256,
    batch_size: int = 64,
    seed: int = 0,
    dataset_key: str = "",
    model_name: str | None = None,
    progress: Progress | None = None,
) -> Embedding:
    """Per-example Fisher scores of ``model`` on ``images`` as an embedding.

    Parameters
    ----------
    model : nn.Module
        Any module with ``log_prob(x) -> (B,)``.
    images : ndarray of shape (N, C, H, W)
        In the range the model takes (FisherLab models: floats in [0, 1]).
    dim : int or None, default=512
        Output dimension of the random projection; ``None`` with ``projection=None`` keeps
        the exact gradient (one column per parameter).
    projection : {"sparse", "gaussian", "kron"} or None, default="sparse"
        Johnson–Lindenstrauss map (see :mod:`fisher_core.fisher.projection`).
    normalize : {None, "fim_diag", "fim_diag_exact"}, default="fim_diag"
        Scale by the empirical diagonal Fisher information estimated on ``images``.
    center : bool, default=True
        Subtract the mean score (the expected score is zero under the model, not the data).
    power : float or None, default=None
        Signed power normalisation exponent.
    l2 : bool, default=False
        Final L2 normalisation.
    fim_from : {"data", "samples"}, default="data"
        Where the mean score (``center``) and the diagonal Fisher information (``normalize``)
        are estimated: on ``images``, or on ``n_fim_samples`` samples of the model — the
        Fisher information is an expectation over the model, I = E_{x∼pθ}[U Uᵀ] (Zhai et al.
        2019), and the expected score is zero only there.
    n_fim_samples : int, default=256
        Model samples drawn (seeded with ``seed``) when ``fim_from="samples"``.
    batch_size, seed
        Passed to :func:`fisher_core.fisher.fisher_scores`.
    dataset_key, model_name : str
        Recorded in the embedding's metadata.
    progress : callable(fraction, message), optional

    Returns
    -------
    Embedding
        kind ``"fisher"``, shape (N, dim).
    """
    from ..fisher import fisher_scores

    if fim_from not in ("data", "samples"):
        raise ValueError(f"fim_from must be 'data' or 'samples'; got {fim_from!r}.")
    if isinstance(n_fim_samples, bool) or not isinstance(n_fim_samples, int) \
            or n_fim_samples < 2:
        raise ValueError(f"n_fim_samples must be an integer >= 2; got {n_fim_samples!r}.")
    x = _images(images)
    n = x.shape[0]
    passes = 2 if (center or normalize) else 1
    from_samples = fim_from == "samples" and (center or normalize)
    share = 0.3 if from_samples else 0.0  # of the bar: drawing the samples

    def report(done: int, total: int | None) -> None:
        if progress is not None:
            total = total or n * passes
            progress(share + (1 - share) * done / total,
                     f"Fisher scores: {done:,}/{total:,} examples")

    was_training = model.training
    model.eval()
    # a stochastic log_prob (a VAE's ELBO) draws its noise from the global RNG: seed it here
    # (fork_rng restores the caller's RNG state afterwards)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            ref = (_model_samples(model, n_fim_samples, seed, progress, share)
                   if from_samples else None)
            vectors = fisher_scores(model, x, dim=dim, projection=projection,
                                    normalize=normalize, center=center, batch_size=batch_size,
                                    seed=seed, power=power, l2=l2, fim_samples=ref,
                                    progress=report)
    finally:
        model.train(was_training)
    return score_embedding(vectors, dataset_key, _model_name(model, model_name), dim=dim,
                           projection=projection, normalize=normalize, center=center,
                           power=power, l2=l2, seed=seed,
                           from_samples=n_fim_samples if from_samples else None)


def score_embedding(vectors: np.ndarray, dataset_key: str, model_name: str | None, *,
                    dim: int | None, projection: str | None, normalize: str | None,
                    center: bool, power: float | None, l2: bool, seed: int,
                    from_samples: int | None = None, **extra: object) -> Embedding:
    """The :class:`Embedding` record of Fisher scores (kind ``"fisher"``): the normalisation
    label and parameters every producer of scores (one process or sharded) writes alike.
    ``extra`` goes into ``params``."""
    norm = "+".join(s for s in ("center" if center else "", normalize or "",
                                f"from{from_samples}samples" if from_samples else "",
                                f"power{power}" if power else "", "l2" if l2 else "") if s)
    return Embedding(vectors, dataset_key, "fisher", model=model_name,
                     normalization=norm or "none",
                     projection=f"{projection}-{dim}" if projection else None,
                     params={"dim": dim, "projection": projection, "normalize": normalize,
                             "center": center, "power": power, "l2": l2, "seed": seed,
                             **extra})


def default_activation_layer(model: nn.Module) -> str:
    """The layer whose activations serve as the baseline embedding of ``model``.

    The model's ``activation_layer`` attribute when it has one (FisherLab models do), else
    the last ``Conv2d`` or ``Linear`` module.
    """
    name = getattr(model, "activation_layer", None)
    if name:
        return str(name)
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer; pass layer=.")
    return layers[-1]


def _pool(a: torch.Tensor, pool: str) -> torch.Tensor:
    if a.ndim == 2 or pool == "none":
        return a.flatten(1)
    spatial = a.flatten(2)  # (B, D, H·W)
    if pool == "mean":
        return spatial.mean(2)
    if pool == "max":
        return spatial.amax(2)
    return torch.cat([spatial.mean(2), spatial.amax(2)], dim=1)  # (B, 2D)


def activation_embedding(
    model: nn.Module,
    images: np.ndarray,
    *,
    layer: str | None = None,
    pool: str = "mean",
    batch_size: int = 256,
    dataset_key: str = "",
    model_name: str | None = None,
    progress: Progress | None = None,
) -> Embedding:
    """A layer's activations under ``model.log_prob(x)``, pooled over space.

    Parameters
    ----------
    model : nn.Module
        Any module with ``log_prob``; the layer is read with a forward hook.
    images : ndarray of shape (N, C, H, W)
    layer : str or None, default=None
        Name in ``model.named_modules()``; ``None`` uses :func:`default_activation_layer`.
    pool : {"mean", "max", "meanmax", "none"}, default="mean"
        Global pooling over H, W of a (B, D, H, W) activation (``"none"`` flattens).
    batch_size : int, default=256
    dataset_key, model_name : str
        Recorded in the embedding's metadata.
    progress : callable(fraction, message), optional

    Returns
    -------
    Embedding
        kind ``"activations"``.
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}; got {pool!r}.")
    layer = layer or default_activation_layer(model)
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"layer {layer!r} is not a module of {type(model).__name__}; "
                         f"choose one of {[n for n in modules if n][:20]}.")
    x = _images(images)
    caught: list[torch.Tensor] = []
    hook = modules[layer].register_forward_hook(lambda m, i, out: caught.append(out.detach()))
    parts = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                caught.clear()
                model.log_prob(x[start:start + batch_size])
                parts.append(_pool(caught[-1], pool).float().numpy())
                if progress is not None:
                    done = min(x.shape[0], start + batch_size)
                    progress(done / x.shape[0], f"activations: {done:,}/{x.shape[0]:,}")
    finally:
        hook.remove()
        model.train(was_training)
    return Embedding(np.concatenate(parts), dataset_key, "activations",
                     model=_model_name(model, model_name), normalization="none",
                     params={"layer": layer, "pool": pool})


def latent_embedding(
    model: nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    dataset_key: str = "",
    model_name: str | None = None,
    progress: Progress | None = None,
) -> Embedding:
    """Posterior means E[z | x] of a VAE (any model with ``latent_means``).

    Returns
    -------
    Embedding
        kind ``"latent"``, shape (N, latent_dim).
    """
    if not hasattr(model, "latent_means"):
        raise ValueError(f"{type(model).__name__} has no latent space (latent_means); "
                         "latent embeddings need a VAE.")
    x = _images(images)
    parts = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                parts.append(model.latent_means(x[start:start + batch_size]).float().numpy())
                if progress is not None:
                    done = min(x.shape[0], start + batch_size)
                    progress(done / x.shape[0], f"latent means: {done:,}/{x.shape[0]:,}")
    finally:
        model.train(was_training)
    return Embedding(np.concatenate(parts), dataset_key, "latent",
                     model=_model_name(model, model_name), normalization="none")
