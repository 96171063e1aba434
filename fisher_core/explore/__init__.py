"""What a user does with an embedding: 2-D / 3-D views (UMAP, PCA), Fisher-kernel neighbours,
interpolation and attribute directions, and decoders that turn embedding vectors back into
images. Scores of these (FID, edit success, probes) are :mod:`fisher_core.metrics`.
"""

from .cpixelcnn import ConditionalPixelCNN
from .decode import (
    Decoder,
    DecoderConfig,
    DecoderResult,
    decoder_skill,
    decoder_warning,
    default_likelihood,
    reconstruction_errors,
    train_decoder,
)
from .decoder_io import load_decoder, save_decoder
from .edit import apply_direction, attribute_direction, interpolate
from .reduce import (
    DegenerateEmbeddingError,
    kernel_neighbors,
    neighbor_scores,
    pca_embed,
    umap_embed,
    umap_is_warm,
    warmup_umap,
)

__all__ = [
    "ConditionalPixelCNN",
    "Decoder",
    "DegenerateEmbeddingError",
    "DecoderConfig",
    "DecoderResult",
    "apply_direction",
    "attribute_direction",
    "decoder_skill",
    "decoder_warning",
    "default_likelihood",
    "interpolate",
    "kernel_neighbors",
    "load_decoder",
    "neighbor_scores",
    "pca_embed",
    "reconstruction_errors",
    "save_decoder",
    "train_decoder",
    "umap_embed",
    "umap_is_warm",
    "warmup_umap",
]
