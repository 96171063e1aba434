"""Where and in which precision tensors live: the device and dtype options of the library."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["available_devices", "full_precision", "resolve_device", "resolve_dtype"]

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


def available_devices() -> list[str]:
    """``["cpu"]`` plus ``"cuda:i"`` for every CUDA device torch sees (what a selector offers)."""
    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if (
        torch.cuda.is_available()) else []
    return ["cpu", *cuda]


@contextmanager
def full_precision() -> Iterator[None]:
    """Float32 matrix products and convolutions in full float32 inside the block.

    CUDA lets convolutions (by default) and matmuls (when asked) use TF32, whose 10-bit
    mantissa changes results by ~1e-3 relative: enough for per-example gradients computed two
    ways (hooks and autograd) to disagree, and for CUDA results to differ from the CPU's.
    Restored afterwards. No effect on the CPU. The flags are process-wide: another thread's
    CUDA work during the block runs in full precision too.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before
