"""Small deep generative models sharing one protocol (see :mod:`fisher_core.models.base`):
PixelCNN, VAE, EBM-GAN, FV-VAE, their layers and safetensors files. How they are trained is
:mod:`fisher_core.training`; how they embed a dataset is :mod:`fisher_core.embeddings`.

``MODEL_FAMILIES`` maps a family name to its (model class, config dataclass); a new family
(e.g. an energy-based GAN) is added by subclassing :class:`GenerativeModel`, overriding the
training hooks it needs, and registering it here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

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
from .pixelcnn import PixelCNN, PixelCNNConfig
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
    "PixelCNN",
    "PixelCNNConfig",
    "VAE",
    "VAEConfig",
    "bits_per_dim",
    "build_model",
    "check_images",
    "gaussian_kl",
    "load_model",
    "load_net",
    "make_generator",
    "nll_training_step",
    "quantize",
    "save_model",
    "save_net",
]

MODEL_FAMILIES: dict[str, tuple[type[nn.Module], type]] = {
    "pixelcnn": (PixelCNN, PixelCNNConfig),
    "vae": (VAE, VAEConfig),
    "ebgan": (EBGAN, EBGANConfig),
    "fvvae": (FVVAE, FVVAEConfig),
}


def build_model(family: str, **config: Any) -> nn.Module:
    """Build a model of a registered family from keyword configuration values.

    Parameters
    ----------
    family : str
        A key of ``MODEL_FAMILIES`` (``"pixelcnn"``, ``"vae"``, ``"ebgan"``, ``"fvvae"``).
    **config
        Fields of the family's config dataclass; missing fields take their defaults.

    Returns
    -------
    nn.Module
        A freshly initialised model (uses torch's global RNG for the initial weights).

    Raises
    ------
    ConfigError
        Unknown family, unknown config keys, or invalid values.
    """
    if family not in MODEL_FAMILIES:
        raise ConfigError(
            f"family must be one of {sorted(MODEL_FAMILIES)}; got {family!r}."
        )
    model_cls, config_cls = MODEL_FAMILIES[family]
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(
            f"unknown {config_cls.__name__} key(s) {unknown} for family {family!r}; "
            f"valid keys are {sorted(known)}."
        )
    return model_cls(config_cls(**config))
