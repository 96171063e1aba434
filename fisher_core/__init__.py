"""FisherLab's library: datasets, models, Fisher scores and everything built on them.

It never imports streamlit; every capability of the app is a plain function or class here.
"""

from .data import DatasetError, ImageDataset, load_builtin, load_file
from .embedding import Embedding
from .fisher import (
    FisherScorer,
    FisherVectorEncoder,
    PatchDescriptor,
    fisher_scores,
    fisher_vector,
    image_descriptors,
)
from .gmm import GaussianMixture
from .store import Workspace

__version__ = "0.1.0"

__all__ = [
    "DatasetError",
    "Embedding",
    "FisherScorer",
    "FisherVectorEncoder",
    "GaussianMixture",
    "PatchDescriptor",
    "ImageDataset",
    "Workspace",
    "fisher_scores",
    "fisher_vector",
    "image_descriptors",
    "load_builtin",
    "load_file",
]
