"""Dataset → :class:`Embedding` (an N × k array plus what made it): classical GMM Fisher vectors,
deep Fisher scores, activations, latents, adversarial Fisher vectors and D-pool, FV-VAE,
pixels, and the local-descriptor baselines (dense / SIFT / ORB × Fisher vector / VLAD / BoW).
What one does with an embedding is :mod:`fisher_core.explore` and :mod:`fisher_core.metrics`.
"""

from .afv import (
    adversarial_fisher_vectors,
    afv_embedding,
    afv_scorer,
    d_pool_embedding,
    discriminator_pool,
    generator_samples,
)
from .classical import fisher_vector_embedding, patch_gmm_embedding, pixel_embedding, power_l2
from .deep import (
    POOLS,
    activation_embedding,
    default_activation_layer,
    fisher_score_embedding,
    latent_embedding,
)
from .embedding import Embedding
from .export import (
    export_csv,
    export_npz,
    export_projector,
    export_projector_zip,
    projector_selection,
)
from .fvvae import fvvae_embedding
from .local import (
    DENSE_PCA,
    DESCRIPTOR_KINDS,
    ENCODINGS,
    KEYPOINT_PCA,
    default_pca,
    local_descriptor_embedding,
    local_embedding_name,
)

__all__ = [
    "DENSE_PCA",
    "DESCRIPTOR_KINDS",
    "ENCODINGS",
    "KEYPOINT_PCA",
    "POOLS",
    "Embedding",
    "activation_embedding",
    "adversarial_fisher_vectors",
    "afv_embedding",
    "afv_scorer",
    "d_pool_embedding",
    "default_pca",
    "default_activation_layer",
    "discriminator_pool",
    "export_csv",
    "export_npz",
    "export_projector",
    "export_projector_zip",
    "fisher_score_embedding",
    "fisher_vector_embedding",
    "patch_gmm_embedding",
    "fvvae_embedding",
    "generator_samples",
    "latent_embedding",
    "local_descriptor_embedding",
    "local_embedding_name",
    "pixel_embedding",
    "power_l2",
    "projector_selection",
]
