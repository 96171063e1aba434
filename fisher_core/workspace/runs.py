"""Training runs kept in the workspace: train a model family on a dataset, save it, list it.

A saved model is a workspace entry of kind ``"models"``: ``model.safetensors`` +
``model.json`` (see :mod:`fisher_core.models.io`) and ``history.json`` (the training curves),
with the dataset key, family, metrics and stop reason in the entry's metadata. Everything is
written atomically, so a crash mid-save leaves the previous version readable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.dataset import ImageDataset
from ..models import MODEL_FAMILIES, build_model, load_model, save_model
from ..training.em import fit_patch_gmm
from ..training.events import ProgressEvent, TrainResult
from ..training.loop import train
from ..utils.io import atomic_write_json, read_json
from .checkpoints import checkpoint_dir, discard_run, interrupted_runs, start_run
from .names import derived_name
from .store import Entry, EntryError, Workspace, check_name

__all__ = [
    "ModelRun",
    "RunLog",
    "best_model_name",
    "data_config",
    "list_models",
    "load_saved_model",
    "resume_run",
    "saved_monitor",
    "saved_samples",
    "train_and_save",
]

HISTORY_FILE = "history.json"
SAMPLES_FILE = "samples.npy"
MONITOR_FILE = "monitor.json"
BEST_SUFFIX = "-best"


class RunLog:
    """A training-loop callback that keeps what a live view draws.

    Step losses are thinned to at most ``max_points`` (every other point is dropped when full,
    so memory stays bounded on long runs); epoch rows, the last sample grid and the last
    event are kept whole.
    """

    def __init__(self, max_points: int = 2000) -> None:
        self.max_points = max_points
        self.steps: list[tuple[int, float]] = []
        self.step_metrics: list[dict[str, float]] = []
        self.epochs: list[dict[str, Any]] = []
        self.samples: np.ndarray | None = None
        self.last: ProgressEvent | None = None
        self.monitor: list[dict[str, float]] = []  # FisherMonitor history, when there is one
        self.energy = False  # the monitor judges an energy model (no likelihood)
        self._stride = 1

    def __call__(self, event: ProgressEvent) -> None:
        self.last = event
        if event.kind == "step" and event.step % self._stride == 0:
            self.steps.append((event.step, float(event.loss)))
            self.step_metrics.append({"step": event.step, **event.metrics})
            if len(self.steps) > self.max_points:
                self.steps, self.step_metrics = self.steps[::2], self.step_metrics[::2]
                self._stride *= 2
        elif event.kind == "epoch":
            self.epochs.append({"epoch": event.epoch, "step": event.step, "loss": event.loss,
                                "val_nll": event.val_nll, "bits_per_dim": event.bits_per_dim,
                                "elapsed": event.elapsed, **event.metrics})
            if event.samples is not None:
                self.samples = event.samples

    def state(self) -> dict[str, Any]:
        """A copy safe to hand to another thread."""
        return {"steps": list(self.steps), "step_metrics": list(self.step_metrics),
                "epochs": list(self.epochs), "samples": self.samples, "last": self.last,
                "monitor": list(self.monitor), "energy": self.energy}


@dataclass
class ModelRun:
    """A finished training run: the trained model, its loop result and where it was saved."""

    model: nn.Module
    result: TrainResult
    name: str | None
    metrics: dict[str, Any]


def data_config(family: str, ds: ImageDataset) -> dict[str, Any]:
    """The config fields a model family takes from the data: channels, size, levels.

    ``levels`` follows the dataset's quantisation when it has one; otherwise the family's
    default is kept (the model quantises its input itself).
    """
    if family not in MODEL_FAMILIES:
        raise ValueError(f"family must be one of {sorted(MODEL_FAMILIES)}; got {family!r}.")
    c, h, w = ds.shape
    fields = {f.name for f in dataclasses.fields(MODEL_FAMILIES[family][1])}
    out: dict[str, Any] = {"channels": c, "height": h, "width": w}
    if ds.levels is not None and "levels" in fields:
        out["levels"] = int(ds.levels)
    return {k: v for k, v in out.items() if k in fields}


def best_model_name(name: str) -> str:
    """Name of the best-checkpoint twin of model ``name``: ``<name>-best``, shortened with a
    hash of ``name`` when that would pass 80 characters (it always ends in ``-best``)."""
    return derived_name(check_name(name), suffix=BEST_SUFFIX)


def _metrics(model: nn.Module, result: TrainResult, n_train: int) -> dict[str, Any]:
    h = result.history
    bpd = [b for b in h.get("epoch_bits_per_dim", []) if b is not None]
    scored = getattr(model, "discriminator_parameter_names", None)  # AFVs: D's parameters only
    scored = set(scored()) if scored is not None else None
    return {
        "family": getattr(type(model), "family", type(model).__name__),
        "parameters": int(getattr(model, "n_parameters", None)
                          or sum(p.numel() for p in model.parameters())),
        "score_parameters": None if scored is None else
        sum(p.numel() for n, p in model.named_parameters() if n in scored),
        "epochs": result.epochs_completed,
        "steps": result.steps,
        "seconds": round(result.elapsed, 2),
        "best_epoch": result.best_epoch,
        "val_nll": result.best_val_nll,
        "val_bits_per_dim": min(bpd) if bpd else None,
        "stopped": result.stopped_reason,
        "n_train": n_train,
        **({"bic": h["bic"]} if "bic" in h else {}),
    }


def train_and_save(
    ds: ImageDataset,
    family: str,
    *,
    config: dict[str, Any] | None = None,
    epochs: int = 5,
    batch_size: int | None = None,
    lr: float | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    n_samples: int = 4,
    workspace: Workspace | None = None,
    name: str | None = None,
    dataset_key: str = "",
    callback: Callable[[ProgressEvent], None] | None = None,
    cancel: Any = None,
    max_seconds: float | None = None,
    early_stopping_patience: int | None = 3,
    log: RunLog | None = None,
    monitor_every: int | None = None,
    monitor: bool = True,
    heldout: ImageDataset | None = None,
    restore_best: bool = True,
    device: str | torch.device = "cpu",
    resume: bool = False,
) -> ModelRun:
    """Build a model of ``family`` for ``ds``, train it, and save it to the workspace.

    Parameters
    ----------
    ds : ImageDataset
        Training data; ``val_fraction`` of it is held out (seeded) for validation NLL.
    family : str
        A key of :data:`fisher_core.models.MODEL_FAMILIES`.
    config : dict, optional
        Config fields beyond those taken from the data (:func:`data_config`).
    epochs, batch_size, lr, seed, n_samples, callback, cancel, max_seconds,
    early_stopping_patience
        Passed to :func:`fisher_core.training.train`.
    val_fraction : float, default=0.1
        Held-out fraction, in [0, 0.5].
    workspace, name : optional
        Save the model as ``models/name`` when both are given.
    log : RunLog, optional
        Receives every event (pass one to read curves live from another thread).
    monitor_every : int or None, default=None
        Evaluate the Fisher distance and similarity between real (training and held-out)
        images and the model's samples every this many steps
        (:class:`fisher_core.metrics.FisherMonitor`); ``None`` picks about 12 evaluations
        per run for an energy-based GAN (a family with ``normalized = False``), 4 for a
        likelihood model, every 10 EM iterations for a patch GMM. The history is saved as
        ``monitor.json``; for a GAN, the weights with the best held-out value also as a
        second model :func:`best_model_name` (``<name>-best``).
    monitor : bool, default=True
        Run the Fisher monitor at all (it needs held-out images).
    heldout : ImageDataset, optional
        Validation images given explicitly (all of ``ds`` is then trained on and
        ``val_fraction`` is ignored): the same held-out set for several runs, as in
        :func:`training_size_sweep`.
    restore_best : bool, default=True
        A likelihood model ends with the weights of its best validation epoch; ``False``
        keeps the last ones (to watch over-fitting).
    device : str or torch.device, default="cpu"
        Where to train (``"cuda"``: a GPU; checkpoints and the saved model are written from
        it as from the CPU); the model is returned on the CPU.
    dataset_key : str
        Recorded with the saved model, so pages can list the models of a dataset.
    resume : bool, default=False
        Continue run ``name`` from its last checkpoint in the workspace (see
        :func:`resume_run`); the settings must be those it was started with.

    Returns
    -------
    ModelRun

    Raises
    ------
    EntryError
        ``name`` is not a valid workspace name (checked before training).
    """
    if not 0.0 <= val_fraction <= 0.5:
        raise ValueError(f"val_fraction must be in [0, 0.5]; got {val_fraction!r}.")
    best_name = best_model_name(name) if workspace is not None and name else None
    cfg = {**data_config(family, ds), **(config or {})}
    log = log if log is not None else RunLog()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(family, **cfg)
    val = None if heldout is None else heldout.images
    train_ds = ds
    if heldout is None and val_fraction > 0 and len(ds) >= 20:
        train_ds, val_ds = ds.split(test_size=val_fraction, seed=seed)
        val = val_ds.images
    watcher = _monitor(model, train_ds, val, epochs, batch_size, monitor_every, seed, monitor)
    if watcher is not None:
        log.monitor = watcher.history  # the same list: readers see evaluations as they land
        log.energy = watcher.energy

    def report(event: ProgressEvent) -> None:
        if watcher is not None:
            watcher(event)
        log(event)
        if callback is not None:
            callback(event)
    # An energy model's "validation NLL" is −D(x), not a likelihood: no early stopping or
    # best-epoch restore on it (its Fisher monitor picks the best step instead).
    normalized = getattr(type(model), "normalized", True)
    patience = early_stopping_patience if normalized else None
    request = {"family": family, "config": config or {}, "dataset_key": dataset_key or ds.name,
               "options": {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                           "val_fraction": val_fraction, "seed": seed, "n_samples": n_samples,
                           "max_seconds": max_seconds,
                           "early_stopping_patience": early_stopping_patience,
                           "monitor_every": monitor_every, "monitor": monitor}}
    if getattr(model, "fitted_by_em", False):  # the patch GMM: EM, seconds, no epochs
        if resume:
            raise ValueError(f"a {family} model is fitted by EM in one go; there is no "
                             "interrupted run to resume, start it again.")
        result = fit_patch_gmm(model, train_ds.images, val_images=val, seed=seed,
                               callback=report, cancel=cancel, max_seconds=max_seconds,
                               n_samples=n_samples)
        return _finish(model, result, train_ds, workspace, name, family, dataset_key or ds.name,
                       log, watcher, best_name)
    with contextlib.ExitStack() as stack:
        if workspace is not None and name:  # checkpoints outlive this process
            ckpt = checkpoint_dir(workspace, name)
            if not (resume and ckpt.is_dir()):
                if resume:
                    raise EntryError(f"no interrupted run named {name!r} to resume; start "
                                     "it again.")
                start_run(workspace, name, request)
        else:
            if resume:
                raise ValueError("resume=True needs workspace= and name= (where the run's "
                                 "checkpoints live).")
            ckpt = stack.enter_context(tempfile.TemporaryDirectory(prefix="fisherlab-ckpt-"))
        result = train(model, train_ds.images, val_images=val, epochs=epochs,
                       batch_size=batch_size, lr=lr, seed=seed, callback=report,
                       n_samples=n_samples, early_stopping_patience=patience,
                       restore_best=restore_best and val is not None and normalized,
                       checkpoint_dir=ckpt, cancel=cancel, max_seconds=max_seconds,
                       resume=resume, device=device)
        model.cpu()
    return _finish(model, result, train_ds, workspace, name, family, dataset_key or ds.name,
                   log, watcher, best_name)


def _finish(model: nn.Module, result: TrainResult, train_ds: ImageDataset,
            workspace: Workspace | None, name: str | None, family: str, dataset: str,
            log: RunLog, monitor: Any, best_name: str | None) -> ModelRun:
    """Save a finished run (unless it diverged) and drop its checkpoints."""
    metrics = _metrics(model, result, len(train_ds))
    if workspace is not None and name and result.stopped_reason != "nan":
        meta = {"dataset": dataset, "family": family, "metrics": metrics}
        with workspace.writer("models", name, meta) as folder:
            save_model(model, folder, metrics=metrics)
            atomic_write_json(folder / HISTORY_FILE, result.history)
            if log.samples is not None:
                np.save(folder / SAMPLES_FILE, np.asarray(log.samples, dtype=np.float32))
            if monitor is not None:
                atomic_write_json(folder / MONITOR_FILE, {
                "history": monitor.history, "energy": monitor.energy,
                "best": monitor.best if monitor.keep_best else None})
        if monitor is not None and monitor.best_state is not None:
            _save_best(workspace, best_name, name, model, monitor, meta)
    if workspace is not None and name:
        discard_run(workspace, name)  # saved (or diverged): nothing left to resume
    return ModelRun(model, result, name, metrics)


def resume_run(workspace: Workspace, name: str, ds: ImageDataset, **kwargs: Any) -> ModelRun:
    """Continue interrupted run ``name`` from its last checkpoint and save it as planned.

    Parameters
    ----------
    workspace : Workspace
    name : str
        A run listed by :func:`fisher_core.workspace.interrupted_runs`.
    ds : ImageDataset
        The dataset it was started on (its ``dataset_key`` says which).
    **kwargs
        ``callback``, ``cancel``, ``log`` for :func:`train_and_save`.

    Returns
    -------
    ModelRun
        As from an uninterrupted run: the same final weights (training is deterministic
        per seed and resumes at an epoch boundary).
    """
    runs = {r["name"]: r for r in interrupted_runs(workspace)}
    if name not in runs:
        raise EntryError(f"no interrupted run named {name!r} to resume; start it again.")
    run = runs[name]
    return train_and_save(ds, run["family"], config=run["config"], workspace=workspace,
                          name=name, dataset_key=run["dataset_key"], resume=True,
                          **run["options"], **kwargs)


def _monitor(model: nn.Module, train_ds: ImageDataset, val: np.ndarray | None, epochs: int,
             batch_size: int | None, every: int | None, seed: int, enabled: bool):
    """A FisherMonitor for every family: about 12 evaluations per run for an energy-based
    GAN (its only judge, and it picks the best step), 4 for a likelihood model (its samples
    can be slow: an autoregressive model draws pixel by pixel), every ~10 EM iterations for
    a patch GMM; None when disabled or without held-out images."""
    if not enabled or val is None or len(val) < 2:
        return None
    from ..metrics.monitor import FisherMonitor

    if model.fitted_by_em:
        total, share = model.config.max_iter, 10
        every = every or 10
    else:
        bs = batch_size or getattr(type(model), "training_defaults", {}).get("batch_size", 64)
        total = epochs * -(-len(train_ds) // bs)
        share = 12 if not getattr(type(model), "normalized", True) else 4
    every = every or max(1, total // share)
    return FisherMonitor(model, train_ds.images, val, every=every, n=64, seed=seed)


def _save_best(workspace: Workspace, best_name: str, name: str, model: nn.Module, monitor,
               meta: dict) -> None:
    """Save the weights with the best held-out Fisher distance as ``models/<best_name>``."""
    best = build_model(type(model).family, **dataclasses.asdict(model.config))
    best.load_state_dict(monitor.best_state)
    metrics = {**meta["metrics"], "monitor_step": monitor.best["step"],
               "heldout_fd": monitor.best["heldout_fd"]}
    best_meta = {**meta, "metrics": metrics, "best_of": name}
    with workspace.writer("models", best_name, best_meta) as folder:
        save_model(best, folder, metrics=metrics)
        atomic_write_json(folder / MONITOR_FILE, {"history": monitor.history,
                                                  "energy": monitor.energy,
                                                  "best": monitor.best})


def list_models(workspace: Workspace, dataset_key: str | None = None) -> list[Entry]:
    """Saved models, newest first; only those trained on ``dataset_key`` when given."""
    out = workspace.list("models")
    if dataset_key is not None:
        out = [e for e in out if e.meta.get("dataset") == dataset_key]
    return out


def load_saved_model(workspace: Workspace, name: str) -> tuple[nn.Module, dict[str, Any]]:
    """Load ``models/name``: the model (eval mode, CPU) and its training history.

    Raises
    ------
    EntryError
        The entry is missing or its files are unreadable.
    """
    def load(entry: Entry) -> tuple[nn.Module, dict[str, Any]]:
        model = load_model(entry.path)
        try:
            history = read_json(entry.path / HISTORY_FILE)
        except (OSError, ValueError):
            if not workspace.is_live(entry):
                raise  # replaced under us, not saved without history: read again
            history = {}
        return model, history

    try:
        model, history = workspace.read("models", name, load)
    except EntryError:
        raise
    except (ValueError, OSError) as exc:
        raise EntryError(f"models/{name} could not be loaded: {exc}") from exc
    model.eval()
    return model, history


def saved_monitor(workspace: Workspace, name: str) -> dict[str, Any] | None:
    """The Fisher training monitor of ``models/name`` (history, energy, best), or None."""
    return _optional(workspace, name, lambda e: read_json(e.path / MONITOR_FILE))


def saved_samples(workspace: Workspace, name: str) -> np.ndarray | None:
    """The samples drawn at the last epoch of ``models/name``'s training, or None."""
    return _optional(workspace, name,
                     lambda e: np.load(e.path / SAMPLES_FILE, allow_pickle=False))


def _optional(workspace: Workspace, name: str, loader: Callable[[Entry], Any]) -> Any:
    """``loader(entry)`` of ``models/name``, or None when its file is missing or unreadable.

    Raises
    ------
    EntryError
        The model itself does not exist.
    """
    try:
        return workspace.read("models", name, loader)
    except EntryError:
        raise
    except (OSError, ValueError):  # a file this model was saved without (read() retried
        return None                # when it was missing because a save replaced the version)
