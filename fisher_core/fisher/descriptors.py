"""Dense local descriptors of images: patches, optional PCA, optional (x, y) positions.

Every image becomes a set of local descriptors, the input of a classical Fisher vector. A
descriptor is one p×p patch (all channels, order c, i, j — ``torch.nn.functional.unfold``'s),
taken on a grid with the given stride (row-major over patch positions), optionally projected on
the top ``pca`` principal directions of the training patches, and optionally followed by the
patch centre (x, y) normalised to [0, 1] — the "spatial Fisher vector" augmentation of Krapac,
Verbeek & Jurie (2011), which lets a GMM over appearance + position encode layout.

Default patch size and stride follow the image's smaller side (see :func:`default_patch`):
8×8 digits → 3×3 patches every pixel (36 patches); 32×32 → 6×6 every 2 pixels (196 patches).
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

__all__ = ["DENSE_PCA", "PatchDescriptor", "default_patch", "default_patch_pca",
           "image_descriptors", "patch_positions"]

DENSE_PCA = 24

_IMAGES_PER_CHUNK = 512


def default_patch(height: int, width: int) -> tuple[int, int]:
    """Default (patch, stride) for an image of this size.

    Smaller side ≤ 12 (8×8 digits): (3, 1); ≤ 20: (4, 2); ≤ 48 (32×32): (6, 2); ≤ 96: (8, 4);
    larger: (16, 8). Patches stay small next to the object so that a set has tens to a few
    hundred descriptors.
    """
    side = min(height, width)
    for limit, choice in ((12, (3, 1)), (20, (4, 2)), (48, (6, 2)), (96, (8, 4))):
        if side <= limit:
            return choice
    return 16, 8


def default_patch_pca(channels: int, height: int, width: int, patch: int | None = None
                      ) -> int | None:
    """Default PCA of dense patches: :data:`DENSE_PCA` (24) components when a raw patch has
    more values than that (images over 16 px: 6×6 patches), else none (8×8 digits: 3×3).

    A diagonal GMM needs decorrelated descriptors (Sánchez et al. 2013), and raw neighbouring
    pixels are anything but: on the 32×32 faces, PCA to 24 lifts the Fisher vector's class
    probe from 53 % to 94 % (``bench/eval_baselines.py``).
    """
    side = patch or default_patch(height, width)[0]
    return DENSE_PCA if channels * side ** 2 > DENSE_PCA else None


def _check_images(images) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4 or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            "images must be a float array of shape (N, C, H, W) with values in [0, 1], got "
            f"dtype {arr.dtype} and shape {arr.shape}."
        )
    if arr.shape[0] == 0:
        raise ValueError("images is empty; pass at least one image.")
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise ValueError(
            "images must hold finite values in [0, 1]; rescale them (e.g. uint8 / 255) first."
        )
    return arr


def patch_positions(height: int, width: int, patch: int, stride: int) -> np.ndarray:
    """(L, 2) patch-centre (x, y) in [0, 1], row-major over patch positions like unfold."""
    ys = (np.arange(0, height - patch + 1, stride) + patch / 2) / height
    xs = (np.arange(0, width - patch + 1, stride) + patch / 2) / width
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")  # (Ly, Lx)
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)


def _patches(images: np.ndarray, patch: int, stride: int) -> torch.Tensor:
    """All patches of a (N, C, H, W) block as (N, L, C·p·p)."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    cols = F.unfold(x, kernel_size=patch, stride=stride)  # (N, C·p·p, L)
    return cols.transpose(1, 2)  # (N, L, C·p·p)


class PatchDescriptor(TransformerMixin, BaseEstimator):
    """Dense patch descriptors with optional PCA and (x, y) positions.

    Parameters
    ----------
    patch : int or None, default=None
        Patch side p; ``None`` picks :func:`default_patch` from the training image size.
    stride : int or None, default=None
        Grid step; ``None`` picks it with the patch.
    pca : int or None, default=None
        Project the C·p·p raw patch on its top ``pca`` principal directions, learned on a
        random subsample of at most ``max_fit_patches`` training patches.
    spatial : bool, default=True
        Append the normalised patch centre (x, y) ∈ [0, 1] as two last columns.
    random_state : int, RandomState or None, default=0
        Seeds the PCA subsample.
    max_fit_patches : int, default=100_000
        Cap on patches used to fit the PCA (all patches of ⌈cap / L⌉ random images).

    Attributes
    ----------
    patch_, stride_ : int
    n_channels_ : int
    mean_ : ndarray of shape (C·p·p,)
        Only with ``pca``.
    components_ : ndarray of shape (pca, C·p·p)
        Only with ``pca``: principal directions, largest variance first, sign fixed so that
        each row's largest-magnitude entry is positive.
    """

    def __init__(
        self,
        patch: int | None = None,
        stride: int | None = None,
        pca: int | None = None,
        spatial: bool = True,
        random_state=0,
        max_fit_patches: int = 100_000,
    ) -> None:
        self.patch = patch
        self.stride = stride
        self.pca = pca
        self.spatial = spatial
        self.random_state = random_state
        self.max_fit_patches = max_fit_patches

    def fit(self, images, y=None) -> PatchDescriptor:
        """Choose patch/stride and learn the PCA (if any) on training images (N, C, H, W)."""
        images = _check_images(images)
        _, channels, height, width = images.shape
        default = default_patch(height, width)
        self.patch_ = default[0] if self.patch is None else self.patch
        self.stride_ = default[1] if self.stride is None else self.stride
        for name, value, high in (("patch", self.patch_, min(height, width)),
                                  ("stride", self.stride_, None)):
            if not isinstance(value, numbers.Integral) or value < 1 or (high and value > high):
                raise ValueError(
                    f"{name} must be an integer in [1, {high or 'inf'}] for images of shape "
                    f"{images.shape[1:]}, got {value!r}."
                )
        self.n_channels_ = channels
        if self.pca is not None:
            self._fit_pca(images)
        return self

    def _fit_pca(self, images: np.ndarray) -> None:
        raw_dim = self.n_channels_ * self.patch_ ** 2
        if not isinstance(self.pca, numbers.Integral) or not 1 <= self.pca <= raw_dim:
            raise ValueError(
                f"pca must be None or an integer in [1, C·p·p = {raw_dim}], got {self.pca!r}."
            )
        rng = check_random_state(self.random_state)
        n_images = images.shape[0]
        n_per = len(patch_positions(*images.shape[2:], self.patch_, self.stride_))
        # all patches of a random subset of images: bounded memory, no second sampling stage
        n_pick = min(n_images, max(1, -(-self.max_fit_patches // n_per)))
        chosen = np.sort(rng.choice(n_images, n_pick, replace=False))
        raw = _patches(images[chosen], self.patch_, self.stride_)  # (n, L, C·p·p)
        sample = raw.reshape(-1, raw_dim).double()  # (n·L, C·p·p)
        if sample.shape[0] < self.pca:
            raise ValueError(
                f"pca={self.pca} needs at least that many patches; got {sample.shape[0]}. "
                "Lower pca or pass more images."
            )
        mean = sample.mean(0)
        centred = sample - mean
        evals, evecs = torch.linalg.eigh(centred.T @ centred / sample.shape[0])  # ascending
        comps = evecs[:, torch.argsort(evals, descending=True)[: self.pca]].T  # (pca, C·p·p)
        lead = comps.abs().argmax(1)
        comps *= torch.sign(comps[torch.arange(self.pca), lead])[:, None]
        self.mean_ = mean.numpy()
        self.components_ = comps.numpy()

    def transform(self, images) -> np.ndarray:
        """Descriptors of each image, shape (N, L, d) with d = (pca or C·p·p) + 2·spatial."""
        check_is_fitted(self, "patch_")
        images = _check_images(images)
        _, channels, height, width = images.shape
        if channels != self.n_channels_ or min(height, width) < self.patch_:
            raise ValueError(
                f"images must have {self.n_channels_} channels and sides >= {self.patch_} "
                f"(as in fit), got shape {images.shape[1:]}."
            )
        pos = torch.from_numpy(patch_positions(height, width, self.patch_, self.stride_))
        parts = []
        for start in range(0, images.shape[0], _IMAGES_PER_CHUNK):
            desc = _patches(images[start : start + _IMAGES_PER_CHUNK], self.patch_, self.stride_)
            if self.pca is not None:
                mean = torch.from_numpy(self.mean_).to(desc.dtype)
                desc = (desc - mean) @ torch.from_numpy(self.components_).to(desc.dtype).T
            if self.spatial:
                where = pos.to(desc.dtype).expand(desc.shape[0], -1, -1)  # (n, L, 2)
                desc = torch.cat([desc, where], dim=2)
            parts.append(desc.contiguous())
        return torch.cat(parts).numpy()


def image_descriptors(
    images,
    *,
    patch: int | None = None,
    stride: int | None = None,
    pca: int | None = None,
    spatial: bool = True,
    random_state=0,
) -> np.ndarray:
    """Dense patch descriptors of a batch of same-size images.

    Convenience for ``PatchDescriptor(...).fit_transform(images)``; keep a fitted
    :class:`PatchDescriptor` to reuse the same PCA on new images.

    Parameters
    ----------
    images : ndarray of shape (N, C, H, W), float in [0, 1]
    patch, stride : int or None, default=None
        ``None`` picks them from the image size (8×8 → 3, 1; 32×32 → 6, 2).
    pca : int or None, default=None
        Reduce each raw patch to this many principal components.
    spatial : bool, default=True
        Append normalised patch-centre (x, y) ∈ [0, 1].
    random_state : int, RandomState or None, default=0
        Seeds the PCA subsample.

    Returns
    -------
    ndarray of shape (N, n_patches, d)
        One set of descriptors per image (a valid "many sets" input of ``fisher_vector``).
    """
    return PatchDescriptor(
        patch=patch, stride=stride, pca=pca, spatial=spatial, random_state=random_state
    ).fit_transform(images)
