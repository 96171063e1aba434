"""`ImageDataset`: the in-memory image dataset every other part of FisherLab consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import DatasetError

__all__ = ["ImageDataset"]


@dataclass(eq=False)
class ImageDataset:
    """Images with optional class labels and binary attributes.

    Parameters
    ----------
    images : ndarray of shape (N, C, H, W)
        float32 in [0, 1], C = 1 (grey) or 3 (RGB).
    labels : ndarray of shape (N,) or None, default=None
        int64 class indices into ``class_names``.
    class_names : list of str or None, default=None
        Name of each class; required when ``labels`` is given (defaults to ``"0", "1", ...``).
    attributes : ndarray of shape (N, A) or None, default=None
        Boolean attributes (e.g. ``smiling``).
    attribute_names : list of str, default=[]
        Name of each attribute column.
    name : str, default="dataset"
        Human-readable name.
    levels : int or None, default=None
        Number of grey levels if the images were quantised (see :meth:`quantize`).

    Raises
    ------
    DatasetError
        When shapes, dtypes or value ranges are inconsistent.
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    attributes: np.ndarray | None = None
    attribute_names: list[str] = field(default_factory=list)
    name: str = "dataset"
    levels: int | None = None

    def __post_init__(self) -> None:
        x = np.asarray(self.images)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise DatasetError(
                f"images must have shape (N, C, H, W) with C = 1 or 3; got {x.shape}."
            )
        if x.shape[0] == 0:
            raise DatasetError("the dataset holds zero images; supply at least one image.")
        if not np.issubdtype(x.dtype, np.floating):
            raise DatasetError(f"images must be float in [0, 1]; got dtype {x.dtype}.")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise DatasetError("images contain NaN or infinite values; clean the data first.")
        if x.min() < 0.0 or x.max() > 1.0:
            raise DatasetError(
                f"image values must lie in [0, 1]; got [{x.min():.3g}, {x.max():.3g}]."
            )
        self.images = x
        n = x.shape[0]
        if self.labels is not None:
            y = np.asarray(self.labels)
            if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
                raise DatasetError(
                    f"labels must be {n} integers, one per image; got shape {y.shape}, "
                    f"dtype {y.dtype}."
                )
            if y.min() < 0:
                raise DatasetError("labels must be non-negative class indices.")
            self.labels = y.astype(np.int64)
            if self.class_names is None:
                self.class_names = [str(i) for i in range(int(y.max()) + 1)]
            if len(self.class_names) <= int(y.max()):
                raise DatasetError(
                    f"labels go up to {int(y.max())} but only {len(self.class_names)} "
                    "class_names were given; give one name per class."
                )
            self.class_names = [str(c) for c in self.class_names]
        else:
            self.class_names = None
        if self.attributes is not None:
            a = np.asarray(self.attributes)
            if a.ndim == 1:
                a = a[:, None]
            if a.ndim != 2 or a.shape[0] != n:
                raise DatasetError(
                    f"attributes must have shape ({n}, A), one row per image; got {a.shape}."
                )
            if a.dtype != np.bool_:
                if not np.isin(a, (0, 1)).all():
                    raise DatasetError("attributes must be binary (0/1 or true/false).")
                a = a.astype(bool)
            self.attributes = a
            names = list(self.attribute_names) or [f"attr{i}" for i in range(a.shape[1])]
            if len(names) != a.shape[1]:
                raise DatasetError(
                    f"{a.shape[1]} attribute columns but {len(names)} attribute_names; "
                    "give one name per column."
                )
            self.attribute_names = [str(s) for s in names]
        else:
            self.attribute_names = []

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        """Number of channels C."""
        return int(self.images.shape[1])

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable description (counts, shape, names)."""
        return {
            "name": self.name,
            "n": len(self),
            "shape": list(self.shape),
            "levels": self.levels,
            "class_names": self.class_names,
            "attribute_names": self.attribute_names,
            "class_counts": None
            if self.labels is None
            else np.bincount(self.labels, minlength=len(self.class_names or [])).tolist(),
            "attribute_counts": None
            if self.attributes is None
            else self.attributes.sum(axis=0).astype(int).tolist(),
        }

    # ------------------------------------------------------------------ selection
    def subset(self, index: np.ndarray | slice | list[int]) -> ImageDataset:
        """Rows ``index`` (integer indices, boolean mask or slice) as a new dataset."""
        idx = index if isinstance(index, slice) else np.asarray(index)
        return replace(
            self,
            images=self.images[idx],
            labels=None if self.labels is None else self.labels[idx],
            attributes=None if self.attributes is None else self.attributes[idx],
        )

    def split(
        self, test_size: float = 0.2, *, seed: int = 0, stratify: bool = True
    ) -> tuple[ImageDataset, ImageDataset]:
        """Seeded train/test split.

        Parameters
        ----------
        test_size : float, default=0.2
            Fraction of images in the test part, in (0, 1).
        seed : int, default=0
            Seed of the permutation.
        stratify : bool, default=True
            Keep class proportions when labels exist and every class has ≥ 2 images.

        Returns
        -------
        (train, test) : tuple of ImageDataset
        """
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size must be in (0, 1); got {test_size!r}.")
        n = len(self)
        n_test = int(round(test_size * n))
        if n_test < 1 or n_test >= n:
            raise DatasetError(f"cannot split {n} images with test_size={test_size}.")
        rng = np.random.default_rng(seed)
        if stratify and self.labels is not None and np.bincount(self.labels).min(initial=2) >= 2:
            from sklearn.model_selection import train_test_split

            train_idx, test_idx = train_test_split(
                np.arange(n), test_size=n_test, random_state=seed, stratify=self.labels
            )
        else:
            perm = rng.permutation(n)
            test_idx, train_idx = perm[:n_test], perm[n_test:]
        return self.subset(np.sort(train_idx)), self.subset(np.sort(test_idx))

    # ------------------------------------------------------------------ conversion
    def to_grey(self) -> ImageDataset:
        """Luma (ITU-R 601) grey version; unchanged if already grey."""
        if self.channels == 1:
            return self
        w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        grey = np.einsum("nchw,c->nhw", self.images, w)[:, None]  # (N, 1, H, W)
        return replace(self, images=np.clip(grey, 0.0, 1.0), levels=None)

    def to_rgb(self) -> ImageDataset:
        """RGB version (grey repeated over 3 channels); unchanged if already RGB."""
        if self.channels == 3:
            return self
        return replace(self, images=np.repeat(self.images, 3, axis=1))

    def resize(self, size: int | tuple[int, int]) -> ImageDataset:
        """Resize every image to ``size`` (H, W) with antialiased bilinear interpolation."""
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if h < 2 or w < 2 or h > 1024 or w > 1024:
            raise ValueError(f"size must be between 2 and 1024 pixels; got {(h, w)}.")
        if (h, w) == self.images.shape[2:]:
            return self
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            out = F.interpolate(
                torch.from_numpy(self.images), size=(h, w), mode="bilinear",
                antialias=True, align_corners=False,
            )
        return replace(self, images=out.clamp_(0, 1).numpy(), levels=None)

    def quantize(self, levels: int) -> ImageDataset:
        """Round every value to one of ``levels`` evenly spaced grey levels in [0, 1].

        Discrete models (PixelCNN with a categorical output) read level ``round(x·(L−1))``.
        """
        if not isinstance(levels, int | np.integer) or not 2 <= levels <= 256:
            raise ValueError(f"levels must be an integer in [2, 256]; got {levels!r}.")
        q = np.round(self.images * (levels - 1)) / (levels - 1)
        return replace(self, images=q.astype(np.float32), levels=int(levels))

    def convert(
        self,
        *,
        channels: int | None = None,
        size: int | tuple[int, int] | None = None,
        levels: int | None = None,
    ) -> ImageDataset:
        """Apply grey/RGB conversion, resize and quantisation, in that order."""
        ds = self
        if channels == 1:
            ds = ds.to_grey()
        elif channels == 3:
            ds = ds.to_rgb()
        elif channels is not None:
            raise ValueError(f"channels must be 1, 3 or None; got {channels!r}.")
        if size is not None:
            ds = ds.resize(size)
        if levels is not None:
            ds = ds.quantize(levels)
        return ds
