"""Training data for :func:`fisher_core.training.train`: validation, mini-batches and a seeded
train / validation split.

Data is either images (N, C, H, W) in [0, 1] or a tuple of arrays sharing their first
dimension (``(z, x)`` for a decoder, ``(x, y)`` for a classifier).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

Batch = torch.Tensor | tuple[torch.Tensor, ...]
Data = torch.Tensor | tuple[torch.Tensor, ...]


def as_images(images: Any, name: str) -> torch.Tensor:
    """Validate (N, C, H, W) float images in [0, 1]; returns a float32 CPU tensor."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be an ndarray or tensor (N, C, H, W); got {type(images)}.")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (N, C, H, W) with N ≥ 1; got {tuple(images.shape)}."
        )
    x = images.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
        raise ValueError(
            f"{name} must hold finite values in [0, 1]; got range "
            f"[{float(x.min()):.3g}, {float(x.max()):.3g}]. Scale the images to [0, 1]."
        )
    return x


def as_arrays(data: Any, name: str) -> tuple[torch.Tensor, ...]:
    """Validate a tuple of arrays sharing their first dimension N ≥ 1; floating arrays become
    float32, integer ones int64, booleans float32 (CPU tensors)."""
    parts = []
    for i, a in enumerate(data):
        if isinstance(a, np.ndarray):
            a = torch.from_numpy(np.ascontiguousarray(a))
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"{name}[{i}] must be an ndarray or tensor; got {type(a).__name__}.")
        a = a.detach().to("cpu")
        if a.dtype == torch.bool or a.is_floating_point():
            a = a.to(torch.float32)
            if not torch.isfinite(a).all():
                raise ValueError(f"{name}[{i}] contains NaN or infinite values.")
        else:
            a = a.to(torch.int64)
        parts.append(a)
    ns = [a.shape[0] if a.ndim else -1 for a in parts]
    if not parts or ns[0] < 1 or any(n != ns[0] for n in ns):
        raise ValueError(
            f"{name} as a tuple must hold arrays with the same first dimension N ≥ 1; got "
            f"leading sizes {ns}."
        )
    return tuple(parts)


def as_data(data: Any, name: str) -> Data:
    """Images (N, C, H, W) in [0, 1], or a tuple of arrays with a shared first dimension."""
    return as_arrays(data, name) if isinstance(data, tuple) else as_images(data, name)


def n_rows(x: Data) -> int:
    return int(x[0].shape[0]) if isinstance(x, tuple) else int(x.shape[0])


def take(x: Data, idx: torch.Tensor | slice, device: Any) -> Batch:
    if isinstance(x, tuple):
        return tuple(t[idx].to(device) for t in x)
    return x[idx].to(device)


def check_val(x_train: Data, x_val: Data | None) -> None:
    if x_val is None:
        return
    if not isinstance(x_train, tuple):
        if x_val.shape[1:] != x_train.shape[1:]:
            raise ValueError(
                f"val_images must have the same (C, H, W) as train_images "
                f"{tuple(x_train.shape[1:])}; got {tuple(x_val.shape[1:])}."
            )
        return
    shapes = [tuple(a.shape[1:]) for a in x_train]
    if [tuple(b.shape[1:]) for b in x_val] != shapes:
        raise ValueError(
            f"val_images must be a tuple of arrays shaped like train_images (per-row shapes "
            f"{shapes}); got {[tuple(b.shape[1:]) for b in x_val]}."
        )


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffled (train, val) row indices; at least one row each side when n ≥ 2."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction!r}.")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = 0 if val_fraction == 0 or n < 2 else min(n - 1, max(1, round(val_fraction * n)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
