"""Fisher maths on any model: the diagonal GMM and its Fisher vectors (batched encoder, the
differentiable FV layer, patch and SIFT/ORB keypoint descriptors, the VLAD and bag-of-words
baselines), and the per-example Fisher-score engine with its random projections. No
datasets, trained-model families or workspace here.
"""

from .descriptors import PatchDescriptor, default_patch, image_descriptors
from .encodings import WEIGHTINGS, BagOfWordsEncoder, VLADEncoder
from .gmm import DegenerateDataWarning, GaussianMixture, gmm_parameters
from .keypoints import KEYPOINT_KINDS, KeypointDescriptor, keypoint_descriptors, upsample_image
from .layer import FisherVectorLayer, signed_power
from .postprocess import FisherNormalizer
from .projection import PROJECTIONS, make_projection
from .scores import FisherScoreError, FisherScorer, ModelProtocolError, fisher_scores
from .vectors import FisherVectorEncoder, fisher_vector, normalize_

__all__ = [
    "KEYPOINT_KINDS",
    "PROJECTIONS",
    "WEIGHTINGS",
    "BagOfWordsEncoder",
    "DegenerateDataWarning",
    "FisherScoreError",
    "FisherNormalizer",
    "FisherScorer",
    "FisherVectorEncoder",
    "FisherVectorLayer",
    "GaussianMixture",
    "KeypointDescriptor",
    "ModelProtocolError",
    "PatchDescriptor",
    "VLADEncoder",
    "default_patch",
    "fisher_scores",
    "fisher_vector",
    "gmm_parameters",
    "image_descriptors",
    "keypoint_descriptors",
    "make_projection",
    "normalize_",
    "signed_power",
    "upsample_image",
]
