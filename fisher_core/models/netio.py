"""Save and load any module with a dataclass ``config`` (decoders, feature extractors) as
``weights.safetensors`` + ``module.json``: kind, config, metrics, weights checksum, versions.
Never pickle. Model families have their own format (:mod:`fisher_core.models.io`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..utils.io import atomic_write_bytes, atomic_write_json, read_json
from ..utils.versions import versions
from .base import ConfigError
from .io import ModelFileError, _check_state

__all__ = ["load_net", "save_net"]

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "module.json"


def save_net(module: nn.Module, directory: str | Path, *, kind: str,
             metrics: dict[str, Any] | None = None) -> Path:
    """Write ``module`` (with a dataclass ``config``) as ``weights.safetensors`` +
    ``module.json`` (kind, config, metrics, checksum, versions), each atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").clone().contiguous()
               for k, v in module.state_dict().items()}
    blob = save(tensors, metadata={"format": "pt", "kind": kind})
    directory = Path(directory)
    atomic_write_bytes(directory / WEIGHTS_FILE, blob)
    atomic_write_json(directory / META_FILE, {
        "format": "fisherlab-module", "format_version": 1, "kind": kind,
        "config": dataclasses.asdict(module.config), "metrics": dict(metrics or {}),
        "weights_sha256": hashlib.sha256(blob).hexdigest(), "versions": versions(),
    })
    return directory


def load_net(directory: str | Path, *, kind: str, build: Callable[[dict], nn.Module]
             ) -> nn.Module:
    """Load what :func:`save_net` wrote; ``build(config_dict)`` makes the empty module.

    Raises
    ------
    ModelFileError
        Missing or corrupt files, another kind of module, or mismatching weights.
    """
    from safetensors.torch import load

    directory = Path(directory)
    try:
        meta = read_json(directory / META_FILE)
        blob = (directory / WEIGHTS_FILE).read_bytes()
    except (OSError, ValueError) as exc:
        raise ModelFileError(
            f"cannot read a saved {kind} in {str(directory)!r} ({exc}); save it again."
        ) from exc
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        got = meta.get("kind") if isinstance(meta, dict) else None
        raise ModelFileError(f"{directory} holds a {got!r}, not a {kind!r}.")
    if hashlib.sha256(blob).hexdigest() != meta.get("weights_sha256"):
        raise ModelFileError(
            f"{directory / WEIGHTS_FILE} does not match {META_FILE} (checksum differs): the "
            "folder mixes two saves or is corrupt. Save it again."
        )
    try:
        module = build(meta["config"])
    except (ConfigError, TypeError, KeyError) as exc:
        raise ModelFileError(f"invalid config in {directory / META_FILE}: {exc}") from exc
    tensors = load(blob)
    _check_state(module, tensors, directory)
    module.load_state_dict(tensors, strict=True)
    return module.eval()
