"""Fisher maths on any model: the diagonal GMM and its Fisher vectors (batched encoder, the
differentiable FV layer, patch descriptors), and the per-example Fisher-score engine with its
random projections. No datasets, trained-model families or workspace here.
"""

from .descriptors import PatchDescriptor, default_patch, image_descriptors
from .gmm import DegenerateDataWarning, GaussianMixture, gmm_parameters
from .layer import FisherVectorLayer, signed_power
from .postprocess import FisherNormalizer
from .projection import PROJECTIONS, make_projection
from .scores import FisherScoreError, FisherScorer, ModelProtocolError, fisher_scores
from .vectors import FisherVectorEncoder, fisher_vector, normalize_

__all__ = [
    "PROJECTIONS",
    "DegenerateDataWarning",
    "FisherScoreError",
    "FisherNormalizer",
    "FisherScorer",
    "FisherVectorEncoder",
    "FisherVectorLayer",
    "GaussianMixture",
    "ModelProtocolError",
    "PatchDescriptor",
    "default_patch",
    "fisher_scores",
    "fisher_vector",
    "gmm_parameters",
    "image_descriptors",
    "make_projection",
    "normalize_",
    "signed_power",
]
