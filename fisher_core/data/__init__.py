"""Datasets: the built-in ones (procedural faces, scikit-learn's digits), safe loading of user
files within limits, and the :class:`ImageDataset` type. No models or embeddings here.
"""

from .builtin import BUILTIN_DATASETS, load_builtin
from .dataset import ImageDataset
from .errors import DatasetError
from .limits import Limits
from .loaders import SUPPORTED_FORMATS, load_file

__all__ = [
    "BUILTIN_DATASETS",
    "DatasetError",
    "ImageDataset",
    "Limits",
    "SUPPORTED_FORMATS",
    "load_builtin",
    "load_file",
]
