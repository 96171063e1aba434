"""One training loop for every model family.

``train`` shuffles the training images with its own seeded generator, calls a *step function*
on each mini-batch, evaluates the validation NLL at the end of every epoch, and reports
:class:`ProgressEvent` objects to a callback. It is meant to run in a worker thread: it never
prints and never touches a UI; cancel it with a ``threading.Event`` (or any callable returning
True) and it stops before the next step.

Model families customise training through two hooks (see
:class:`fisher_core.models.GenerativeModel`): ``configure_optimizers(lr) -> {name: optimizer}``
and ``training_step(batch, optimizers) -> {"loss": float, ...}``. The default, for any module
with ``log_prob``, is one Adam optimizer minimising ``−log_prob(x).mean()``. A GAN returns two
optimizers and alternates its own updates in ``training_step``.

Reproducibility: the loop runs inside ``torch.random.fork_rng`` seeded with ``seed`` (the caller's
global RNG state is restored afterwards), so the same seed gives identical losses. Checkpoints
(``checkpoint_dir``) hold weights, optimizer state, RNG states and history as safetensors +
JSON; ``resume=True`` continues from the last completed epoch and reaches the same final
weights as an uninterrupted run. A non-finite loss stops training with reason ``"nan"`` (no
exception) and restores the best (or last epoch-start) weights.

Supervised data: ``train_images`` may also be a tuple of arrays sharing their first dimension
(``(z, x)`` for a decoder, ``(x, y)`` for a classifier). Batches are then tuples of tensors,
the model (or ``step_fn``) must provide ``training_step``, and validation uses the model's
``validation_loss(batch)`` (reported in the ``val_nll`` fields, without bits/dim).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.base import bits_per_dim, nll_training_step
from .batches import Batch, Data, as_data, check_val, n_rows, take
from .checkpoint import CheckpointError, LoopState, load_checkpoint, save_checkpoint
from .events import ProgressEvent, TrainResult

__all__ = ["CheckpointError", "ProgressEvent", "TrainResult", "step_seconds", "train"]

StepFn = Callable[[nn.Module, Batch, dict[str, torch.optim.Optimizer]], dict[str, float]]
OptimFn = Callable[[nn.Module, float], dict[str, torch.optim.Optimizer]]

def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return value


def _resolve_hooks(
    model: nn.Module, lr: float, step_fn: StepFn | None, configure_optimizers: OptimFn | None,
    tuple_data: bool = False,
) -> tuple[StepFn, dict[str, torch.optim.Optimizer]]:
    if configure_optimizers is not None:
        optimizers = configure_optimizers(model, lr)
    elif hasattr(model, "configure_optimizers"):
        optimizers = model.configure_optimizers(lr)
    else:
        optimizers = {"main": torch.optim.Adam(model.parameters(), lr=lr)}
    if not isinstance(optimizers, dict) or not all(
        isinstance(o, torch.optim.Optimizer) for o in optimizers.values()
    ):
        raise TypeError(
            "configure_optimizers must return a dict of name -> torch.optim.Optimizer; got "
            f"{type(optimizers).__name__}."
        )
    if step_fn is None:
        if tuple_data and not hasattr(model, "training_step"):
            raise TypeError(
                f"tuple training data needs a step function: give step_fn or implement "
                f"training_step(batch, optimizers) on {type(model).__name__}."
            )
        if hasattr(model, "training_step"):
            def step_fn(m, b, o):
                return m.training_step(b, o)
        else:
            step_fn = nll_training_step
    return step_fn, optimizers


def _is_cancelled(cancel: threading.Event | Callable[[], bool] | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


@torch.no_grad()
def _evaluate(model: nn.Module, images: Data, batch_size: int, device: Any) -> float:
    """Mean per-example validation NLL in nats (``model.validation_nll`` or −log_prob); for
    tuple data the mean of ``model.validation_loss(batch)`` (per-example (B,) or a batch mean).
    """
    was_training = model.training
    model.eval()
    total = 0.0
    n = n_rows(images)
    for i in range(0, n, batch_size):
        batch = take(images, slice(i, i + batch_size), device)
        if isinstance(batch, tuple):
            loss = torch.as_tensor(model.validation_loss(batch)).double()
            total += float(loss.sum()) if loss.ndim else float(loss) * batch[0].shape[0]
            continue
        if hasattr(model, "validation_nll"):
            nll = model.validation_nll(batch)
        else:
            nll = -model.log_prob(batch)
        total += float(nll.double().sum())
    model.train(was_training)
    return total / n


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train(
    model: nn.Module,
    train_images: np.ndarray | torch.Tensor | tuple,
    *,
    val_images: np.ndarray | torch.Tensor | tuple | None = None,
    epochs: int = 10,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    callback: Callable[[ProgressEvent], None] | None = None,
    n_samples: int = 0,
    early_stopping_patience: int | None = None,
    restore_best: bool = True,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    cancel: threading.Event | Callable[[], bool] | None = None,
    device: str | torch.device = "cpu",
    step_fn: StepFn | None = None,
    configure_optimizers: OptimFn | None = None,
    max_seconds: float | None = None,
    eval_batch_size: int = 256,
) -> TrainResult:
    """Train ``model`` in place on images in [0, 1].

    Parameters
    ----------
    model : nn.Module
        Any module with ``log_prob(x) -> (B,)``; FisherLab models may override the
        ``configure_optimizers`` / ``training_step`` / ``validation_nll`` hooks.
    train_images : ndarray or Tensor of shape (N, C, H, W), or tuple of arrays
        Float images in [0, 1]; or a tuple of arrays with the same first dimension N (e.g.
        ``(z, x)``, ``(x, y)``), whose batches are tuples of tensors (floating and boolean
        arrays become float32, integer arrays int64). Tuple data needs ``training_step`` (or
        ``step_fn``).
    val_images : ndarray, Tensor, tuple or None, default=None
        Validation data of the same kind; enable early stopping, best-epoch tracking and
        bits/dim (images only). With tuple data the model must have
        ``validation_loss(batch) -> Tensor`` (per-example (B,) or a batch mean), reported as
        the validation "NLL".
    epochs : int, default=10
        Total epochs (a resumed run counts those already done).
    batch_size : int or None, default=None
        Mini-batch size (the last batch of an epoch may be smaller); ``None`` takes
        ``model.training_defaults["batch_size"]`` (64 for a module without it).
    lr : float or None, default=None
        Learning rate passed to the optimizer factory; ``None`` takes
        ``model.training_defaults["lr"]`` (1e-3 for a module without it).
    seed : int, default=0
        Seeds shuffling and torch's RNG inside the loop (the caller's RNG state is restored).
    callback : callable or None, default=None
        Receives a :class:`ProgressEvent` after every step, every epoch and at the end.
    n_samples : int, default=0
        Samples drawn (seeded per epoch) and attached to each epoch event (models with
        ``sample`` only).
    early_stopping_patience : int or None, default=None
        Stop after this many epochs without a lower validation NLL.
    restore_best : bool, default=True
        At the end, load the weights of the best validation epoch (when there is one).
    checkpoint_dir : path-like or None, default=None
        Folder for an atomic checkpoint written after each epoch.
    resume : bool, default=False
        Continue from the checkpoint in ``checkpoint_dir`` (fresh start if there is none).
    cancel : threading.Event, callable or None, default=None
        Checked before every step; when set, training stops with reason ``"cancelled"``.
    device : str or torch.device, default="cpu"
        Where the model and batches live.
    step_fn : callable or None, default=None
        ``step_fn(model, batch, optimizers) -> {"loss": float, ...}``; overrides the model hook.
    configure_optimizers : callable or None, default=None
        ``configure_optimizers(model, lr) -> {name: optimizer}``; overrides the model hook.
    max_seconds : float or None, default=None
        Stop with reason ``"time_limit"`` once this call has run this long.
    eval_batch_size : int, default=256
        Batch size for validation.

    Returns
    -------
    TrainResult
    """
    defaults = {"lr": 1e-3, "batch_size": 64} | dict(getattr(model, "training_defaults", {}))
    lr = defaults["lr"] if lr is None else lr
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    x_train = as_data(train_images, "train_images")
    if val_images is not None and isinstance(val_images, tuple) != isinstance(x_train, tuple):
        raise TypeError("train_images and val_images must both be image arrays or both tuples.")
    x_val = None if val_images is None else as_data(val_images, "val_images")
    check_val(x_train, x_val)
    tuple_data = isinstance(x_train, tuple)
    if tuple_data and x_val is not None and not hasattr(model, "validation_loss"):
        raise TypeError(
            f"tuple validation data needs {type(model).__name__}.validation_loss(batch) -> "
            "Tensor; implement it or pass val_images=None."
        )
    for name, value in [("epochs", epochs), ("batch_size", batch_size),
                        ("eval_batch_size", eval_batch_size)]:
        _positive_int(value, name)
    if not (isinstance(lr, int | float) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number; got {lr!r}.")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (where the checkpoint lives).")
    model.to(device)
    run = _Run(model, x_train, x_val, epochs, batch_size, seed, callback, n_samples,
               early_stopping_patience, cancel, device, max_seconds, eval_batch_size,
               None if checkpoint_dir is None else Path(checkpoint_dir))
    fork_devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        run.shuffle.manual_seed(seed)
        run.lr = float(lr)
        run.step_fn, run.optimizers = _resolve_hooks(model, lr, step_fn, configure_optimizers,
                                                     tuple_data)
        if resume:
            load_checkpoint(run)
        reason, message = run.loop()
    return run.finish(reason, message, restore_best)


def step_seconds(model: nn.Module, train_images: np.ndarray | torch.Tensor | tuple, *,
                 batch_size: int | None = None, steps: int = 3, seed: int = 0,
                 device: str | torch.device = "cpu") -> float:
    """Seconds one optimisation step of :func:`train` takes here, measured on a copy.

    Trains a deep copy of ``model`` for ``steps`` mini-batches (the model itself is not
    touched) and returns the mean time per step, first step included: an honest basis for
    "this run will take about …" before a long run starts.

    Parameters
    ----------
    model : nn.Module
    train_images : ndarray, Tensor or tuple
        As for :func:`train`; only the first ``steps · batch_size`` rows are used.
    batch_size : int or None, default=None
        As for :func:`train` (the model's default when None).
    steps : int, default=3
    seed : int, default=0
    device : str or torch.device, default="cpu"

    Returns
    -------
    float
        Mean wall-clock seconds per step.
    """
    import copy

    _positive_int(steps, "steps")
    defaults = {"batch_size": 64} | dict(getattr(model, "training_defaults", {}))
    bs = defaults["batch_size"] if batch_size is None else batch_size
    _positive_int(bs, "batch_size")
    n = bs * steps
    head = (tuple(a[:n] for a in train_images) if isinstance(train_images, tuple)
            else train_images[:n])
    result = train(copy.deepcopy(model), head, epochs=1, batch_size=bs, seed=seed,
                   device=device, early_stopping_patience=None)
    return result.elapsed / max(result.steps, 1)


class _Run:
    """State and phases of one call of :func:`train` (kept out of ``train`` for length)."""

    def __init__(self, model, x_train, x_val, epochs, batch_size, seed, callback, n_samples,
                 patience, cancel, device, max_seconds, eval_batch_size, ckpt_dir):
        self.model, self.x_train, self.x_val = model, x_train, x_val
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.callback, self.n_samples, self.patience = callback, n_samples, patience
        self.cancel, self.device, self.max_seconds = cancel, device, max_seconds
        self.eval_batch_size, self.ckpt_dir = eval_batch_size, ckpt_dir
        self.shuffle = torch.Generator()
        self.state = LoopState()
        self.steps_per_epoch = -(-n_rows(x_train) // batch_size)
        self.total_steps = epochs * self.steps_per_epoch
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.epoch_start_weights: dict[str, torch.Tensor] | None = None
        self.last_loss = math.nan
        self.t0 = time.monotonic()
        self.step_fn: StepFn = nll_training_step
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.lr = 0.0

    # ---- helpers ---------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.state.elapsed + (time.monotonic() - self.t0)

    def emit(self, kind: str, **kw: Any) -> None:
        if self.callback is not None:
            self.callback(ProgressEvent(
                kind=kind, epoch=self.state.epoch + (kind == "step"), step=self.state.step,
                total_steps=self.total_steps, loss=self.last_loss, elapsed=self.elapsed(), **kw,
            ))

    def fingerprint(self) -> dict[str, Any]:
        """Settings that must match for a checkpoint to be resumed."""
        return {"n_train": n_rows(self.x_train), "batch_size": self.batch_size,
                "seed": self.seed, "lr": self.lr, "model": type(self.model).__name__,
                "optimizers": sorted(self.optimizers)}

    # ---- the loop --------------------------------------------------------------------------

    def loop(self) -> tuple[str, str]:
        st = self.state
        self.model.train()
        while st.epoch < self.epochs:
            self.epoch_start_weights = _clone_state(self.model)
            perm = torch.randperm(n_rows(self.x_train), generator=self.shuffle)
            losses = []
            for b in range(self.steps_per_epoch):
                stop = self.should_stop()
                if stop is not None:
                    return stop
                idx = perm[b * self.batch_size : (b + 1) * self.batch_size]
                metrics = self.step_fn(self.model, take(self.x_train, idx, self.device),
                                       self.optimizers)
                if not isinstance(metrics, dict) or "loss" not in metrics:
                    raise TypeError("the step function must return a dict with a 'loss' entry.")
                self.last_loss = loss = float(metrics["loss"])
                if not math.isfinite(loss):
                    return "nan", (
                        f"loss became {loss} at epoch {st.epoch + 1}, step {st.step + 1}; "
                        "training stopped. Lower the learning rate or check the data."
                    )
                st.step += 1
                losses.append(loss)
                st.history["step_loss"].append(loss)
                for k, v in metrics.items():
                    st.history["step_metrics"].setdefault(k, []).append(float(v))
                self.emit("step", metrics={k: float(v) for k, v in metrics.items()})
            if self.end_epoch(float(np.mean(losses))):
                return "early_stopping", (
                    f"validation NLL did not improve for {self.patience} epoch(s); best epoch "
                    f"{st.best_epoch}."
                )
        return "completed", f"trained {st.epoch} epoch(s)."

    def should_stop(self) -> tuple[str, str] | None:
        if _is_cancelled(self.cancel):
            return "cancelled", f"cancelled after {self.state.step} step(s)."
        if self.max_seconds is not None and time.monotonic() - self.t0 >= self.max_seconds:
            return "time_limit", f"time limit of {self.max_seconds} s reached."
        return None

    def end_epoch(self, train_loss: float) -> bool:
        """Validate, track the best epoch, checkpoint, report; True means stop early."""
        st = self.state
        val_nll = bpd = None
        if self.x_val is not None:
            val_nll = _evaluate(self.model, self.x_val, self.eval_batch_size, self.device)
            if getattr(self.model, "normalized", True) and not isinstance(self.x_val, tuple):
                bpd = float(bits_per_dim(val_nll, tuple(self.x_val.shape[1:])))
            if val_nll < st.best_val:
                st.best_val, st.best_epoch, st.bad_epochs = val_nll, st.epoch + 1, 0
                self.best_weights = _clone_state(self.model)
            else:
                st.bad_epochs += 1
        st.epoch += 1
        h = st.history
        h["epoch_train_loss"].append(train_loss)
        h["epoch_val_nll"].append(val_nll)
        h["epoch_bits_per_dim"].append(bpd)
        h["epoch_elapsed"].append(self.elapsed())
        samples = self.draw_samples()
        if self.ckpt_dir is not None:
            save_checkpoint(self)
        self.emit("epoch", val_nll=val_nll, bits_per_dim=bpd, samples=samples)
        return self.patience is not None and st.bad_epochs >= self.patience

    def draw_samples(self) -> np.ndarray | None:
        if self.n_samples <= 0 or not hasattr(self.model, "sample"):
            return None
        # A generator of its own: drawing samples must not change the training RNG stream.
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * 1_000_003 + self.state.epoch)
        self.model.eval()
        with torch.no_grad():
            s = self.model.sample(self.n_samples, generator=gen)
        self.model.train()
        return s.detach().cpu().numpy()

    def finish(self, reason: str, message: str, restore_best: bool) -> TrainResult:
        st = self.state
        if reason == "nan":
            fallback = self.best_weights if self.best_weights is not None else (
                self.epoch_start_weights)
            if fallback is not None:
                self.model.load_state_dict(fallback)
                which = "best-epoch" if self.best_weights is not None else "epoch-start"
                message += f" The {which} weights were restored."
        elif restore_best and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        self.model.eval()
        finish = getattr(self.model, "finish_training", None)
        if callable(finish) and reason != "nan":  # a family's closing step (FV-VAE: EM refit)
            finish(self.x_train, seed=self.seed)
        self.emit("end", message=message)
        return TrainResult(
            history=st.history, best_epoch=st.best_epoch,
            best_val_nll=None if st.best_epoch is None else st.best_val,
            stopped_reason=reason, message=message, epochs_completed=st.epoch,
            steps=st.step, elapsed=self.elapsed(),
        )
