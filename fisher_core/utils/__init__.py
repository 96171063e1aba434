"""Low-level helpers every layer may use: atomic file writes and safe array files, the device
and dtype options, the library's version. Nothing here knows about datasets, models or Fisher
scores.
"""

from .devices import resolve_device, resolve_dtype
from .io import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    load_arrays,
    read_json,
    save_arrays,
)
from .versions import __version__, versions

__all__ = [
    "__version__",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "load_arrays",
    "read_json",
    "resolve_device",
    "resolve_dtype",
    "save_arrays",
    "versions",
]
