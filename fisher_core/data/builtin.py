"""Built-in datasets that ship with FisherLab (nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .dataset import ImageDataset
from .errors import DatasetError
from .faces import FACE_ATTRIBUTES, render_faces

__all__ = ["BUILTIN_DATASETS", "load_builtin"]


def _digits(**options: object) -> ImageDataset:
    """scikit-learn's 1,797 8×8 handwritten digits, values 0..16 scaled to [0, 1]."""
    if options:
        raise DatasetError(f"'digits' takes no options; got {sorted(options)}.")
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    return ImageDataset(
        images=images,
        labels=d.target.astype(np.int64),
        class_names=[str(i) for i in range(10)],
        name="digits",
    )


def _faces(*, n: int = 3000, size: int = 32, seed: int = 0, noise: float = 0.03) -> ImageDataset:
    """Procedural cartoon faces with four independent visible attributes.

    Labels are the attribute combination: ``label = Σ_j attribute_j · 2^j`` over
    (smiling, eyeglasses, eyes_open, hat), 16 classes named like ``"smiling+hat"``.
    """
    if not 1 <= n <= 100_000:
        raise DatasetError(f"faces: n must be between 1 and 100000; got {n}.")
    if not 16 <= size <= 128:
        raise DatasetError(f"faces: size must be between 16 and 128; got {size}.")
    rng = np.random.default_rng(seed)
    attributes = rng.random((n, len(FACE_ATTRIBUTES))) < 0.5
    images = render_faces(attributes, size=size, rng=rng, noise=noise)
    labels = attributes.astype(np.int64) @ (1 << np.arange(len(FACE_ATTRIBUTES)))
    class_names = [
        "+".join(a for j, a in enumerate(FACE_ATTRIBUTES) if c >> j & 1) or "plain"
        for c in range(1 << len(FACE_ATTRIBUTES))
    ]
    return ImageDataset(
        images=images,
        labels=labels,
        class_names=class_names,
        attributes=attributes,
        attribute_names=list(FACE_ATTRIBUTES),
        name="faces",
    )


BUILTIN_DATASETS: dict[str, Callable[..., ImageDataset]] = {"digits": _digits, "faces": _faces}


def load_builtin(name: str, **options: object) -> ImageDataset:
    """Load a built-in dataset.

    Parameters
    ----------
    name : {"digits", "faces"}
        ``"digits"``: scikit-learn's 8×8 digits (1,797 images, 10 classes).
        ``"faces"``: procedural 32×32 grey cartoon faces (default 3,000) with attributes
        ``smiling``, ``eyeglasses``, ``eyes_open``, ``hat``; options ``n``, ``size``,
        ``seed``, ``noise``.
    **options
        Passed to the dataset's generator.

    Returns
    -------
    ImageDataset
    """
    try:
        make = BUILTIN_DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown built-in dataset {name!r}; choose one of {sorted(BUILTIN_DATASETS)}."
        ) from None
    try:
        return make(**options)
    except TypeError as exc:
        raise DatasetError(f"bad options for built-in dataset {name!r}: {exc}") from None
