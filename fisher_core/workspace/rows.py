"""Saved datasets read in chunks: the ``.npy`` layout of a dataset entry (issue 20).

A dataset entry holds ``images.npy`` (uint8 when lossless, else float32), ``labels.npy`` and
``attributes.npy``; entries saved before hold one ``arrays.safetensors``, still read.
:class:`DatasetRows` reads images a chunk at a time with plain file reads, so a pass over a
100k-image dataset keeps memory flat.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.dataset import ImageDataset
from ..utils.io import NpyRows, load_arrays

__all__ = ["DatasetRows", "dataset_arrays", "dataset_meta"]


def dataset_meta(ds: ImageDataset) -> dict[str, Any]:
    """The metadata saved with a dataset (summary, names, levels, title)."""
    return {"summary": ds.summary(), "class_names": ds.class_names,
            "attribute_names": ds.attribute_names, "levels": ds.levels, "title": ds.name}


def dataset_arrays(entry: Any, images: bool = True) -> dict[str, np.ndarray]:
    """A saved dataset's arrays: the ``.npy`` files its metadata lists (float32 images
    memory-mapped copy-on-write; ``images=False`` leaves them out), or the
    ``arrays.safetensors`` of entries saved before. A listed file that is missing raises
    (the version was replaced while being read: the workspace reads again)."""
    listed = entry.meta.get("arrays")
    if listed is None:
        return load_arrays(entry.path / "arrays.safetensors")
    return {key: np.load(entry.path / f"{key}.npy", allow_pickle=False,
                         mmap_mode="c" if key == "images" else None)
            for key in listed if images or key != "images"}


class DatasetRows:
    """A saved dataset read a chunk of images at a time (memory flat in its size).

    Attributes
    ----------
    entry : Entry
        The workspace entry (:class:`~fisher_core.workspace.Entry`): the version read (its
        folder name identifies the data, e.g. to resume work).
    n : int
    shape : tuple of int
        (C, H, W) of one image.
    labels : ndarray or None
    """

    def __init__(self, entry: Any, side: dict[str, np.ndarray]) -> None:
        self.entry = entry
        if "arrays" in entry.meta:
            self._rows = NpyRows(entry.path / "images.npy")
            self.n, self.shape = self._rows.shape[0], tuple(self._rows.shape[1:])
            self._images = None
        else:  # an entry saved before: one safetensors file, read whole
            self._rows, self._images = None, side["images"]
            self.n, self.shape = len(self._images), tuple(self._images.shape[1:])
        self.labels = side.get("labels")

    @property
    def version(self) -> str:
        """``name@version`` of the data read."""
        return f"{self.entry.name}@{self.entry.path.name}"

    def read(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` as float32 (n, C, H, W) in [0, 1]."""
        block = (self._rows.read(start, stop) if self._rows is not None
                 else self._images[start:stop])
        if block.dtype == np.uint8:
            return block.astype(np.float32) / 255.0
        return np.asarray(block, dtype=np.float32)
