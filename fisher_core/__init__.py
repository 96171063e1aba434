"""FisherLab's library: datasets, models, Fisher scores and everything built on them.

It never imports streamlit; every capability of the app is a plain function or class here.
"""

from .data import DatasetError, ImageDataset, load_builtin, load_file
from .embedding import Embedding
from .store import Workspace

__version__ = "0.1.0"

__all__ = [
    "DatasetError",
    "Embedding",
    "ImageDataset",
    "Workspace",
    "load_builtin",
    "load_file",
]
