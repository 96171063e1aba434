"""The training-set-size sweep of the AFV paper (Zhai et al. 2019): train the same model on
growing subsets and watch the Fisher monitor separate training from held-out images as the
model over-fits the small ones."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..data.dataset import ImageDataset
from ..models import MODEL_FAMILIES
from .runs import RunLog, train_and_save

__all__ = ["MONITOR_COLUMNS", "SWEEP_CONFIGS", "sweep_key", "training_size_sweep"]

MONITOR_COLUMNS = ("train_fd", "heldout_fd", "train_fsim", "heldout_fsim", "train_heldout_fd")
# A sweep trains one model per size: the families' defaults, except a smaller patch GMM.
SWEEP_CONFIGS: dict[str, dict[str, Any]] = {"gmm": {"n_components": 8}}


def _sizes(sizes: Sequence[int], available: int) -> list[int]:
    out = sorted({int(n) for n in sizes})
    if not out:
        raise ValueError("sizes is empty; give the training-set sizes to try, e.g. "
                         "[100, 300, 1000].")
    bad = [n for n in out if n < 2 or n > available]
    if bad:
        raise ValueError(f"training-set sizes must be between 2 and {available:,} (the images "
                         f"left after holding out the validation set); got {bad}.")
    return out


def training_size_sweep(
    ds: ImageDataset,
    family: str,
    sizes: Sequence[int],
    *,
    config: dict[str, Any] | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    heldout_fraction: float = 0.2,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    cancel: Any = None,
) -> list[dict[str, Any]]:
    """Train ``family`` on nested subsets of ``ds`` of growing size; report the Fisher monitor.

    A seeded, stratified ``heldout_fraction`` of ``ds`` is set aside once; every run sees the
    same held-out images, and each training subset contains the smaller ones (a prefix of one
    seeded permutation). Every run takes the same number of optimisation ``steps`` (EM runs
    to convergence) and keeps its last weights (no best-epoch restore), so small subsets are
    seen many times: a model that memorises them scores its training images like its own
    samples but not the held-out ones, and the monitor's train and held-out curves part.
    The monitor (:class:`~fisher_core.metrics.FisherMonitor`, 64 images and 64 samples per
    set) is evaluated once, at the end of each run.

    Parameters
    ----------
    ds : ImageDataset
    family : str
        A key of :data:`fisher_core.models.MODEL_FAMILIES` (``"gmm"`` is fitted by EM).
    sizes : sequence of int
        Training-set sizes (sorted, duplicates dropped).
    config : dict, optional
        Model config fields (as for :func:`train_and_save`); ``None``:
        :data:`SWEEP_CONFIGS` for the family (its defaults otherwise).
    steps : int or None, default=None
        Optimisation steps per run, rounded up to whole epochs; ``None``: the steps of 3
        epochs over the largest subset.
    batch_size : int or None, default=None
        ``None``: the family's default.
    heldout_fraction : float, default=0.2
    seed : int, default=0
        Split, subsets, initial weights and monitor draws.
    progress : callable(fraction, message), optional
    cancel : threading.Event, optional
        Stops after the run in progress.

    Returns
    -------
    list of dict
        One row per size: ``n_train``, ``epochs``, ``steps``, the monitor's
        :data:`MONITOR_COLUMNS` at the end of training, ``val_nll`` (the model's held-out
        negative log-likelihood in nats per image; −D(x) for an energy model) and
        ``seconds``.
    """
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of "
                         f"{', '.join(sorted(MODEL_FAMILIES))}.")
    if not 0.05 <= heldout_fraction <= 0.5:
        raise ValueError(f"heldout_fraction must be in [0.05, 0.5]; got {heldout_fraction!r}.")
    config = SWEEP_CONFIGS.get(family, {}) if config is None else config
    train_all, held = ds.split(test_size=heldout_fraction, seed=seed,
                               stratify=ds.labels is not None)
    sizes = _sizes(sizes, len(train_all))
    em = MODEL_FAMILIES[family][0].fitted_by_em
    bs = batch_size or getattr(MODEL_FAMILIES[family][0], "training_defaults",
                               {}).get("batch_size", 64)
    total = steps or 3 * math.ceil(sizes[-1] / bs)
    order = np.random.default_rng(seed).permutation(len(train_all))
    rows: list[dict[str, Any]] = []
    for i, n in enumerate(sizes):
        if cancel is not None and cancel.is_set():
            break
        sub = train_all.subset(np.sort(order[:n]))
        per_epoch = math.ceil(n / min(bs, n))
        epochs = 1 if em else max(1, math.ceil(total / per_epoch))
        if progress:
            progress(i / len(sizes), f"training on {n:,} images "
                     f"({'EM' if em else f'{epochs} epochs'}), {i + 1}/{len(sizes)}")
        log = RunLog()
        t0 = time.perf_counter()
        run = train_and_save(sub, family, config=config, epochs=epochs,
                             batch_size=min(bs, n), seed=seed, n_samples=0, log=log,
                             heldout=held, early_stopping_patience=None, restore_best=False,
                             monitor_every=10**9, cancel=cancel)  # the monitor: at the end
        if not log.monitor:  # cancelled before its first step: nothing to report
            break
        last = log.monitor[-1]
        rows.append({"n_train": n, "epochs": run.result.epochs_completed,
                     "steps": run.result.steps, **{c: float(last[c]) for c in MONITOR_COLUMNS},
                     "val_nll": run.metrics.get("val_nll"),
                     "seconds": round(time.perf_counter() - t0, 2)})
    if progress:
        progress(1.0, "done")
    return rows


def sweep_key(dataset_key: str, family: str, sizes: Sequence[int], steps: int | None,
              config: dict[str, Any]) -> dict[str, Any]:
    """The settings a saved sweep is filed under (:func:`save_rows` kind ``"size-sweep"``),
    the same from the app and the command line."""
    return {"dataset": dataset_key, "family": family, "sizes": sorted({int(n) for n in sizes}),
            "steps": steps, "config": dict(config)}
