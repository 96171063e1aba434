"""Save and load models as ``weights.safetensors`` + ``model.json`` (never pickle).

``model.json`` records the family, the config dataclass, optional metrics, library versions,
the SHA-256 of the weights file (so a weights file from another save is detected) and the
names of tensors that alias another one (tied weights are stored once).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..utils.io import atomic_write_bytes, atomic_write_json
from ..utils.versions import versions
from .base import ConfigError
from .registry import MODEL_FAMILIES, build_model

__all__ = ["ModelFileError", "save_model", "load_model"]

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "model.json"
FORMAT = "fisherlab-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A saved model folder is missing, corrupt, or does not match its family/config."""


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Detach, clone and make contiguous; store tensors that are the same view only once."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in state.items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), t.shape,
               t.stride(), t.dtype)
        if t.numel() > 0 and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().to("cpu").clone().contiguous()
    return tensors, aliases


def save_model(
    model: nn.Module, directory: str | Path, *, metrics: dict[str, Any] | None = None
) -> Path:
    """Write a model to ``directory`` (created if missing); each file is written atomically.

    Parameters
    ----------
    model : nn.Module
        A model of a registered family (class attribute ``family``, dataclass ``config``).
    directory : path-like
        Destination folder.
    metrics : dict or None, default=None
        JSON-serialisable numbers to keep with the model (e.g. validation bits/dim).

    Returns
    -------
    Path
        ``directory``.

    Raises
    ------
    ValueError
        If the model has no registered ``family`` or its ``config`` is not a dataclass.
    """
    from safetensors.torch import save

    family = getattr(type(model), "family", None)
    if family not in MODEL_FAMILIES:
        raise ValueError(
            f"model must belong to a registered family {sorted(MODEL_FAMILIES)}; "
            f"{type(model).__name__} has family {family!r}."
        )
    config = getattr(model, "config", None)
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ValueError(
            f"model.config must be a dataclass instance; got {type(config).__name__}."
        )
    tensors, aliases = _dedupe(model.state_dict())
    blob = save(tensors, metadata={"format": "pt", "family": family})
    directory = Path(directory)
    atomic_write_bytes(directory / WEIGHTS_FILE, blob)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": family,
        "config": dataclasses.asdict(config),
        "metrics": dict(metrics or {}),
        "aliases": aliases,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "versions": versions(),
    }
    atomic_write_json(directory / META_FILE, meta)
    return directory



def read_model_meta(directory: str | Path) -> dict[str, Any]:
    """Read and check ``model.json`` of a saved model (family, config, metrics, versions)."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise ModelFileError(
            f"no {META_FILE} in {str(directory)!r}: not a saved model folder (save one with "
            "fisher_core.models.save_model)."
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} is not valid JSON ({exc}); the file is corrupt.") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a FisherLab model description (format field).")
    for key, kind in [("family", str), ("config", dict), ("aliases", dict),
                      ("weights_sha256", str)]:
        if not isinstance(meta.get(key), kind):
            raise ModelFileError(f"{path}: field {key!r} is missing or not a {kind.__name__}.")
    return meta


def load_model(directory: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model saved by :func:`save_model` (safetensors + JSON; no pickle).

    Parameters
    ----------
    directory : path-like
        Folder holding ``model.json`` and ``weights.safetensors``.
    device : str or torch.device, default="cpu"
        Where to put the model.

    Returns
    -------
    nn.Module
        The model in eval mode.

    Raises
    ------
    ModelFileError
        Missing or corrupt files, an unknown family, an invalid config, or weights whose names
        or shapes do not match the model the config describes.
    """
    from safetensors.torch import load

    meta = read_model_meta(directory)
    family = meta["family"]
    if family not in MODEL_FAMILIES:
        raise ModelFileError(
            f"unknown model family {family!r} in {directory}; known: {sorted(MODEL_FAMILIES)}. "
            "It was saved by a newer or different FisherLab."
        )
    # fields added to a family after a model was saved take the value that reproduces it
    legacy = getattr(MODEL_FAMILIES[family][0], "saved_defaults", {})
    try:
        model = build_model(family, **{**legacy, **meta["config"]})
    except (ConfigError, TypeError) as exc:
        raise ModelFileError(f"invalid config in {directory}/{META_FILE}: {exc}") from exc
    wpath = Path(directory) / WEIGHTS_FILE
    if not wpath.is_file():
        raise ModelFileError(f"no {WEIGHTS_FILE} in {str(directory)!r}; the save is incomplete.")
    blob = wpath.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
        raise ModelFileError(
            f"{wpath} does not match {META_FILE} (checksum differs): the folder mixes two saves "
            "or the file is corrupt. Save the model again."
        )
    try:
        tensors = load(blob)
    except Exception as exc:  # safetensors raises its own error type for malformed headers
        raise ModelFileError(f"{wpath} is not a readable safetensors file: {exc}") from exc
    for name, target in meta["aliases"].items():
        if target not in tensors:
            raise ModelFileError(f"alias {name!r} -> {target!r} names a missing tensor.")
        tensors[name] = tensors[target]
    _check_state(model, tensors, directory)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()


def _check_state(model: nn.Module, tensors: dict[str, torch.Tensor], directory: Any) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"weights in {directory} do not match the {type(model).__name__} config: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    bad = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(tensors[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise ModelFileError(
            f"weights in {directory} have shapes that do not match the config: {bad[:5]}."
        )
