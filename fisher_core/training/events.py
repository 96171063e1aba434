"""What the training loop reports: one :class:`ProgressEvent` per step, epoch and end, and a
:class:`TrainResult` when it returns. Plain dataclasses, so any UI or log can consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ProgressEvent", "TrainResult"]


@dataclass
class ProgressEvent:
    """What the training loop reports after each step (``kind="step"``), each epoch
    (``"epoch"``, with validation results and optional samples) and at the end (``"end"``).

    Attributes
    ----------
    kind : {"step", "epoch", "end"}
    epoch : int
        1-based epoch the event belongs to.
    step, total_steps : int
        Optimisation steps done so far / planned in all.
    loss : float
        Loss of the last step (``nan`` before the first).
    val_nll : float or None
        Mean validation NLL in nats per example (epoch events); for tuple data, the mean of
        the model's ``validation_loss``.
    bits_per_dim : float or None
        ``val_nll`` in bits per dimension (None for unnormalised models).
    samples : ndarray of shape (n, C, H, W) or None
        A few model samples in [0, 1] (epoch events, when ``n_samples > 0``).
    elapsed : float
        Seconds of training, including earlier runs of a resumed job.
    metrics : dict of str to float
        Everything the step function returned.
    message : str
        Human-readable note (why training stopped, for ``"end"``).
    """

    kind: str
    epoch: int
    step: int
    total_steps: int
    loss: float
    val_nll: float | None = None
    bits_per_dim: float | None = None
    samples: np.ndarray | None = None
    elapsed: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    history : dict
        ``step_loss`` (list), ``step_metrics`` (dict of lists), ``epoch_train_loss``,
        ``epoch_val_nll``, ``epoch_bits_per_dim``, ``epoch_elapsed`` (lists, one per epoch).
    best_epoch : int or None
        1-based epoch with the lowest validation NLL (None without validation data).
    best_val_nll : float or None
    stopped_reason : {"completed", "early_stopping", "cancelled", "nan", "time_limit"}
    message : str
    epochs_completed : int
    steps : int
    elapsed : float
    """

    history: dict[str, Any]
    best_epoch: int | None
    best_val_nll: float | None
    stopped_reason: str
    message: str
    epochs_completed: int
    steps: int
    elapsed: float
