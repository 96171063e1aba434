"""What :func:`~fisher_core.fisher.scores.fisher_scores` accepts as data, as batches.

Data is a tensor or array (N, ...), an :class:`~fisher_core.data.ImageDataset`, or any
iterable of batches (a ``DataLoader``; ``(x, y)`` pairs are read as ``x``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ._persample import FisherScoreError

Data = torch.Tensor | np.ndarray | Iterable


def model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def count(x: Data) -> int | None:
    if isinstance(x, torch.Tensor | np.ndarray):
        return int(x.shape[0]) if x.ndim else None
    dataset = getattr(x, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def batches(x: Data, batch_size: int, dtype: torch.dtype, device: torch.device) -> Iterator:
    """Tensors of at most ``batch_size`` examples, floats cast to the model's dtype."""
    if hasattr(x, "images") and isinstance(x.images, np.ndarray):
        x = x.images  # an ImageDataset
    if isinstance(x, torch.Tensor | np.ndarray):
        if x.ndim == 0 or x.shape[0] == 0:
            raise FisherScoreError(
                f"x must hold at least one example along its first axis; got shape {x.shape}."
            )
        source: Iterable = (x[s : s + batch_size] for s in range(0, x.shape[0], batch_size))
    elif isinstance(x, Iterable):
        source = x
    else:
        raise FisherScoreError(
            f"x must be a tensor, an array or an iterable of batches; got {type(x).__name__}."
        )
    for item in source:
        if isinstance(item, list | tuple):
            item = item[0]  # (x, y) pairs from a DataLoader
        t = torch.as_tensor(item)
        if t.is_floating_point():
            t = t.to(dtype)
        t = t.to(device)
        for s in range(0, t.shape[0], batch_size):
            yield t[s : s + batch_size]


def stack(outs: list[np.ndarray], dim: int) -> np.ndarray:
    if not outs:
        raise FisherScoreError("x holds zero examples; pass at least one.")
    outs = [o if isinstance(o, np.ndarray) else o.cpu().numpy() for o in outs]
    return np.ascontiguousarray(np.concatenate(outs, axis=0), dtype=np.float32)
