"""Import a dataset file into the workspace, streamed (issue 20).

A zip of PNG/JPEG images, or images in an .npy, .npz or IDX file, is decoded a block of
images at a time straight into the new entry's ``images.npy`` (uint8 when the values are
8-bit, as :meth:`~fisher_core.workspace.Workspace.save_dataset` decides; see
:mod:`fisher_core.data.streamed`), so memory stays about one block whatever the number of
images: neither the file nor the decoded images are ever held whole. Array images that need a
conversion (floats, uint16, other integers) or a resize are read twice: a scan that checks
every value, then the conversion. The entry goes live only when it is complete (the
workspace's atomic commit). What is not streamed (an IDX pair in a zip, column-major arrays)
is read by :func:`~fisher_core.data.load_file` and saved as usual.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..data import load_file
from ..data.streamed import stream_file
from ..utils.io import NpyWriter
from .rows import dataset_meta
from .store import Entry

__all__ = ["import_dataset"]


def import_dataset(workspace: Any, path: str | os.PathLike, name: str, *,
                   size: int | tuple[int, int] | None = None, block: int = 4096,
                   progress: Callable[[float, str], None] | None = None,
                   **limits: int) -> Entry:
    """Read a dataset file (never unpickled) and save it to ``workspace`` as ``name``.

    Parameters
    ----------
    workspace : Workspace
    path : path-like
        Any format :func:`~fisher_core.data.load_file` reads (streamed where it can be).
    name : str
        Dataset name (an existing one is replaced).
    size : int or (int, int), optional
        Resize every image to (H, W).
    block : int, default=4096
        Images decoded and written at a time (streamed imports).
    progress : callable(fraction, message), optional
    **limits : int
        :class:`~fisher_core.data.Limits` overrides.

    Returns
    -------
    Entry
        The saved dataset.

    Raises
    ------
    DatasetError
        For every bad input; the workspace is left as it was.
    """
    report = progress or (lambda f, m: None)
    streamed = stream_file(path, size=size, **limits)
    if streamed is None:
        report(0.0, "reading the file")
        entry = workspace.save_dataset(load_file(path, size=size, **limits), name)
        report(1.0, "done")
        return entry
    side = {"labels": streamed.labels,
            "attributes": None if streamed.attributes is None else
            streamed.attributes.astype(np.uint8)}
    side = {k: v for k, v in side.items() if v is not None}
    meta = {**dataset_meta(streamed.side), "summary": streamed.summary(),
            "arrays": sorted(["images", *side])}
    try:
        start, verb = 0.0, "decoded"
        if streamed.needs_scan:  # the first of two passes: check every value, fix the dtype
            start, verb = 0.5, "converted"
            streamed.scan(lambda f: report(0.5 * f, f"checked {f:.0%} of the values"))
        with workspace.writer("datasets", name, meta) as folder:
            with NpyWriter(folder / "images.npy", (streamed.n, *streamed.shape),
                           streamed.dtype) as out:
                for images in streamed.blocks(block):
                    out.write(images)
                    report(start + (1.0 - start) * out.written / streamed.n,
                           f"{verb} {out.written:,}/{streamed.n:,} images")
            for key, value in side.items():
                np.save(folder / f"{key}.npy", value, allow_pickle=False)
    finally:
        streamed.close()
    return workspace.entry("datasets", name)
