"""Measuring embeddings and models: FID and Fisher distances, the GAN's Fisher training monitor,
the domain feature extractor that FID needs here, linear probes and the FV normalisation
ablation, and the decode-based evaluations (FID vs α, attribute-edit scores). The on-disk
bookkeeping of these results is :mod:`fisher_core.workspace`.
"""

from .distance import (
    FrechetAccumulator,
    class_distance_matrix,
    fisher_distance,
    fisher_similarity,
    frechet_distance,
)
from .evaluate import (
    attribute_edit_scores,
    edit_operating_points,
    fid_vs_alpha,
    interpolation_ratios,
)
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
from .monitor import FisherMonitor
from .probe import (
    ProbeResult,
    fisher_vector_ablation,
    knn_probe,
    linear_probe,
    normalization_ablation,
    probe_embeddings,
)

__all__ = [
    "DomainFeatureExtractor",
    "FeatureExtractorConfig",
    "FeatureExtractorResult",
    "FisherMonitor",
    "FrechetAccumulator",
    "InceptionExtractor",
    "InceptionUnavailableError",
    "ProbeResult",
    "attribute_edit_scores",
    "class_distance_matrix",
    "edit_operating_points",
    "fid_vs_alpha",
    "interpolation_ratios",
    "fisher_distance",
    "fisher_similarity",
    "fisher_vector_ablation",
    "frechet_distance",
    "knn_probe",
    "linear_probe",
    "load_feature_extractor",
    "normalization_ablation",
    "probe_embeddings",
    "save_feature_extractor",
    "train_feature_extractor",
]
