"""The registry of model families: a family name → (model class, config dataclass)."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from .base import ConfigError
from .ebgan import EBGAN, EBGANConfig
from .fvvae import FVVAE, FVVAEConfig
from .patchgmm import PatchGMM, PatchGMMConfig
from .pixelcnn import PixelCNN, PixelCNNConfig
from .vae import VAE, VAEConfig

__all__ = ["MODEL_FAMILIES", "build_model", "config_help"]

MODEL_FAMILIES: dict[str, tuple[type[nn.Module], type]] = {
    "pixelcnn": (PixelCNN, PixelCNNConfig),
    "vae": (VAE, VAEConfig),
    "ebgan": (EBGAN, EBGANConfig),
    "fvvae": (FVVAE, FVVAEConfig),
    "gmm": (PatchGMM, PatchGMMConfig),
}


def build_model(family: str, **config: Any) -> nn.Module:
    """Build a model of a registered family from keyword configuration values.

    Parameters
    ----------
    family : str
        A key of ``MODEL_FAMILIES`` (``"pixelcnn"``, ``"vae"``, ``"ebgan"``, ``"fvvae"``,
        ``"gmm"``).
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


def config_help(family: str) -> dict[str, str]:
    """Each config field's description, from the config class's numpydoc ``Parameters``.

    The docstring is the single source: the app shows these as help on every field.

    Parameters
    ----------
    family : str
        A key of ``MODEL_FAMILIES``.

    Returns
    -------
    dict of str to str
        Field name → its type/default line and description, e.g. ``{"n_mix": "int,
        default=5. Logistic mixture components (output="logistic" only)."}``; fields
        documented together (``height, width``) each get the shared text.
    """
    if family not in MODEL_FAMILIES:
        raise ConfigError(f"family must be one of {sorted(MODEL_FAMILIES)}; got {family!r}.")
    doc = MODEL_FAMILIES[family][1].__doc__ or ""
    lines = doc.split("Parameters\n", 1)[-1].splitlines()
    out: dict[str, str] = {}
    names: list[str] = []
    for line in lines[1:]:  # lines[0] is the ----- underline
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= 4 and " : " in line:  # "name[, name] : type, default=..."
            head, kind = line.strip().split(" : ", 1)
            names = [n.strip() for n in head.split(",")]
            for n in names:
                out[n] = kind.strip().rstrip(".") + "."
        elif names:
            for n in names:
                out[n] += " " + line.strip()
    return out
