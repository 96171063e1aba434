"""Feature extractors for FID, and the attribute classifier that judges edits.

FID needs an image feature extractor; the usual one (Inception-v3 trained on ImageNet) cannot
be downloaded here, and on 32×32 grey cartoons it would be a poor judge anyway. The
:class:`DomainFeatureExtractor` is a small CNN trained on the dataset itself:

- multi-task when the dataset has labels and/or attributes: cross-entropy on the class label
  plus binary cross-entropy on the attributes (mean over attributes), summed;
- otherwise an autoencoder: the features are its bottleneck, decoded by a
  :class:`fisher_core.explore.decode.Decoder` with a squared-error loss.

Its features (the penultimate layer: a linear bottleneck before the heads) feed
:func:`fisher_core.metrics.frechet_distance`; its ``name`` (``"domain-cnn(faces)"``) labels
every FID computed with it, because FIDs from different extractors are not comparable. The
attribute head doubles as the classifier of :func:`fisher_core.metrics.attribute_edit_scores`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import ImageDataset
from ..explore.decode import Decoder, DecoderConfig
from ..models.base import ConfigError
from ..models.netio import load_net, save_net
from ..training.batches import split_indices
from ..training.events import ProgressEvent, TrainResult
from ..training.loop import train

__all__ = [
    "DomainFeatureExtractor",
    "FeatureExtractorConfig",
    "FeatureExtractorResult",
    "InceptionExtractor",
    "InceptionUnavailableError",
    "load_feature_extractor",
    "save_feature_extractor",
    "train_feature_extractor",
]


@dataclass
class FeatureExtractorConfig:
    """Hyper-parameters of :class:`DomainFeatureExtractor`.

    Parameters
    ----------
    channels, height, width : int, default=1, 32, 32
        Input image shape.
    n_classes : int, default=0
        Classes of the label head (0: none).
    n_attributes : int, default=0
        Binary attributes of the attribute head (0: none). With no head at all the network
        is trained as an autoencoder.
    feature_dim : int, default=64
        Dimension f of the features (keep it well below the number of images an FID uses).
    hidden : int, default=32
        Feature maps of the first convolution (doubled in the stride-2 ones).
    dataset : str, default="dataset"
        Name of the training data, used in :attr:`DomainFeatureExtractor.name`.
    """

    channels: int = 1
    height: int = 32
    width: int = 32
    n_classes: int = 0
    n_attributes: int = 0
    feature_dim: int = 64
    hidden: int = 32
    dataset: str = "dataset"

    def __post_init__(self) -> None:
        for name, lo, hi in [
            ("channels", 1, 4), ("height", 1, 1024), ("width", 1, 1024),
            ("n_classes", 0, 100_000), ("n_attributes", 0, 100_000),
            ("feature_dim", 1, 4096), ("hidden", 1, 1024),
        ]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(
                    f"FeatureExtractorConfig.{name} must be an integer in [{lo}, {hi}]; got "
                    f"{value!r}."
                )
        if self.n_classes == 1:
            raise ConfigError("FeatureExtractorConfig.n_classes must be 0 or ≥ 2; got 1.")

    @property
    def autoencoder(self) -> bool:
        """True when there is no supervised head."""
        return self.n_classes == 0 and self.n_attributes == 0


class DomainFeatureExtractor(nn.Module):
    """A small CNN whose penultimate layer gives features for FID on one image domain.

    Body, with ``n_down = ⌊log2(min(H, W) / 4)⌋`` (32×32 → 3): a 2×2 space-to-depth
    rearrangement (when ``n_down ≥ 1``), a 3×3 convolution, ``n_down − 1`` stride-2 3×3
    convolutions (32×32 → 4×4), average pooling to 4×4 and a linear bottleneck to
    ``feature_dim`` (no activation: every feature dimension varies, whereas after a ReLU many
    are constant zero and the FID covariance is needlessly singular).
    Heads on the features: class logits, attribute logits, or (autoencoder) a decoder.

    Parameters
    ----------
    config : FeatureExtractorConfig
    """

    training_defaults = {"lr": 2e-3, "batch_size": 64}

    def __init__(self, config: FeatureExtractorConfig) -> None:
        super().__init__()
        self.config = c = config
        side = min(c.height, c.width)
        n_down = max(0, int(math.floor(math.log2(side / 4)))) if side >= 4 else 0
        # Space-to-depth first (B, C, H, W) -> (B, 4C, H/2, W/2): no convolution runs at full
        # resolution, about 3x cheaper per training step on a CPU than a full-size first layer.
        s2d = n_down >= 1
        layers: list[nn.Module] = [nn.PixelUnshuffle(2)] if s2d else []
        layers += [nn.Conv2d(c.channels * (4 if s2d else 1), c.hidden, 3, padding=1), nn.ReLU()]
        width = c.hidden
        for _ in range(n_down - 1):
            layers += [nn.Conv2d(width, 2 * c.hidden, 3, stride=2, padding=1), nn.ReLU()]
            width = 2 * c.hidden
        layers += [nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                   nn.Linear(width * 16, c.feature_dim)]
        self.body = nn.Sequential(*layers)
        self.label_head = nn.Linear(c.feature_dim, c.n_classes) if c.n_classes else None
        self.attr_head = nn.Linear(c.feature_dim, c.n_attributes) if c.n_attributes else None
        self.recon_head = Decoder(DecoderConfig(
            in_dim=c.feature_dim, channels=c.channels, height=c.height, width=c.width,
            hidden=128, base_channels=32, min_channels=16,
        )) if c.autoencoder else None

    @property
    def name(self) -> str:
        """Label of the feature space, e.g. ``"domain-cnn(faces)"``; quote it with every FID."""
        kind = "domain-ae" if self.config.autoencoder else "domain-cnn"
        return f"{kind}({self.config.dataset})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, feature_dim) of images (B, C, H, W) in [0, 1]."""
        return self.body(x)

    def _batched(self, images: Any, fn: Callable[[torch.Tensor], torch.Tensor],
                 batch_size: int) -> np.ndarray:
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.channels, c.height, c.width):
            raise ValueError(
                f"images must have shape (N, {c.channels}, {c.height}, {c.width}) like the "
                f"extractor's training data; got {tuple(x.shape)}."
            )
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        with torch.no_grad():
            parts = [fn(x[i : i + batch_size].to(device)).double().cpu()
                     for i in range(0, x.shape[0], batch_size)]
        self.train(was_training)
        return torch.cat(parts).numpy() if parts else np.zeros((0, 0))

    def features(self, images: np.ndarray | torch.Tensor, *, batch_size: int = 256
                 ) -> np.ndarray:
        """Penultimate-layer features, float64, shape (N, feature_dim); deterministic."""
        return self._batched(images, self, batch_size)

    def predict_attributes(self, images: np.ndarray | torch.Tensor, *, batch_size: int = 256
                           ) -> np.ndarray:
        """Probability of each attribute, shape (N, n_attributes), float64."""
        if self.attr_head is None:
            raise ValueError(
                f"{self.name} has no attribute head: train it on a dataset with attributes."
            )
        return self._batched(images, lambda x: torch.sigmoid(self.attr_head(self(x))),
                             batch_size)

    def predict_labels(self, images: np.ndarray | torch.Tensor, *, batch_size: int = 256
                       ) -> np.ndarray:
        """Most probable class of each image, shape (N,), int64."""
        if self.label_head is None:
            raise ValueError(f"{self.name} has no label head: train it on a labelled dataset.")
        return self._batched(images, lambda x: self.label_head(self(x)).argmax(1),
                             batch_size).astype(np.int64)

    # ---- hooks of fisher_core.training.train (batches are (x, y, a) tuples) -------------------

    def loss(self, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Per-example training loss (B,): CE(label) + mean BCE(attributes), or the
        autoencoder's per-pixel squared error."""
        if self.recon_head is not None:
            return self.recon_head.loss(self(x), x)
        h = self(x)
        total = torch.zeros(x.shape[0], device=x.device)
        if self.label_head is not None:
            total = total + F.cross_entropy(self.label_head(h), y, reduction="none")
        if self.attr_head is not None:
            total = total + F.binary_cross_entropy_with_logits(
                self.attr_head(h), a, reduction="none").mean(dim=1)
        return total

    def training_step(self, batch: tuple[torch.Tensor, ...],
                      optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """One Adam step on the mean loss of an (x, y, a) batch."""
        (opt,) = optimizers.values()
        opt.zero_grad(set_to_none=True)
        loss = self.loss(*batch).mean()
        if torch.isfinite(loss):
            loss.backward()
            opt.step()
        return {"loss": float(loss.detach())}

    def validation_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Per-example loss (B,) of an (x, y, a) batch."""
        return self.loss(*batch)


@dataclass
class FeatureExtractorResult:
    """Outcome of :func:`train_feature_extractor`.

    Attributes
    ----------
    extractor : DomainFeatureExtractor
        Trained, in eval mode (best validation epoch).
    train_result : TrainResult
    metrics : dict of str to float
        Held-out ``label_accuracy``, ``attribute_accuracy`` (mean over attributes) and
        ``attribute_accuracy/<name>``, or ``val_mse`` for an autoencoder; ``n_train``,
        ``n_val``, ``seconds``.
    val_index : ndarray of int
        Images held out for validation.
    """

    extractor: DomainFeatureExtractor
    train_result: TrainResult
    metrics: dict[str, float] = field(default_factory=dict)
    val_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def train_feature_extractor(
    ds: ImageDataset,
    *,
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    val_fraction: float = 0.1,
    feature_dim: int = 64,
    hidden: int = 32,
    early_stopping_patience: int | None = 5,
    max_seconds: float | None = 60.0,
    callback: Callable[[ProgressEvent], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    device: str | torch.device = "cpu",
) -> FeatureExtractorResult:
    """Train a :class:`DomainFeatureExtractor` on a dataset with the shared training loop.

    Parameters
    ----------
    ds : ImageDataset
        Its labels and attributes choose the heads; with neither, an autoencoder is trained.
    epochs, batch_size, lr, seed : see :func:`fisher_core.training.train`
        Defaults 40, 64, 2e-3, 0; ``seed`` also fixes the initial weights and the split.
    val_fraction : float, default=0.1
        Share of images held out for early stopping and the reported accuracies.
    feature_dim, hidden : int, default=64, 32
        See :class:`FeatureExtractorConfig`.
    early_stopping_patience : int or None, default=5
    max_seconds : float or None, default=60.0
    callback : callable(ProgressEvent) or None, default=None
    cancel : threading.Event, callable or None, default=None
    device : str or torch.device, default="cpu"
        Where to train; the extractor is returned on the CPU.

    Returns
    -------
    FeatureExtractorResult
    """
    if not isinstance(ds, ImageDataset):
        raise TypeError(f"ds must be an ImageDataset; got {type(ds).__name__}.")
    x = ds.images
    n = x.shape[0]
    y = ds.labels if ds.labels is not None else np.zeros(n, np.int64)
    a = (ds.attributes.astype(np.float32) if ds.attributes is not None
         else np.zeros((n, 0), np.float32))
    n_classes = len(ds.class_names) if ds.labels is not None else 0
    config = FeatureExtractorConfig(
        channels=x.shape[1], height=x.shape[2], width=x.shape[3],
        n_classes=n_classes if n_classes >= 2 else 0, n_attributes=a.shape[1],
        feature_dim=feature_dim, hidden=hidden, dataset=ds.name,
    )
    tr, va = split_indices(n, val_fraction, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainFeatureExtractor(config)
    result = train(model, (x[tr], y[tr], a[tr]),
                   val_images=(x[va], y[va], a[va]) if va.size else None, epochs=epochs,
                   batch_size=batch_size, lr=lr, seed=seed, callback=callback, cancel=cancel,
                   early_stopping_patience=early_stopping_patience, max_seconds=max_seconds,
                   device=device)
    model.cpu()
    metrics: dict[str, float] = {"n_train": int(tr.size), "n_val": int(va.size),
                                 "seconds": result.elapsed}
    if va.size:
        metrics |= _held_out_metrics(model, x[va], y[va], a[va], ds.attribute_names)
    return FeatureExtractorResult(model, result, metrics, va)


def _held_out_metrics(model: DomainFeatureExtractor, x: np.ndarray, y: np.ndarray,
                      a: np.ndarray, names: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    if model.label_head is not None:
        out["label_accuracy"] = float((model.predict_labels(x) == y).mean())
    if model.attr_head is not None:
        correct = (model.predict_attributes(x) >= 0.5) == (a >= 0.5)  # (N, A)
        out["attribute_accuracy"] = float(correct.mean())
        out |= {f"attribute_accuracy/{nm}": float(c) for nm, c in zip(names, correct.mean(0),
                                                                      strict=True)}
    if model.recon_head is not None:
        recon = model._batched(x, lambda b: model.recon_head.mean(model(b)), 256)
        out["val_mse"] = float(((recon - x) ** 2).mean())
    return out


def save_feature_extractor(extractor: DomainFeatureExtractor, directory: str | Path, *,
                           metrics: dict[str, Any] | None = None) -> Path:
    """Save as ``weights.safetensors`` + ``module.json`` (atomic writes, no pickle)."""
    if not isinstance(extractor, DomainFeatureExtractor):
        raise TypeError(
            f"extractor must be a DomainFeatureExtractor; got {type(extractor).__name__}."
        )
    return save_net(extractor, directory, kind="domain-feature-extractor", metrics=metrics)


def load_feature_extractor(directory: str | Path) -> DomainFeatureExtractor:
    """Load what :func:`save_feature_extractor` wrote; returned in eval mode."""
    return load_net(directory, kind="domain-feature-extractor",
                    build=lambda c: DomainFeatureExtractor(FeatureExtractorConfig(**c)))


class InceptionUnavailableError(ValueError):
    """The Inception-v3 FID network cannot be used in this installation."""


class InceptionExtractor:
    """Placeholder for pytorch-fid's Inception-v3 (pool3, 2048-d) feature extractor.

    FisherLab never downloads weights, and it does not bundle the Inception-v3 architecture
    (pytorch-fid builds it from torchvision, which FisherLab does not install), so
    :meth:`from_local` always raises :class:`InceptionUnavailableError` with what to do
    instead. Use :class:`DomainFeatureExtractor` and label every FID with its ``name``.
    """

    @classmethod
    def from_local(cls, path: str | Path) -> InceptionExtractor:
        """Would load ``pt_inception-2015-12-05-*.pth`` from ``path``; see the class note.

        Raises
        ------
        InceptionUnavailableError
            Always: with a missing file, or because the architecture is not bundled.
        """
        p = Path(path)
        if not p.is_file():
            raise InceptionUnavailableError(
                f"no Inception weights file at {str(p)!r}. FisherLab never downloads weights; "
                "use DomainFeatureExtractor (train_feature_extractor) for FID instead."
            )
        raise InceptionUnavailableError(
            f"found {p.name}, but FisherLab does not bundle the Inception-v3 architecture "
            "(pytorch-fid builds it with torchvision, which is not installed), and reading a "
            ".pth file would need pickle. Use DomainFeatureExtractor "
            "(train_feature_extractor) and report FIDs with its name."
        )
