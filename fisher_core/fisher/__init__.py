"""Fisher vectors (classical, GMM) and Fisher scores of deep models."""

from .descriptors import PatchDescriptor, image_descriptors
from .scores import FisherScoreError, FisherScorer, ModelProtocolError, fisher_scores
from .vectors import FisherVectorEncoder, fisher_vector

__all__ = [
    "FisherScoreError",
    "FisherScorer",
    "FisherVectorEncoder",
    "ModelProtocolError",
    "PatchDescriptor",
    "fisher_scores",
    "fisher_vector",
    "image_descriptors",
]
