"""The protocol every FisherLab model follows, and small helpers shared by the model families.

A model is an ``nn.Module`` with

- ``log_prob(x) -> (B,)``: per-example log-likelihood in nats (a VAE returns its ELBO, a lower
  bound; an energy-based model returns its unnormalised log-density),
- ``sample(n, *, generator=None) -> (n, C, H, W)``: float images in [0, 1],
- ``config``: a dataclass instance (JSON-serialisable with ``dataclasses.asdict``),
- ``family``: a class-level string naming the family in the registry.

Images are float tensors of shape (B, C, H, W) in [0, 1]. Discrete models quantise them to
``L`` levels with ``level = round(x · (L − 1))``, the same rule as the dataset layer.

Model families can customise training by overriding two hooks of :class:`GenerativeModel`:
``configure_optimizers(lr)`` (a dict of named optimizers; a GAN returns two) and
``training_step(batch, optimizers)`` (one update; returns a dict of floats with a ``"loss"``).
:func:`fisher_core.training.train` calls these hooks, so one loop serves every family.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = [
    "ConfigError",
    "GenerativeModel",
    "bits_per_dim",
    "check_images",
    "make_generator",
    "nll_training_step",
    "quantize",
]


class ConfigError(ValueError):
    """A model configuration value or key is invalid (the message says which and what to do)."""


def bits_per_dim(nll_nats: float | torch.Tensor, shape: tuple[int, ...]) -> float | torch.Tensor:
    """Convert a per-example negative log-likelihood in nats into bits per dimension.

    Parameters
    ----------
    nll_nats : float or Tensor
        Negative log-likelihood of one example (or a tensor of them), in nats.
    shape : tuple of int
        Shape of one example, ``(C, H, W)``; a leading batch dimension, if given as a 4-tuple,
        is ignored.

    Returns
    -------
    float or Tensor
        ``nll / (C·H·W · ln 2)``. For a discrete model with ``L`` levels this is measured
        against ``L``-level data and is not comparable with 256-level bits/dim.
    """
    dims = shape[-3:] if len(shape) >= 3 else shape
    n = math.prod(int(d) for d in dims)
    if n <= 0:
        raise ValueError(f"shape must have positive dimensions; got {tuple(shape)}.")
    return nll_nats / (n * math.log(2.0))


def quantize(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Map images in [0, 1] to integer levels ``round(x · (L − 1))`` (values are clamped).

    Parameters
    ----------
    x : Tensor of shape (B, C, H, W)
        Float images in [0, 1].
    levels : int
        Number of levels ``L`` (2..256).

    Returns
    -------
    Tensor of shape (B, C, H, W), int64
        Levels in ``0 .. L − 1``.
    """
    return torch.round(x.clamp(0.0, 1.0) * (levels - 1)).long()


def check_images(x: Any, *, name: str = "x", channels: int | None = None) -> torch.Tensor:
    """Validate a batch of images: a float tensor of shape (B, C, H, W).

    Parameters
    ----------
    x : Tensor
        Batch to check.
    name : str, default="x"
        Parameter name used in error messages.
    channels : int or None, default=None
        Expected number of channels, if known.

    Returns
    -------
    Tensor
        ``x`` itself (no copy).

    Raises
    ------
    TypeError
        If ``x`` is not a floating-point tensor.
    ValueError
        If it is not 4-D or has the wrong number of channels.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (B, C, H, W); got {type(x).__name__}. "
            "Convert with torch.as_tensor(images, dtype=torch.float32)."
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor in [0, 1]; got dtype {x.dtype}.")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W); got shape {tuple(x.shape)}.")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name} must have {channels} channel(s) as configured; got shape {tuple(x.shape)}."
        )
    return x


def make_generator(
    generator: torch.Generator | int | None, device: torch.device | str = "cpu"
) -> torch.Generator | None:
    """Turn ``None``, a seed or a generator into what ``torch.rand(..., generator=)`` takes."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(
            f"generator must be None, an int seed or a torch.Generator; got "
            f"{type(generator).__name__}."
        )
    g = torch.Generator(device=device)
    g.manual_seed(generator)
    return g


class GenerativeModel(nn.Module):
    """Base class of FisherLab models: the protocol plus the training hooks.

    Subclasses set ``family`` and ``config`` and implement :meth:`log_prob` and :meth:`sample`.
    """

    family: ClassVar[str] = ""
    #: True when ``log_prob`` is a normalised log-likelihood (or a bound on one), so that
    #: validation NLL and bits/dim mean something; an energy-based model sets this to False.
    normalized: ClassVar[bool] = True
    #: Learning rate and batch size :func:`fisher_core.training.train` uses when not given.
    training_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 64}
    #: True for a family fitted by EM in one go (the patch GMM), not by the gradient loop.
    fitted_by_em: ClassVar[bool] = False
    #: Config values for fields added after models of the family were first saved: what a
    #: saved config without the field meant (``load_model`` fills them in).
    saved_defaults: ClassVar[dict[str, Any]] = {}
    #: Module whose activations are the "network activations" baseline embedding.
    activation_layer: ClassVar[str | None] = None
    config: Any

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image this model samples."""
        c = self.config
        return (c.channels, c.height, c.width)

    @property
    def device(self) -> torch.device:
        """Device of the first parameter (CPU for a model without parameters)."""
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(
        self, n: int, *, generator: torch.Generator | int | None = None
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- training hooks used by fisher_core.training.train --------------------------------------

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Optimizers used by :meth:`training_step`; default one Adam over all parameters."""
        return {"main": torch.optim.Adam(self.parameters(), lr=lr)}

    def training_step(
        self, batch: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, float]:
        """One update: minimise the mean negative log-likelihood ``−log_prob(x).mean()``."""
        return nll_training_step(self, batch, optimizers)

    def validation_nll(self, batch: torch.Tensor) -> torch.Tensor:
        """Per-example validation NLL in nats, shape (B,); default ``−log_prob(x)``."""
        return -self.log_prob(batch)


def nll_training_step(
    model: nn.Module, batch: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]
) -> dict[str, float]:
    """Default step for any module with ``log_prob``: one Adam step on ``−log_prob(x).mean()``.

    A non-finite loss is returned without stepping, so the weights stay those from before the
    step and the training loop can stop cleanly with reason ``"nan"``.
    """
    (opt,) = optimizers.values()
    opt.zero_grad(set_to_none=True)
    loss = -model.log_prob(batch).mean()
    if not torch.isfinite(loss):
        return {"loss": float(loss.detach())}
    loss.backward()
    opt.step()
    return {"loss": float(loss.detach())}
