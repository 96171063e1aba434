"""Turn raw arrays (from .npz/.npy/IDX/decoded images) into a validated `ImageDataset`."""

from __future__ import annotations

import numpy as np

from .convert import ArraySource, convert, plan_images
from .dataset import ImageDataset
from .errors import DatasetError
from .limits import Limits

__all__ = ["assemble_dataset", "build_dataset", "encode_labels", "images_to_nchw",
           "side_arrays"]


def images_to_nchw(x: np.ndarray, limits: Limits, *, resize_to: tuple[int, int] | None = None
                   ) -> np.ndarray:
    """Validate an image array and return float32 (N, C, H, W) in [0, 1].

    Accepts (N, H, W), (N, H, W, C) or (N, C, H, W) with C ∈ {1, 3, 4} (alpha is dropped);
    uint8 (÷255), uint16 (÷65535), other integers in [0, 255], bool, or floats in [0, 1] or
    [0, 255]. Shape, dtype and limits are checked before any value is converted; the values
    are converted block by block into the one output array.
    """
    x = np.asarray(x)
    return convert(plan_images(x.shape, x.dtype, limits, resize_to), ArraySource(x))


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


def side_arrays(
    n: int,
    *,
    labels: np.ndarray | None = None,
    class_names: np.ndarray | list[str] | None = None,
    attributes: np.ndarray | None = None,
    attribute_names: np.ndarray | list[str] | None = None,
) -> tuple[np.ndarray | None, list[str] | None, np.ndarray | None, list[str] | None]:
    """Validate what comes with ``n`` images: labels (N,), class names, attributes (N, A),
    attribute names. Cheap: callers run it before reading the images when they can.

    Returns
    -------
    (labels, class_names, attributes, attribute_names)
        int64 (N,) or None, list or None, (N, A) or None, list or None.
    """
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
    return y, cn, a, an


def assemble_dataset(
    images: np.ndarray,
    *,
    name: str,
    labels: np.ndarray | None = None,
    class_names: np.ndarray | list[str] | None = None,
    attributes: np.ndarray | None = None,
    attribute_names: np.ndarray | list[str] | None = None,
) -> ImageDataset:
    """An :class:`ImageDataset` from float32 (N, C, H, W) images already in [0, 1] (as
    :func:`images_to_nchw` returns them: not copied) and their side arrays, validated."""
    y, cn, a, an = side_arrays(images.shape[0], labels=labels, class_names=class_names,
                               attributes=attributes, attribute_names=attribute_names)
    return ImageDataset(
        images=images, labels=y, class_names=cn, attributes=a,
        attribute_names=an or [], name=name,
    )


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
    return assemble_dataset(x, name=name, labels=labels, class_names=class_names,
                            attributes=attributes, attribute_names=attribute_names)
