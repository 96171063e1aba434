"""Distances between sets of features (FID, Fisher distance), the domain feature extractor
that FID needs here, and the decode-based evaluations (FID vs α, attribute-edit scores)."""

from .distance import (
    FrechetAccumulator,
    class_distance_matrix,
    fisher_distance,
    fisher_similarity,
    frechet_distance,
)
from .evaluate import attribute_edit_scores, fid_vs_alpha
from .features import (
    DomainFeatureExtractor,
    FeatureExtractorConfig,
    FeatureExtractorResult,
    InceptionExtractor,
    InceptionUnavailableError,
    load_feature_extractor,
    save_feature_extractor,
    train_feature_extractor,
)

__all__ = [
    "DomainFeatureExtractor",
    "FeatureExtractorConfig",
    "FeatureExtractorResult",
    "FrechetAccumulator",
    "InceptionExtractor",
    "InceptionUnavailableError",
    "attribute_edit_scores",
    "class_distance_matrix",
    "fid_vs_alpha",
    "fisher_distance",
    "fisher_similarity",
    "frechet_distance",
    "load_feature_extractor",
    "save_feature_extractor",
    "train_feature_extractor",
]
