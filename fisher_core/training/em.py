"""Fitting a :class:`~fisher_core.models.PatchGMM` by EM, with the training loop's events.

The Train page, ``fisherlab train gmm`` and :func:`fisher_core.workspace.train_and_save` treat
every family alike: a run reports :class:`ProgressEvent` s and returns a :class:`TrainResult`.
For the patch GMM one "epoch" is one EM iteration over the subsample of training descriptors;
its loss is the negative mean log-likelihood per descriptor, its validation NLL the negative
held-out log-likelihood per image (nats), with a few samples of the current mixture.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..fisher.descriptors import PatchDescriptor
from ..fisher.gmm import GaussianMixture
from ..models.patchgmm import PatchGMM
from .events import ProgressEvent, TrainResult
from .loop import _is_cancelled

__all__ = ["fit_patch_gmm", "sweep_components"]

_MAX_VAL_IMAGES = 500


def _descriptor_sample(descriptor: PatchDescriptor, images: np.ndarray, limit: int,
                       rng: np.random.Generator) -> np.ndarray:
    """At most ``limit`` training descriptors, (n, d): all patches of enough random images,
    then a random subset (memory bounded by the sample, not by the data set)."""
    n_loc = descriptor.transform(images[:1]).shape[1]
    n_pick = min(len(images), -(-limit // n_loc))
    chosen = np.sort(rng.choice(len(images), n_pick, replace=False))
    desc = descriptor.transform(images[chosen])  # (n_pick, L, d)
    flat = desc.reshape(-1, desc.shape[2])
    if flat.shape[0] > limit:
        flat = flat[rng.choice(flat.shape[0], limit, replace=False)]
    return flat


def fit_patch_gmm(
    model: PatchGMM,
    images: np.ndarray,
    *,
    val_images: np.ndarray | None = None,
    seed: int = 0,
    callback: Callable[[ProgressEvent], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    max_seconds: float | None = None,
    n_samples: int = 4,
) -> TrainResult:
    """Fit ``model`` (PCA of the patches, then the mixture by EM), reporting every iteration.

    Parameters
    ----------
    model : PatchGMM
        Fitted in place; its config gives K, the descriptor recipe, the descriptor budget,
        ``max_iter`` and ``tol``.
    images : ndarray of shape (N, C, H, W)
        Training images, floats in [0, 1].
    val_images : ndarray or None, default=None
        Held-out images (at most 500 are scored each iteration).
    seed : int, default=0
        Seeds the PCA subsample, the descriptor subsample and the k-means initialisation.
    callback : callable(ProgressEvent) or None, default=None
    cancel : threading.Event, callable or None, default=None
        Checked between iterations; when set the run stops with reason ``"cancelled"`` and the
        model keeps the parameters of the last iteration.
    max_seconds : float or None, default=None
        Stop (reason ``"time_limit"``) once this much time has passed.
    n_samples : int, default=4
        Samples attached to every iteration's event (0: none).

    Returns
    -------
    TrainResult
        ``best_val_nll`` is the last held-out NLL per image; ``history`` has the training
        loop's keys plus ``"bic"`` (of the training descriptors, at the end).
    """
    if not isinstance(model, PatchGMM):
        raise TypeError(f"model must be a PatchGMM; got {type(model).__name__}.")
    cfg = model.config
    images = np.asarray(images, dtype=np.float32)
    t0 = time.monotonic()
    rng = np.random.default_rng(seed)
    descriptor = PatchDescriptor(patch=cfg.patch, stride=cfg.stride, pca=cfg.pca or None,
                                 spatial=cfg.spatial, random_state=seed).fit(images)
    # float64 rows keep the mixture's attributes float64, so that the warm-started
    # one-iteration fits below continue exactly where the last one stopped
    train = _descriptor_sample(descriptor, images, cfg.max_descriptors, rng).astype(np.float64)
    val = None
    if val_images is not None and len(val_images):
        val_images = np.asarray(val_images, dtype=np.float32)[:_MAX_VAL_IMAGES]
        val = descriptor.transform(val_images)  # (n_val, L, d)
    gmm = GaussianMixture(cfg.n_components, tol=cfg.tol, max_iter=1, warm_start=True,
                          random_state=seed)
    history: dict[str, Any] = {"step_loss": [], "step_metrics": {}, "epoch_train_loss": [],
                               "epoch_val_nll": [], "epoch_bits_per_dim": [],
                               "epoch_elapsed": []}
    reason, message = "completed", f"EM reached max_iter={cfg.max_iter} iterations."
    it = 0
    while it < cfg.max_iter:
        if _is_cancelled(cancel):
            reason, message = "cancelled", f"cancelled after {it} EM iteration(s)."
            break
        if max_seconds is not None and time.monotonic() - t0 > max_seconds:
            reason, message = "time_limit", f"time limit reached after {it} EM iteration(s)."
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # one iteration per call
            gmm.fit(train)
        it += 1
        model.set_fitted(descriptor, gmm)
        loss = -gmm.lower_bound_
        val_nll = None
        if val is not None:
            per_patch = gmm.score_samples(val.reshape(-1, val.shape[2]))
            val_nll = -float(per_patch.reshape(val.shape[:2]).sum(1).mean())
        history["step_loss"].append(loss)
        history["epoch_train_loss"].append(loss)
        history["epoch_val_nll"].append(val_nll)
        history["epoch_bits_per_dim"].append(None)  # a descriptor density: no pixel bits/dim
        history["epoch_elapsed"].append(time.monotonic() - t0)
        if callback is not None:  # a "step" (the loss curve) and an "epoch" (held out, samples)
            elapsed = time.monotonic() - t0
            callback(ProgressEvent(kind="step", epoch=it, step=it, total_steps=cfg.max_iter,
                                   loss=loss, elapsed=elapsed,
                                   metrics={"log_likelihood": -loss}))
            samples = (model.sample(n_samples, generator=seed).numpy() if n_samples else None)
            callback(ProgressEvent(kind="epoch", epoch=it, step=it, total_steps=cfg.max_iter,
                                   loss=loss, val_nll=val_nll, samples=samples,
                                   elapsed=time.monotonic() - t0,
                                   metrics={"log_likelihood": -loss}))
        if gmm.converged_:
            message = f"EM converged after {it} iteration(s) (tol={cfg.tol})."
            break
    if it == 0:
        raise RuntimeError(f"the GMM fit stopped before its first EM iteration: {message}")
    history["bic"] = float(gmm.bic(train))
    elapsed = time.monotonic() - t0
    if callback is not None:
        callback(ProgressEvent(kind="end", epoch=it, step=it, total_steps=cfg.max_iter,
                               loss=-gmm.lower_bound_, elapsed=elapsed, message=message))
    last_val = history["epoch_val_nll"][-1]
    return TrainResult(history, best_epoch=it if last_val is not None else None,
                       best_val_nll=last_val, stopped_reason=reason, message=message,
                       epochs_completed=it, steps=it, elapsed=elapsed)


def sweep_components(
    images: np.ndarray,
    n_components: list[int] | tuple[int, ...],
    *,
    patch: int = 0,
    stride: int = 0,
    pca: int = 0,
    spatial: bool = True,
    max_descriptors: int = 50_000,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> list[dict[str, float]]:
    """Choose K: fit a patch GMM for each K and score it on held-out images' descriptors.

    Parameters
    ----------
    images : ndarray of shape (N, C, H, W)
        Floats in [0, 1].
    n_components : sequence of int
        The K values to try.
    patch, stride, pca, spatial
        The descriptor recipe, as in :class:`~fisher_core.models.PatchGMMConfig` (0: auto).
    max_descriptors : int, default=50,000
        Training descriptors per fit (a random subsample; the same for every K).
    val_fraction : float, default=0.2
        Share of the images held out (their descriptors are scored, at most
        ``max_descriptors`` of them).
    seed : int, default=0
    progress : callable(fraction, message) or None, default=None

    Returns
    -------
    list of dict
        One row per K, in the order given: ``n_components``, ``train_ll`` and ``val_ll``
        (mean log-likelihood per descriptor, nats), ``bic`` and ``aic`` (of the training
        descriptors, lower is better), ``n_iter``, ``seconds``.
    """
    from ..models.patchgmm import PatchGMMConfig

    ks = [int(k) for k in n_components]
    if not ks or min(ks) < 1:
        raise ValueError(f"n_components must list integers >= 1; got {list(n_components)!r}.")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction!r}.")
    images = np.asarray(images, dtype=np.float32)
    c, h, w = images.shape[1:]
    cfg = PatchGMMConfig(channels=c, height=h, width=w, n_components=max(ks), patch=patch,
                         stride=stride, pca=pca, spatial=spatial)
    report = progress or (lambda f, m: None)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    n_val = max(1, int(round(val_fraction * len(images))))
    train_images, val_images = images[np.sort(order[n_val:])], images[np.sort(order[:n_val])]
    descriptor = PatchDescriptor(patch=cfg.patch, stride=cfg.stride, pca=cfg.pca or None,
                                 spatial=cfg.spatial, random_state=seed).fit(train_images)
    train = _descriptor_sample(descriptor, train_images, max_descriptors, rng)
    val = _descriptor_sample(descriptor, val_images, max_descriptors, rng)
    rows = []
    for i, k in enumerate(ks):
        report(i / len(ks), f"K = {k}: fitting on {train.shape[0]:,} descriptors "
                            f"({i + 1}/{len(ks)})")
        if k > train.shape[0]:
            raise ValueError(f"K = {k} is more than the {train.shape[0]:,} training "
                             "descriptors; pass fewer components or more images.")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gmm = GaussianMixture(k, random_state=seed).fit(train)
        seconds = time.perf_counter() - t0
        rows.append({"n_components": k, "train_ll": gmm.score(train),
                     "val_ll": gmm.score(val), "bic": gmm.bic(train), "aic": gmm.aic(train),
                     "n_iter": gmm.n_iter_, "seconds": seconds})
    report(1.0, "done")
    return rows
