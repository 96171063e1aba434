"""Distances between sets of features: Fréchet distance (FID), Fisher distance, similarity."""

from .distance import (
    FrechetAccumulator,
    class_distance_matrix,
    fisher_distance,
    fisher_similarity,
    frechet_distance,
)

__all__ = [
    "FrechetAccumulator",
    "class_distance_matrix",
    "fisher_distance",
    "fisher_similarity",
    "frechet_distance",
]
