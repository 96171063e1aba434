"""Dataset → Embedding with a trained FV-VAE: the learned Fisher-vector layer's output per image."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..models.fvvae import FVVAE
from .embedding import Embedding

__all__ = ["fvvae_embedding"]


def fvvae_embedding(
    model: FVVAE,
    images: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 256,
    dataset_key: str = "",
    model_name: str | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> Embedding:
    """:meth:`FVVAE.embed` of every image as an :class:`Embedding` (kind ``"fv_vae"``).

    Parameters
    ----------
    model : FVVAE
    images : ndarray or Tensor of shape (N, C, H, W)
        Floats in [0, 1].
    batch_size : int, default=256
    dataset_key, model_name : str
        Recorded in the embedding's metadata.
    progress : callable(fraction, message) or None, default=None

    Returns
    -------
    Embedding
        Shape (N, K·(1 + 2d')), d' = d + 2 when the model is spatial.
    """
    if not isinstance(model, FVVAE):
        raise TypeError(f"model must be an FVVAE; got {type(model).__name__}.")
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"images must have shape (N, C, H, W) with N ≥ 1; got {tuple(x.shape)}.")
    was = model.training
    model.eval()
    parts = []
    try:
        with torch.no_grad():
            for s in range(0, x.shape[0], batch_size):
                xb = x[s : s + batch_size].to(model.device, model.fv.means.dtype)
                parts.append(model.embed(xb).float().cpu().numpy())
                if progress is not None:
                    done = min(x.shape[0], s + batch_size)
                    progress(done / x.shape[0], f"FV-VAE embedding: {done:,}/{x.shape[0]:,}")
    finally:
        model.train(was)
    cfg = model.config
    norm = "+".join(p for p in (cfg.fv_normalization, f"power{cfg.fv_power}" if cfg.fv_power
                                else "", "l2" if cfg.fv_l2 else "") if p)
    return Embedding(np.concatenate(parts), dataset_key, "fv_vae",
                     model=model_name or model.family, normalization=norm,
                     params={"n_components": cfg.n_components, "latent_dim": cfg.latent_dim,
                             "spatial": cfg.spatial, "grid": list(model.grid)})
