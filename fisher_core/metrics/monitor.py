"""The Fisher training monitor of a GAN (Zhai et al. 2019; the reference code's monitor): Fisher
distance and similarity between real and generated sets, on training and held-out images,
from :func:`fisher_core.training.train`'s callback.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..embeddings.afv import (
    as_image_tensor,
    check_gan,
    discriminator_params,
    generator_samples,
    positive_int,
)
from ..fisher import FisherScorer
from .distance import fisher_distance, fisher_similarity

__all__ = ["FisherMonitor"]


class FisherMonitor:
    """Fisher distance between real and generated sets during GAN training (train & held-out).

    Every ``every`` steps (and at the end of training) it draws ``n`` generator samples from
    fixed latents, fits AFV statistics on them (mean and diagonal Fisher information of D's
    scores) and records, for a fixed random subset of ``n`` training and ``n`` held-out
    images,

    - ``train_fd`` / ``heldout_fd``: :func:`~fisher_core.metrics.distance.fisher_distance`
      between the AFVs of the real subset and of the generated set (‖mean V_real − mean
      V_fake‖; lower = D's scores tell them apart less);
    - ``train_fsim`` / ``heldout_fsim``: :func:`~fisher_core.metrics.distance.fisher_similarity`
      of the same vectors, ``exp(−10 · mean_j Δ_j² / var_fake_j)``, the reference code's
      monitor (1 = indistinguishable).

    A growing gap between the train and held-out curves signals memorisation; the step with
    the lowest ``heldout_fd`` is the one to keep (``best``; its weights in ``best_state``).
    Scores are computed in eval mode inside ``torch.random.fork_rng``, so monitoring does not
    change the training run. Values at different steps use different D's, hence different
    metrics: compare curves, not single numbers across models.

    Parameters
    ----------
    model : nn.Module
        The GAN being trained (``log_prob`` = D, ``sample``).
    train_images, heldout_images : ndarray or Tensor of shape (N, C, H, W)
        Training images and images D never sees.
    every : int, default=100
        Evaluate after every ``every``-th optimisation step.
    n : int, default=128
        Size of each set (real train, real held-out, generated); the reference uses 512.
        One evaluation costs about 3n per-example gradients of D (measured on a loaded
        2-core CPU: ~0.4 s for the 8×8 default D at n=256, 8-15 s for the 32×32 one).
    dim, projection, normalize
        See :func:`afv_scorer`; the default ``projection=None`` uses exact parameter-space
        scores, like the reference.
    batch_size : int, default=64
    seed : int, default=0
        Picks the real subsets and the generator latents (the same at every evaluation).
    keep_best : bool, default=True
        Keep a copy of the weights at the best held-out value in ``best_state``.

    Attributes
    ----------
    history : list of dict
        One record per evaluation: ``step``, ``train_fd``, ``heldout_fd``, ``train_fsim``,
        ``heldout_fsim``, ``seconds`` (time the evaluation took).
    best_state : dict of str to Tensor or None

    Examples
    --------
    >>> monitor = FisherMonitor(gan, x_train, x_val, every=50)      # doctest: +SKIP
    >>> train(gan, x_train, epochs=10, callback=monitor)            # doctest: +SKIP
    >>> monitor.best["step"], monitor.history[-1]["heldout_fd"]     # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, train_images: Any, heldout_images: Any, *,
                 every: int = 100, n: int = 128, dim: int | None = None,
                 projection: str | None = None, normalize: str = "fim_diag",
                 batch_size: int = 64, seed: int = 0, keep_best: bool = True):
        check_gan(model)
        self.model = model
        self.every = positive_int(every, "every")
        self.n = positive_int(n, "n")
        self.dim, self.projection, self.normalize = dim, projection, normalize
        self.batch_size, self.seed, self.keep_best = batch_size, seed, keep_best
        rng = np.random.default_rng(seed)
        self.train_subset = self._subset(as_image_tensor(train_images, "train_images"), rng)
        self.heldout_subset = self._subset(as_image_tensor(heldout_images, "heldout_images"), rng)
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None

    def _subset(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if x.shape[0] < 2:
            raise ValueError(f"each image set needs at least 2 images; got {x.shape[0]}.")
        if x.shape[0] <= self.n:
            return x
        return x[np.sort(rng.choice(x.shape[0], self.n, replace=False))]

    @property
    def best(self) -> dict[str, float] | None:
        """The record with the lowest held-out Fisher distance (None before any)."""
        return min(self.history, key=lambda r: r["heldout_fd"]) if self.history else None

    def __call__(self, event: Any) -> None:
        """Callback for :func:`fisher_core.training.train` (any object with ``kind``, ``step``)."""
        kind, step = getattr(event, "kind", None), int(getattr(event, "step", 0))
        due = kind == "step" and step % self.every == 0
        final = kind == "end" and step > 0 and (not self.history
                                                or self.history[-1]["step"] != step)
        if due or final:
            self.evaluate(step)

    def evaluate(self, step: int) -> dict[str, float]:
        """Compute, record and return one history entry for the model as it is now."""
        t0 = time.perf_counter()
        with torch.random.fork_rng():
            fake = generator_samples(self.model, self.n, seed=self.seed,
                                     batch_size=self.batch_size)
            scorer = FisherScorer(
                self.model, dim=self.dim, projection=self.projection,
                normalize=self.normalize, center=True, params=discriminator_params(self.model),
                batch_size=self.batch_size, seed=self.seed)
            v_fake = scorer.fit_transform(fake)
            v_train = scorer.transform(self.train_subset)
            v_held = scorer.transform(self.heldout_subset)
        record = {
            "step": int(step),
            "train_fd": fisher_distance(v_train, v_fake),
            "heldout_fd": fisher_distance(v_held, v_fake),
            "train_fsim": fisher_similarity(v_train, v_fake),
            "heldout_fsim": fisher_similarity(v_held, v_fake),
            "seconds": time.perf_counter() - t0,
        }
        best = self.best
        self.history.append(record)
        if self.keep_best and (best is None or record["heldout_fd"] < best["heldout_fd"]):
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return record
