"""Where and in which precision tensors live: the device and dtype options of the library."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "resolve_dtype"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: str) -> torch.dtype:
    """Map ``"float32"``/``"float64"`` to a torch dtype, with a helpful error otherwise."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
    return _DTYPES[dtype]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """CPU for ``None``; a CUDA device only when CUDA is actually available."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be None, 'cpu' or 'cuda[:i]', got {device!r}."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available here; "
            "pass device=None (CPU) instead."
        )
    return dev
