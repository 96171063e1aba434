"""The library's version and the versions of what it was saved with (kept in every saved file)."""

from __future__ import annotations

import platform

import torch

__all__ = ["__version__", "versions"]

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """Versions of FisherLab, torch, safetensors and Python, as recorded in saved files."""
    import safetensors

    return {
        "fisherlab": __version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }
