"""Datasets: the built-in ones and safe loading of user files."""

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
