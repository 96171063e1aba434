"""Saving and loading decoders (:mod:`fisher_core.explore.decode`): safetensors + JSON, no
pickle, through the same network files as the feature extractor (:mod:`fisher_core.models.netio`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models.netio import load_net, save_net
from .decode import Decoder, DecoderConfig

__all__ = ["load_decoder", "save_decoder"]


def save_decoder(decoder: Decoder, directory: str | Path, *,
                 metrics: dict[str, Any] | None = None) -> Path:
    """Save a decoder (weights + standardisation buffers) as safetensors + JSON.

    Parameters
    ----------
    decoder : Decoder
    directory : path-like
        Destination folder (created if missing).
    metrics : dict or None, default=None
        JSON-serialisable numbers to keep with it (e.g. ``DecoderResult.metrics``).

    Returns
    -------
    Path
    """
    if not isinstance(decoder, Decoder):
        raise TypeError(f"decoder must be a Decoder; got {type(decoder).__name__}.")
    return save_net(decoder, directory, kind="decoder", metrics=metrics)


def load_decoder(directory: str | Path) -> Decoder:
    """Load a decoder saved by :func:`save_decoder` (no pickle); returned in eval mode."""
    return load_net(directory, kind="decoder", build=lambda c: Decoder(DecoderConfig(**c)))
