"""Small deep generative models sharing one protocol (see :mod:`fisher_core.models.base`):
PixelCNN, VAE, EBM-GAN, FV-VAE, the patch GMM (fitted by EM), their layers and safetensors
files. How they are trained is :mod:`fisher_core.training`; how they embed a dataset is
:mod:`fisher_core.embeddings`.

``MODEL_FAMILIES`` maps a family name to its (model class, config dataclass); a new family
(e.g. an energy-based GAN) is added by subclassing :class:`GenerativeModel`, overriding the
training hooks it needs, and registering it in :mod:`fisher_core.models.registry`.
"""

from __future__ import annotations

from .base import (
    ConfigError,
    GenerativeModel,
    bits_per_dim,
    check_images,
    make_generator,
    nll_training_step,
    quantize,
)
from .ebgan import EBGAN, EBGANConfig
from .fvvae import FVVAE, FVVAEConfig
from .io import ModelFileError, load_model, save_model
from .netio import load_net, save_net
from .patchgmm import PatchGMM, PatchGMMConfig
from .pixelcnn import PixelCNN, PixelCNNConfig
from .registry import MODEL_FAMILIES, build_model, config_help
from .vae import VAE, VAEConfig, gaussian_kl

__all__ = [
    "MODEL_FAMILIES",
    "ConfigError",
    "EBGAN",
    "EBGANConfig",
    "FVVAE",
    "FVVAEConfig",
    "GenerativeModel",
    "ModelFileError",
    "PatchGMM",
    "PatchGMMConfig",
    "PixelCNN",
    "PixelCNNConfig",
    "VAE",
    "VAEConfig",
    "bits_per_dim",
    "build_model",
    "check_images",
    "config_help",
    "gaussian_kl",
    "load_model",
    "load_net",
    "make_generator",
    "nll_training_step",
    "quantize",
    "save_model",
    "save_net",
]
