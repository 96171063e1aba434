"""FisherLab's library: datasets, models, Fisher scores and everything built on them.

``import fisher_core as fc`` gives what a notebook or a script needs; the packages hold the
rest, in the order their imports allow (each imports only from those before it)::

    utils → data → fisher → models → training → embeddings → explore → metrics → plots
    → workspace → cli

It never imports streamlit; every capability of the app is a plain function or class here,
and ``fisherlab`` (:mod:`fisher_core.cli`) is the command line over the same workspace.
"""

from . import plots
from .data import DatasetError, ImageDataset, Limits, load_builtin, load_file
from .embeddings import (
    Embedding,
    activation_embedding,
    adversarial_fisher_vectors,
    afv_embedding,
    d_pool_embedding,
    export_csv,
    export_npz,
    export_projector,
    export_projector_zip,
    fisher_score_embedding,
    fisher_vector_embedding,
    fvvae_embedding,
    latent_embedding,
    pixel_embedding,
    power_l2,
)
from .explore import (
    Decoder,
    apply_direction,
    attribute_direction,
    interpolate,
    kernel_neighbors,
    load_decoder,
    pca_embed,
    save_decoder,
    train_decoder,
    umap_embed,
)
from .fisher import (
    FisherScorer,
    FisherVectorEncoder,
    FisherVectorLayer,
    GaussianMixture,
    PatchDescriptor,
    fisher_scores,
    fisher_vector,
    image_descriptors,
)
from .metrics import (
    FisherMonitor,
    attribute_edit_scores,
    class_distance_matrix,
    fid_vs_alpha,
    fisher_distance,
    fisher_similarity,
    fisher_vector_ablation,
    frechet_distance,
    linear_probe,
    normalization_ablation,
    probe_embeddings,
    train_feature_extractor,
)
from .models import MODEL_FAMILIES, build_model, load_model, save_model
from .training import ProgressEvent, TrainResult, train
from .utils import __version__
from .workspace import (
    Workspace,
    fid_curves,
    list_models,
    load_saved_model,
    train_and_save,
    train_embedding_decoder,
    train_extractor,
)

__all__ = [
    "MODEL_FAMILIES",
    "DatasetError",
    "Decoder",
    "Embedding",
    "FisherMonitor",
    "FisherScorer",
    "FisherVectorEncoder",
    "FisherVectorLayer",
    "GaussianMixture",
    "ImageDataset",
    "Limits",
    "PatchDescriptor",
    "ProgressEvent",
    "TrainResult",
    "Workspace",
    "__version__",
    "activation_embedding",
    "adversarial_fisher_vectors",
    "afv_embedding",
    "apply_direction",
    "attribute_direction",
    "attribute_edit_scores",
    "build_model",
    "class_distance_matrix",
    "d_pool_embedding",
    "export_csv",
    "export_npz",
    "export_projector",
    "export_projector_zip",
    "fid_curves",
    "fid_vs_alpha",
    "fisher_distance",
    "fisher_score_embedding",
    "fisher_scores",
    "fisher_similarity",
    "fisher_vector",
    "fisher_vector_ablation",
    "fisher_vector_embedding",
    "frechet_distance",
    "fvvae_embedding",
    "image_descriptors",
    "interpolate",
    "kernel_neighbors",
    "latent_embedding",
    "linear_probe",
    "list_models",
    "load_builtin",
    "load_decoder",
    "load_file",
    "load_model",
    "load_saved_model",
    "normalization_ablation",
    "plots",
    "pca_embed",
    "pixel_embedding",
    "power_l2",
    "probe_embeddings",
    "save_decoder",
    "save_model",
    "train",
    "train_and_save",
    "train_decoder",
    "train_embedding_decoder",
    "train_extractor",
    "train_feature_extractor",
    "umap_embed",
]
