"""Decoders: from an embedding back to images (Yan, Ho & Abbeel 2019, section 4).

Two architectures (``DecoderConfig.architecture``), one public surface (``decode``, ``loss``,
training, save/load):

- ``"direct"`` (default): predicts every pixel at once, independently given z (below). Where
  several images fit z it draws their average, which blurs interpolations and edits;
- ``"pixelcnn"``: a generative decoder, a PixelCNN conditioned on z
  (:class:`fisher_core.explore.cpixelcnn.ConditionalPixelCNN`, categorical over ``levels``);
  ``decode`` draws each pixel in raster order, the most likely level at ``temperature`` 0
  (deterministic), so each decoded image commits to one plausible image.

A direct :class:`Decoder` is a small MLP from an embedding vector to a coarse feature map (about
4×4), then ``n_up − 1`` × [nearest 2× upsampling + 3×3 convolution + ReLU], then a 3×3
convolution to 4× the output channels rearranged by a pixel shuffle into the last 2×
upsampling (sub-pixel convolution: no convolution runs at full resolution, which makes a
training step about 4× cheaper on a CPU than a full-resolution last layer). The output holds
the parameters of a per-pixel distribution p(x | z):

- ``"bernoulli"``: one logit per pixel, binary cross-entropy against the pixel values (binary
  images, or intensities in [0, 1] used as soft targets); the decoded image is sigmoid(logit);
- ``"categorical"``: ``levels`` logits per pixel, cross-entropy against
  ``round(x · (levels − 1))``; the decoded image is the expected level / (levels − 1);
- ``"gaussian"``: one value per pixel, mean squared error of sigmoid(value) against x (a
  fixed-variance Gaussian); the decoded image is sigmoid(value).

Edits (interpolation, attribute vectors) happen in the *raw* embedding space, so the decoder
standardises its input itself with the training statistics kept as buffers (``in_mean``,
``in_std``): ``decode`` takes raw embedding vectors.

:func:`train_decoder` fits one with the shared loop (:func:`fisher_core.training.train`, with
early stopping on a held-out split) and reports held-out reconstruction errors.
:func:`save_decoder` / :func:`load_decoder` store it as safetensors + JSON (no pickle).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import ConfigError, quantize
from ..training import ProgressEvent, TrainResult, step_seconds, train
from ..training.batches import split_indices
from .cpixelcnn import ConditionalPixelCNN
from .quality import decoder_skill, decoder_warning, reconstruction_errors

__all__ = [
    "Decoder",
    "DecoderConfig",
    "DecoderResult",
    "decoder_skill",
    "decoder_warning",
    "default_likelihood",
    "reconstruction_errors",
    "train_decoder",
]

LIKELIHOODS = ("bernoulli", "categorical", "gaussian")
ARCHITECTURES = ("direct", "pixelcnn")
#: Levels of a pixelcnn decoder for continuous images (RMS quantisation error 0.019).
PIXELCNN_LEVELS = 16


def default_likelihood(levels: int | None) -> str:
    """The likelihood that fits images quantised to ``levels`` (None = continuous).

    ``2`` → ``"bernoulli"``, ``3..256`` → ``"categorical"``, ``None`` → ``"gaussian"``.
    """
    if levels is None:
        return "gaussian"
    if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= 256:
        raise ValueError(f"levels must be None or an integer in [2, 256]; got {levels!r}.")
    return "bernoulli" if levels == 2 else "categorical"


@dataclass
class DecoderConfig:
    """Hyper-parameters of :class:`Decoder`.

    Parameters
    ----------
    in_dim : int
        Embedding dimension k.
    channels, height, width : int, default=1, 32, 32
        Output image shape (C, H, W).
    likelihood : {"bernoulli", "categorical", "gaussian"}, default="gaussian"
        Per-pixel distribution (see the module docstring).
    levels : int, default=2
        Levels of the categorical likelihood (2..256; ignored by the others).
    hidden : int, default=256
        Width of the MLP's hidden layer.
    base_channels : int, default=64
        Feature maps at the coarsest resolution; halved at every upsampling, never below
        ``min_channels``.
    min_channels : int, default=32
    n_up : int or None, default=None
        Upsampling stages; ``None`` picks ``⌊log2(min(H, W) / 4)⌋`` (32×32 → 3, 8×8 → 1), so
        the coarsest map is about 4×4. The output is cropped to (H, W).
    architecture : {"direct", "pixelcnn"}, default="direct"
        Direct per-pixel decoder, or a PixelCNN conditioned on z (needs
        ``likelihood="categorical"``; ``hidden`` is then its conditioning MLP's width, and
        ``base_channels``, ``min_channels``, ``n_up`` are unused).
    pixel_channels : int, default=16
        Feature maps of the pixelcnn decoder's gated stacks and conditioning map.
    pixel_blocks : int, default=3
        Gated blocks of the pixelcnn decoder (each pixel sees ``pixel_blocks + 1`` rows up).
    temperature : float, default=0.0
        How the pixelcnn decoder decodes: 0 takes the most likely level of each pixel in turn
        (deterministic, sharp); T > 0 samples from softmax(logits / T), seeded.
    """

    in_dim: int
    channels: int = 1
    height: int = 32
    width: int = 32
    likelihood: str = "gaussian"
    levels: int = 2
    hidden: int = 256
    base_channels: int = 64
    min_channels: int = 32
    n_up: int | None = None
    architecture: str = "direct"
    pixel_channels: int = 16
    pixel_blocks: int = 3
    temperature: float = 0.0

    def __post_init__(self) -> None:
        for name, lo, hi in [
            ("in_dim", 1, 1 << 24), ("channels", 1, 4), ("height", 1, 1024), ("width", 1, 1024),
            ("levels", 2, 256), ("hidden", 1, 65536), ("base_channels", 1, 4096),
            ("min_channels", 1, 4096), ("pixel_channels", 1, 1024), ("pixel_blocks", 1, 32),
        ]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(
                    f"DecoderConfig.{name} must be an integer in [{lo}, {hi}]; got {value!r}."
                )
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(
                f"DecoderConfig.likelihood must be one of {LIKELIHOODS}; got {self.likelihood!r}."
            )
        if self.n_up is None:
            side = min(self.height, self.width)
            self.n_up = max(0, int(math.floor(math.log2(side / 4)))) if side >= 4 else 0
        n = self.n_up
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 8:
            raise ConfigError(f"DecoderConfig.n_up must be an integer in [0, 8]; got {n!r}.")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"DecoderConfig.architecture must be one of {ARCHITECTURES}; "
                              f"got {self.architecture!r}.")
        if self.architecture == "pixelcnn" and self.likelihood != "categorical":
            raise ConfigError("DecoderConfig.likelihood must be 'categorical' for the pixelcnn "
                              f"architecture (levels from 2 to 256); got {self.likelihood!r}.")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t <= 10:
            raise ConfigError(f"DecoderConfig.temperature must be a number in [0, 10]; got "
                              f"{t!r}.")


class Decoder(nn.Module):
    """Embedding (raw, standardised inside with the ``in_mean`` / ``in_std`` buffers) → image.

    Parameters
    ----------
    config : DecoderConfig
    """

    training_defaults = {"lr": 2e-3, "batch_size": 64}

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        {"direct": self._build_direct, "pixelcnn": self._build_pixelcnn}[config.architecture]()
        self.register_buffer("in_mean", torch.zeros(config.in_dim))
        self.register_buffer("in_std", torch.ones(config.in_dim))

    def _build_direct(self) -> None:
        c = self.config
        scale = 2**c.n_up
        self.h0, self.w0 = -(-c.height // scale), -(-c.width // scale)
        widths = [max(c.min_channels, c.base_channels >> i) for i in range(max(c.n_up, 1))]
        self.mlp = nn.Sequential(
            nn.Linear(c.in_dim, c.hidden), nn.ReLU(),
            nn.Linear(c.hidden, widths[0] * self.h0 * self.w0), nn.ReLU(),
        )
        self.ups = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, padding=1) for i in range(c.n_up - 1)
        )
        self.shuffle = 2 if c.n_up > 0 else 1
        per_pixel = c.levels if c.likelihood == "categorical" else 1
        self.out = nn.Conv2d(widths[-1], c.channels * per_pixel * self.shuffle**2, 3, padding=1)

    def _build_pixelcnn(self) -> None:
        c = self.config
        self.cpixelcnn = ConditionalPixelCNN(
            cond_dim=c.in_dim, channels=c.channels, height=c.height, width=c.width,
            levels=c.levels, hidden=c.pixel_channels, n_blocks=c.pixel_blocks,
            cond_hidden=c.hidden)

    def set_standardization(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Store the embedding statistics; dimensions with ``std == 0`` keep a scale of 1."""
        std = np.where(np.asarray(std) > 0, std, 1.0)
        self.in_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.in_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Raw distribution parameters: (B, C, H, W) logits/values, or (B, C, L, H, W) logits
        for the categorical likelihood. The pixelcnn architecture needs the images x
        (B, C, H, W) in [0, 1] too: its logits at a pixel are p(· | earlier pixels of x, z)."""
        c = self.config
        if c.architecture == "pixelcnn":
            if x is None:
                raise ValueError("a pixelcnn decoder's distribution depends on the image: "
                                 "call decoder(z, x), or decode(z) to draw images.")
            return self.cpixelcnn(self._standardize(z), x)
        h = self.mlp(self._standardize(z))
        h = h.view(z.shape[0], -1, self.h0, self.w0)  # (B, C0, h0, w0)
        for conv in self.ups:
            h = F.relu(conv(F.interpolate(h, scale_factor=2, mode="nearest")))
        out = F.pixel_shuffle(self.out(h), self.shuffle)  # (B, C·per_pixel, 2h, 2w)
        out = out[:, :, : c.height, : c.width]  # (B, C·per_pixel, H, W)
        if c.likelihood == "categorical":
            return out.reshape(z.shape[0], c.channels, c.levels, c.height, c.width)
        return out

    def _standardize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.in_mean) / self.in_std

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """Expected image in [0, 1], shape (B, C, H, W) (differentiable; direct decoders)."""
        if self.config.architecture != "direct":
            raise TypeError("mean() is the direct decoder's expected image; a pixelcnn "
                            "decoder draws its images: use decode(z).")
        out = self(z)
        if self.config.likelihood != "categorical":
            return torch.sigmoid(out)
        grid = torch.linspace(0.0, 1.0, self.config.levels, device=out.device)
        return (out.softmax(dim=2) * grid.view(1, 1, -1, 1, 1)).sum(dim=2)  # (B, C, H, W)

    def loss(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-example loss, averaged over pixels, shape (B,): BCE, CE (nats) or squared error.
        """
        if self.config.architecture == "pixelcnn":
            return self.cpixelcnn.loss(self._standardize(z), x)
        out = self(z)
        lik = self.config.likelihood
        if lik == "bernoulli":
            per_pixel = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        elif lik == "categorical":
            target = quantize(x, self.config.levels)  # (B, C, H, W)
            per_pixel = F.cross_entropy(out.transpose(1, 2), target, reduction="none")
        else:
            per_pixel = (torch.sigmoid(out) - x).pow(2)
        return per_pixel.flatten(1).mean(dim=1)

    @torch.no_grad()
    def decode(self, z: np.ndarray | torch.Tensor, *, batch_size: int = 512,
               temperature: float | None = None, seed: int = 0) -> np.ndarray:
        """Decode raw embedding vectors into images.

        Parameters
        ----------
        z : array-like of shape (M, k) or (k,)
        batch_size : int, default=512
        temperature : float or None, default=None
            Pixelcnn decoders only: overrides ``config.temperature`` (0 = most likely level).
        seed : int, default=0
            Pixelcnn decoders at T > 0: seeds the draw (same z and seed, same images).

        Returns
        -------
        ndarray of shape (M, C, H, W) (or (C, H, W) for one vector), float32 in [0, 1]
        """
        zt = torch.as_tensor(np.asarray(z, dtype=np.float32))
        single = zt.ndim == 1
        zt = zt.reshape(1, -1) if single else zt
        if zt.ndim != 2 or zt.shape[1] != self.config.in_dim:
            raise ValueError(
                f"z must be (M, {self.config.in_dim}) embedding vectors; got "
                f"{tuple(np.shape(z))}. Use the embedding the decoder was trained on."
            )
        was_training = self.training
        self.eval()
        device = self.in_mean.device
        t = self.config.temperature if temperature is None else float(temperature)
        gen = torch.Generator(device=device).manual_seed(seed)
        parts = [self._draw(zt[i : i + batch_size].to(device), t, gen).cpu()
                 for i in range(0, zt.shape[0], batch_size)]
        self.train(was_training)
        out = torch.cat(parts).numpy() if parts else np.zeros((0, *self.image_shape), "float32")
        return out[0] if single else out

    def _draw(self, z: torch.Tensor, temperature: float, generator: torch.Generator
              ) -> torch.Tensor:
        """Images (B, C, H, W) of raw vectors: the expected image, or a raster-order draw."""
        if self.config.architecture == "direct":
            return self.mean(z)
        return self.cpixelcnn.sample(self._standardize(z), temperature=temperature,
                                     generator=generator)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of a decoded image."""
        return (self.config.channels, self.config.height, self.config.width)

    # ---- hooks of fisher_core.training.train (batches are (z, x) tuples) ------------------------

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor],
                      optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """One Adam step on the mean loss of a (z, x) batch."""
        (opt,) = optimizers.values()
        opt.zero_grad(set_to_none=True)
        z, x = batch
        loss = (self.loss(z, x) if self.config.architecture == "direct"
                else self.cpixelcnn.objective(self._standardize(z), x)).mean()
        if torch.isfinite(loss):
            loss.backward()
            opt.step()
        return {"loss": float(loss.detach())}

    def validation_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Per-example loss (B,) of a (z, x) batch."""
        return self.loss(*batch)


@dataclass
class DecoderResult:
    """Outcome of :func:`train_decoder`.

    Attributes
    ----------
    decoder : Decoder
        Trained, in eval mode, best validation epoch restored.
    train_result : TrainResult
        History of the shared training loop.
    metrics : dict of str to float
        Held-out ``val_mse`` (per pixel, decoded mean vs image), ``val_bce`` (Bernoulli) or
        ``val_ce`` (categorical, nats per pixel), ``n_train``, ``n_val``, ``seconds``.
    val_index : ndarray of int
        Rows of the inputs held out for validation.
    """

    decoder: Decoder
    train_result: TrainResult
    metrics: dict[str, float] = field(default_factory=dict)
    val_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _check_pairs(z: Any, images: Any) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(getattr(z, "vectors", z), dtype=np.float32)
    x = np.asarray(images, dtype=np.float32)
    if z.ndim != 2 or x.ndim != 4 or z.shape[0] != x.shape[0] or z.shape[0] < 2:
        raise ValueError(
            f"embedding_vectors must be (N, k) and images (N, C, H, W) with the same N ≥ 2; "
            f"got {z.shape} and {x.shape}."
        )
    if not np.isfinite(z).all():
        raise ValueError("embedding_vectors contain NaN or infinite values.")
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError("images must hold finite values in [0, 1]; scale them first.")
    return z, x


def train_decoder(
    embedding_vectors: np.ndarray,
    images: np.ndarray,
    *,
    levels: int | None = None,
    likelihood: str | None = None,
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    val_fraction: float = 0.1,
    hidden: int = 256,
    base_channels: int = 64,
    architecture: str = "direct",
    pixel_channels: int = 16,
    pixel_blocks: int = 3,
    temperature: float = 0.0,
    early_stopping_patience: int | None = 5,
    max_seconds: float | str | None = 60.0,
    callback: Callable[[ProgressEvent], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    device: str | torch.device = "cpu",
) -> DecoderResult:
    """Train a :class:`Decoder` from embedding vectors to the images they embed.

    Parameters
    ----------
    embedding_vectors : ndarray of shape (N, k) or Embedding
        Raw embedding rows; standardised inside the decoder with training-split statistics.
    images : ndarray of shape (N, C, H, W)
        The images, float in [0, 1], row-aligned with the embedding.
    levels : int or None, default=None
        Quantisation of the images (``ImageDataset.levels``); picks the likelihood with
        :func:`default_likelihood` unless ``likelihood`` is given.
    likelihood : {"bernoulli", "categorical", "gaussian"} or None, default=None
        Overrides the choice from ``levels`` (``"categorical"`` uses ``levels``, default 256).
        The pixelcnn architecture is always categorical, over ``levels`` levels (default
        :data:`PIXELCNN_LEVELS` for continuous images).
    epochs, batch_size, lr, seed : see :func:`fisher_core.training.train`
        Defaults 40, 64, 2e-3, 0; ``seed`` also fixes the initial weights and the split.
    val_fraction : float, default=0.1
        Share of rows held out for early stopping and the reported errors.
    hidden, base_channels : int, default=256, 64
        Decoder width (see :class:`DecoderConfig`).
    architecture : {"direct", "pixelcnn"}, default="direct"
    pixel_channels, pixel_blocks : int, default=16, 3
    temperature : float, default=0.0
        The pixelcnn decoder's size and decoding temperature (see :class:`DecoderConfig`).
    early_stopping_patience : int or None, default=5
    max_seconds : float, None or "auto", default=60.0
        Training time budget (the best epoch so far is kept). ``"auto"`` scales it with the
        data: time for :data:`AUTO_EPOCHS` epochs, measured on this machine, between 60 s
        and 15 min.
    callback : callable(ProgressEvent) or None, default=None
        Progress of the shared training loop (steps, epochs with the validation loss).
    cancel : threading.Event, callable or None, default=None
    device : str or torch.device, default="cpu"
        Where to train (``"cuda"`` on a GPU); the decoder is returned on the CPU.

    Returns
    -------
    DecoderResult
    """
    z, x = _check_pairs(embedding_vectors, images)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}; got {architecture!r}.")
    if architecture == "pixelcnn":
        likelihood, levels = likelihood or "categorical", levels or PIXELCNN_LEVELS
    likelihood = likelihood or default_likelihood(levels)
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}.")
    n_levels = levels if levels is not None else (256 if likelihood == "categorical" else 2)
    config = DecoderConfig(in_dim=z.shape[1], channels=x.shape[1], height=x.shape[2],
                           width=x.shape[3], likelihood=likelihood, levels=n_levels,
                           hidden=hidden, base_channels=base_channels,
                           architecture=architecture, pixel_channels=pixel_channels,
                           pixel_blocks=pixel_blocks, temperature=temperature)
    tr, va = split_indices(z.shape[0], val_fraction, seed)
    if max_seconds == "auto":
        max_seconds = _auto_budget(config, z[tr], x[tr], batch_size, seed)
    elif isinstance(max_seconds, str):
        raise ValueError(f"max_seconds must be a number, None or 'auto'; got {max_seconds!r}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = Decoder(config)
    decoder.set_standardization(z[tr].mean(0), z[tr].std(0))
    result = train(decoder, (z[tr], x[tr]), val_images=(z[va], x[va]) if va.size else None,
                   epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, callback=callback,
                   cancel=cancel, early_stopping_patience=early_stopping_patience,
                   max_seconds=max_seconds, device=device)
    decoder.cpu()  # trained where asked; handed back (and saved) on the CPU
    metrics = {"n_train": int(tr.size), "n_val": int(va.size), "seconds": result.elapsed,
               "time_capped": float(result.stopped_reason == "time_limit")}
    if va.size:
        metrics |= reconstruction_errors(decoder, z[va], x[va])
        # what a decoder that ignores its input achieves: the mean training image
        metrics["val_mse_mean_image"] = float(((x[va] - x[tr].mean(0)) ** 2).mean())
    return DecoderResult(decoder, result, metrics, va)


AUTO_EPOCHS = 12


def _auto_budget(config: DecoderConfig, z: np.ndarray, x: np.ndarray, batch_size: int,
                 seed: int) -> float:
    """Seconds for AUTO_EPOCHS epochs at the measured speed, clipped to [60 s, 15 min]."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = Decoder(config)
    probe.set_standardization(z.mean(0), z.std(0))
    per_step = step_seconds(probe, (z, x), batch_size=batch_size, steps=2, seed=seed)
    steps = -(-z.shape[0] // batch_size)
    return float(np.clip(1.2 * AUTO_EPOCHS * steps * per_step, 60.0, 900.0))

