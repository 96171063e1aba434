"""Turn raw arrays (from .npz/.npy/IDX/decoded images) into a validated `ImageDataset`."""

from __future__ import annotations

import numpy as np

from .dataset import ImageDataset
from .errors import DatasetError
from .limits import Limits

__all__ = ["images_to_nchw", "build_dataset", "encode_labels"]

_CHANNELS = (1, 3, 4)


def images_to_nchw(x: np.ndarray, limits: Limits, *, resize_to: tuple[int, int] | None = None
                   ) -> np.ndarray:
    """Validate an image array and return float32 (N, C, H, W) in [0, 1].

    Accepts (N, H, W), (N, H, W, C) or (N, C, H, W) with C ∈ {1, 3, 4} (alpha is dropped);
    uint8 (÷255), uint16 (÷65535), other integers in [0, 255], bool, or floats in [0, 1] or
    [0, 255].
    """
    if x.dtype == object:
        raise DatasetError("images are Python objects, not numbers; save a numeric array.")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DatasetError(f"images must be numeric; got dtype {x.dtype}.")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DatasetError("images must be real numbers; got a complex array.")
    if x.ndim == 2:
        raise DatasetError(
            f"images must be a stack of images (N, H, W) or (N, H, W, C); got a single 2-D "
            f"array of shape {x.shape}. Add a leading axis for one image."
        )
    if x.ndim not in (3, 4):
        raise DatasetError(
            f"images must have 3 or 4 dimensions ((N, H, W), (N, H, W, C) or (N, C, H, W)); "
            f"got {x.ndim} dimensions, shape {x.shape}."
        )
    if x.shape[0] == 0:
        raise DatasetError("the file holds zero images; supply at least one image.")
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[-1] in _CHANNELS and x.shape[1] not in _CHANNELS:
        x = np.moveaxis(x, -1, 1)  # (N, H, W, C) -> (N, C, H, W)
    elif x.shape[1] not in _CHANNELS:
        raise DatasetError(
            f"cannot tell the channel axis of shape {x.shape}: expected 1, 3 or 4 channels "
            "first (N, C, H, W) or last (N, H, W, C)."
        )
    if x.shape[1] == 4:
        x = x[:, :3]  # drop alpha
    n, c, h, w = x.shape
    if n > limits.max_images:
        raise DatasetError(
            f"{n} images exceed the limit of {limits.max_images}; upload a subset "
            "or raise max_images."
        )
    if min(h, w) < 2:
        raise DatasetError(f"images must be at least 2×2 pixels; got {h}×{w}.")
    if resize_to is None and max(h, w) > limits.max_side:
        raise DatasetError(
            f"images of {h}×{w} pixels exceed the {limits.max_side}-pixel limit; "
            "resize them (choose a size) or raise max_side."
        )
    if n * c * h * w > limits.max_total_values:
        raise DatasetError(
            f"{n}×{c}×{h}×{w} values exceed the limit of {limits.max_total_values}; "
            "upload fewer or smaller images."
        )
    x = _to_unit_float(x)
    if resize_to is not None and (h, w) != tuple(resize_to):
        x = ImageDataset(x).resize(resize_to).images
    return x


def _to_unit_float(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.bool_:
        return x.astype(np.float32)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if x.dtype == np.uint16:
        return x.astype(np.float32) / 65535.0
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise DatasetError(
                f"integer images must lie in [0, 255]; got [{lo}, {hi}]. Rescale them first."
            )
        return x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DatasetError("images contain NaN or infinite values; clean the data first.")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0:
        raise DatasetError(
            f"float images must lie in [0, 1] (or [0, 255]); the minimum is {lo:.4g}. "
            "Rescale them first."
        )
    if hi <= 1.0:
        return x
    if hi <= 255.0:
        return x / 255.0
    raise DatasetError(
        f"float images must lie in [0, 1] (or [0, 255]); the maximum is {hi:.4g}. "
        "Rescale them first."
    )


def encode_labels(labels: np.ndarray, n: int, class_names: list[str] | None
                  ) -> tuple[np.ndarray, list[str]]:
    """Integer or string labels → (int64 indices, class names)."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise DatasetError(
            f"labels must hold one entry per image ({n}); got shape {y.shape}."
        )
    if y.dtype.kind in "US":
        names, idx = np.unique(y.astype(str), return_inverse=True)
        if class_names is not None:
            raise DatasetError("give either string labels or class_names, not both.")
        return idx.astype(np.int64), [str(s) for s in names]
    if y.dtype == np.bool_:
        y = y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.all(y == np.round(y)):
            raise DatasetError("labels must be whole numbers (class indices) or strings.")
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"labels must be integers or strings; got dtype {y.dtype}.")
    if y.min() < 0:
        raise DatasetError("labels must be non-negative class indices.")
    k = int(y.max()) + 1
    if class_names is None:
        class_names = [str(i) for i in range(k)]
    if len(class_names) < k:
        raise DatasetError(
            f"labels go up to {k - 1} but class_names has only {len(class_names)} "
            "entries; give one name per class."
        )
    return y.astype(np.int64), list(class_names)


def _names(value: np.ndarray | None, what: str) -> list[str] | None:
    if value is None:
        return None
    v = np.asarray(value)
    if v.ndim != 1 or v.dtype.kind not in "US":
        raise DatasetError(f"{what} must be a 1-D array of strings; got {v.dtype} {v.shape}.")
    return [str(s) for s in v]


def build_dataset(
    images: np.ndarray,
    *,
    limits: Limits,
    name: str,
    labels: np.ndarray | None = None,
    class_names: np.ndarray | list[str] | None = None,
    attributes: np.ndarray | None = None,
    attribute_names: np.ndarray | list[str] | None = None,
    resize_to: tuple[int, int] | None = None,
) -> ImageDataset:
    """Validate raw arrays and assemble an :class:`ImageDataset`."""
    x = images_to_nchw(np.asarray(images), limits, resize_to=resize_to)
    n = x.shape[0]
    cn = _names(class_names, "class_names") if not isinstance(class_names, list) else class_names
    y = None
    if labels is not None:
        y, cn = encode_labels(labels, n, cn)
    a = None
    an = (
        _names(attribute_names, "attribute_names")
        if not isinstance(attribute_names, list)
        else attribute_names
    )
    if attributes is not None:
        a = np.asarray(attributes)
        if a.dtype.kind not in "biuf":
            raise DatasetError(f"attributes must be 0/1 numbers; got dtype {a.dtype}.")
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[0] != n:
            raise DatasetError(
                f"attributes must have one row per image ({n}); got shape {a.shape}."
            )
    return ImageDataset(
        images=x, labels=y, class_names=cn, attributes=a,
        attribute_names=an or [], name=name,
    )
