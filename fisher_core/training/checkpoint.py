"""Atomic, resumable checkpoints of :func:`fisher_core.training.train` (safetensors + JSON).

A checkpoint holds the weights (and the best weights so far), every optimizer's state, the
RNG states and the loop state; ``checkpoint.json`` names the tensor file and a fingerprint of
the training set-up, so a resume with other settings is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..utils.io import atomic_write_bytes, atomic_write_json, read_json

_CKPT_JSON = "checkpoint.json"


@dataclass
class LoopState:
    """Everything besides weights/optimizers that a checkpoint must restore."""

    epoch: int = 0
    step: int = 0
    best_val: float = math.inf
    best_epoch: int | None = None
    bad_epochs: int = 0
    elapsed: float = 0.0
    history: dict[str, Any] = field(
        default_factory=lambda: {
            "step_loss": [], "step_metrics": {}, "epoch_train_loss": [],
            "epoch_val_nll": [], "epoch_bits_per_dim": [], "epoch_elapsed": [],
        }
    )


class Resumable(Protocol):
    """What a checkpoint reads from and restores into: one run of the training loop."""

    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    state: LoopState
    shuffle: torch.Generator
    device: Any
    ckpt_dir: Path
    best_weights: dict[str, torch.Tensor] | None
    last_loss: float

    def fingerprint(self) -> dict[str, Any]: ...

    def elapsed(self) -> float: ...


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or belongs to a different training set-up."""


def save_checkpoint(run: Resumable) -> None:
    """Write ``ckpt-EEEE.safetensors`` then ``checkpoint.json`` naming it (both atomic), then
    delete older tensor files: a crash at any point leaves a consistent checkpoint.
    """
    from safetensors.torch import save

    st = run.state
    tensors = {f"model/{k}": v for k, v in run.model.state_dict().items()}
    if run.best_weights is not None:
        tensors.update({f"best/{k}": v for k, v in run.best_weights.items()})
    optim_meta = {}
    for name, opt in run.optimizers.items():
        sd = opt.state_dict()
        scalars = {}
        for idx, pstate in sd["state"].items():
            for key, value in pstate.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim/{name}/{idx}/{key}"] = value
                else:
                    scalars[f"{idx}/{key}"] = value
        optim_meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/shuffle"] = run.shuffle.get_state()
    if torch.device(run.device).type == "cuda":
        tensors["rng/cuda"] = torch.cuda.get_rng_state(torch.device(run.device))
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    fname = f"ckpt-{st.epoch:04d}.safetensors"
    atomic_write_bytes(run.ckpt_dir / fname, save(tensors))
    meta = {
        "format": "fisherlab-checkpoint", "version": 1, "weights_file": fname,
        "fingerprint": run.fingerprint(), "optimizers": optim_meta,
        "last_loss": run.last_loss,
        "state": {k: getattr(st, k) for k in
                  ("epoch", "step", "best_val", "best_epoch", "bad_epochs", "history")}
        | {"elapsed": run.elapsed()},
    }
    atomic_write_json(run.ckpt_dir / _CKPT_JSON, meta)
    for old in run.ckpt_dir.glob("ckpt-*.safetensors"):
        if old.name != fname:
            old.unlink(missing_ok=True)


def load_checkpoint(run: Resumable) -> None:
    """Restore weights, optimizers, RNG states and loop state; no checkpoint = fresh start."""
    from safetensors.torch import load_file

    path = run.ckpt_dir / _CKPT_JSON
    if not path.is_file():
        return
    try:
        meta = read_json(path)
        tensors = load_file(str(run.ckpt_dir / meta["weights_file"]))
    except Exception as exc:  # JSON, missing-file and safetensors errors all mean "corrupt"
        raise CheckpointError(
            f"checkpoint in {run.ckpt_dir} is unreadable ({exc}); delete the folder or train "
            "with resume=False."
        ) from exc
    expected = run.fingerprint()
    if meta.get("fingerprint") != expected:
        raise CheckpointError(
            f"checkpoint in {run.ckpt_dir} was made with {meta.get('fingerprint')}, not "
            f"{expected}; resume with the same settings or use a new checkpoint_dir."
        )
    try:
        run.model.load_state_dict(_prefixed(tensors, "model/"))
        best = _prefixed(tensors, "best/")
        run.best_weights = best or None
        for name, opt in run.optimizers.items():
            om = meta["optimizers"][name]
            state: dict[int, dict[str, Any]] = {}
            for key, value in _prefixed(tensors, f"optim/{name}/").items():
                idx, sub = key.split("/", 1)
                state.setdefault(int(idx), {})[sub] = value
            for key, value in om["scalars"].items():
                idx, sub = key.split("/", 1)
                state.setdefault(int(idx), {})[sub] = value
            groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v
                       for k, v in g.items()} for g in om["param_groups"]]
            opt.load_state_dict({"state": state, "param_groups": groups})
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint in {run.ckpt_dir} does not fit this model/optimizers: {exc}"
        ) from exc
    torch.set_rng_state(tensors["rng/torch"])
    run.shuffle.set_state(tensors["rng/shuffle"])
    if "rng/cuda" in tensors and torch.device(run.device).type == "cuda":
        torch.cuda.set_rng_state(tensors["rng/cuda"], torch.device(run.device))
    for key, value in meta["state"].items():
        setattr(run.state, key, value)
    run.last_loss = meta["last_loss"]


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
