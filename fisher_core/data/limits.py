"""Limits that bound what an uploaded dataset may cost in memory and time."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import DatasetError

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """Caps applied by :func:`fisher_core.data.load_file` before and while reading.

    The memory budget of a load is the final float32 array, ``max_total_values`` values:
    every format is checked against it from headers alone (image headers read by PIL without
    decoding, .npy headers inside an .npz's members, IDX headers, the first bytes of a gzip)
    before anything large is allocated. The output is then allocated once and filled block
    by block (or image by image), so a load costs about the dataset it yields, plus one
    source image when it resizes.

    Parameters
    ----------
    max_bytes : int, default=200 MiB
        Size of the file as supplied (matches the app's ``server.maxUploadSize = 200``).
    max_uncompressed_bytes : int, default=1 GiB
        Total uncompressed size of an archive (zip, npz, gzip), checked from the zip's
        directory (or an IDX header) before anything is extracted.
    max_entries : int, default=100,000
        Number of members in a zip archive.
    max_images : int, default=100,000
        Number of images in the dataset.
    max_image_pixels : int, default=2**24
        Pixels (H·W) of one source image, checked from its header before decoding
        (decompression bombs); with a ``size=`` resize it bounds the one image converted at
        a time, for arrays too.
    max_side : int, default=512
        Largest height or width accepted without a ``size=`` resize.
    max_total_values : int, default=2·10**8
        N·C·H·W of the final float32 array (800 MB), at the requested size when resizing.
    """

    max_bytes: int = 200 * 2**20
    max_uncompressed_bytes: int = 2**30
    max_entries: int = 100_000
    max_images: int = 100_000
    max_image_pixels: int = 2**24
    max_side: int = 512
    max_total_values: int = 200_000_000

    @classmethod
    def from_kwargs(cls, **kwargs: int) -> Limits:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise DatasetError(f"unknown limit(s) {unknown}; valid limits are {sorted(names)}.")
        for k, v in kwargs.items():
            if not isinstance(v, int) or v <= 0:
                raise DatasetError(f"limit {k} must be a positive integer; got {v!r}.")
        return cls(**kwargs)
