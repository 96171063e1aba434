"""Dataset → Embedding: the classical Fisher-vector pipeline and the pixel baseline.

Every function here returns an :class:`~fisher_core.embeddings.Embedding`, so downstream code
(UMAP, probes, decoders, metrics) never needs to know which space it is looking at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..data.dataset import ImageDataset
from .embedding import Embedding

__all__ = ["Progress", "fisher_vector_embedding", "patch_gmm_embedding", "pixel_embedding",
           "power_l2"]

Progress = Callable[[float, str], None]


def _noop(fraction: float, message: str) -> None:
    return None


def power_l2(x: np.ndarray, *, power: float | None = 0.5, l2: bool = True) -> np.ndarray:
    """Signed power normalisation then L2 of each row; an all-zero row stays zero.

    Parameters
    ----------
    x : ndarray of shape (N, k)
    power : float or None, default=0.5
        Exponent p of ``sign(z)·|z|^p``; ``None`` skips it.
    l2 : bool, default=True
        Divide each row by ``max(‖row‖, 1e-12)``.

    Returns
    -------
    ndarray of shape (N, k), float32
    """
    import torch

    from ..fisher.vectors import normalize_

    z = torch.from_numpy(np.array(x, dtype=np.float32, copy=True))
    return normalize_(z, power, l2).numpy()


def pixel_embedding(ds: ImageDataset, *, dataset_key: str | None = None) -> Embedding:
    """Raw pixels, flattened: the baseline every other space is compared with."""
    return Embedding(ds.images.reshape(len(ds), -1), dataset_key or ds.name, "pixels",
                     params={"shape": list(ds.shape)})


def fisher_vector_embedding(
    ds: ImageDataset,
    *,
    n_components: int = 16,
    patch: int | None = None,
    stride: int | None = None,
    pca: int | None | str = "auto",
    spatial: bool = True,
    normalization: str = "analytic",
    power: float | None = 0.5,
    l2: bool = True,
    whiten: int | None = None,
    max_gmm_descriptors: int = 100_000,
    random_state: int = 0,
    dataset_key: str | None = None,
    progress: Progress | None = None,
    chunk: int = 512,
    gmm: Any = None,
) -> tuple[Embedding, Any]:
    """Classical (improved) Fisher vectors of dense local patches.

    Dense patches with their normalised (x, y) position appended (Krapac et al. 2011) are
    the local descriptors; a diagonal GMM with ``n_components`` components is fitted on (a
    subsample of) all of them; each image becomes the Fisher vector of its patches.

    Parameters
    ----------
    ds : ImageDataset
    n_components : int, default=16
        GMM components K; the vector has K + 2·K·D entries.
    patch, stride, spatial
        Passed to :func:`fisher_core.fisher.descriptors.image_descriptors` (defaults follow
        the image size).
    pca : int, None or "auto", default="auto"
        Principal components kept per raw patch; ``"auto"``:
        :func:`~fisher_core.fisher.descriptors.default_patch_pca` (24 when a patch has more
        values, as on the 32×32 faces; none for the 8×8 digits), the app's and the command
        line's default.
    normalization : {"analytic", "empirical", "none"}, default="analytic"
        ``"analytic"``: the closed-form diagonal Fisher information (Sánchez et al. 2013);
        ``"empirical"``: standardise each dimension of the plain gradient with its mean and
        standard deviation over this dataset; ``"none"``: the plain gradient.
    power : float or None, default=0.5
        Signed power normalisation exponent.
    l2 : bool, default=True
        Final L2 normalisation.
    whiten : int or None, default=None
        PCA-whiten the (power-normalised) vectors to this many dimensions before L2: the
        full sample covariance of the vectors becomes the identity (Jégou & Chum 2012).
        Fitted on all rows for the stored vectors; probes refit it on their training folds
        from :attr:`Embedding.base`.
    max_gmm_descriptors : int, default=100,000
        Random subsample of descriptors used to fit the GMM.
    random_state : int, default=0
    dataset_key : str, optional
        Recorded in the embedding (defaults to ``ds.name``).
    progress : callable(fraction, message), optional
    chunk : int, default=512
        Images encoded per call (bounds memory, paces progress).
    gmm : fitted GaussianMixture, optional
        Reuse this mixture instead of fitting one (it must match the descriptors).

    Returns
    -------
    embedding : Embedding
        kind ``"fisher_vector"``, shape (N, K + 2KD).
    gmm : fisher_core.GaussianMixture
        The fitted mixture.
    """
    from ..fisher.descriptors import image_descriptors
    from ..fisher.gmm import GaussianMixture

    _check_normalization(normalization)
    report = progress or _noop
    if pca == "auto":
        from ..fisher.descriptors import default_patch_pca

        pca = default_patch_pca(*ds.shape, patch=patch)
    report(0.0, "extracting local descriptors")
    desc = image_descriptors(ds.images, patch=patch, stride=stride, pca=pca, spatial=spatial,
                             random_state=random_state)  # (N, n_patches, D)
    _check_whiten(whiten, len(ds), n_components * (1 + 2 * desc.shape[-1]))
    if gmm is None:
        flat = desc.reshape(-1, desc.shape[-1])  # (N·n_patches, D)
        rng = np.random.default_rng(random_state)
        if flat.shape[0] > max_gmm_descriptors:
            flat = flat[rng.choice(flat.shape[0], max_gmm_descriptors, replace=False)]
        report(0.1, f"fitting a {n_components}-component GMM on {flat.shape[0]:,} descriptors")
        gmm = GaussianMixture(n_components=n_components, random_state=random_state).fit(flat)
    fv, base, post = _encode(lambda i, c: desc[i:i + c], desc.shape[0], gmm, normalization,
                             power, l2, whiten, chunk, report, start=0.3)
    report(1.0, "done")
    params = {"n_components": n_components, "patch": patch, "stride": stride, "pca": pca,
              "spatial": spatial, "power": power, "l2": l2, "whiten": whiten,
              "descriptor_dim": desc.shape[-1], "n_patches": desc.shape[1],
              "random_state": random_state}
    emb = Embedding(fv, dataset_key or ds.name, "fisher_vector", model=f"gmm-k{n_components}",
                    normalization=normalization, params=params, base=base, post=post)
    return emb, gmm


def _check_normalization(normalization: str) -> None:
    if normalization not in ("analytic", "empirical", "none"):
        raise ValueError(
            "normalization must be 'analytic', 'empirical' or 'none'; "
            f"got {normalization!r}."
        )


def _encode(blocks: Callable[[int, int], np.ndarray], n: int, gmm: Any, normalization: str,
            power: float | None, l2: bool, whiten: int | None, chunk: int, report: Progress,
            *, start: float) -> tuple[np.ndarray, np.ndarray | None, dict | None]:
    """Fisher vectors of ``n`` sets, ``blocks(first, count)`` giving their descriptors
    (count, L, d) chunk by chunk, then the empirical standardisation / whitening (if asked),
    power and L2. Returns float32 (n, k) vectors and, when some step learns statistics from
    the rows, the vectors before those steps and their recipe (else ``None, None``)."""
    from ..fisher.postprocess import FisherNormalizer
    from ..fisher.vectors import fisher_vector

    base = "none" if normalization == "empirical" else normalization
    out = []
    for first in range(0, n, chunk):
        out.append(fisher_vector(blocks(first, chunk), gmm, normalization=base, power=None,
                                 l2=False))
        done = min(n, first + chunk)
        report(start + (0.95 - start) * done / n, f"encoded {done:,}/{n:,}")
    fv = np.concatenate(out).astype(np.float32)
    if normalization != "empirical" and whiten is None:
        return power_l2(fv, power=power, l2=l2), None, None
    report(0.96, "fitting the " + ("whitening" if whiten else "standardisation") + " on all "
           "rows (probes refit it per fold)")
    steps = FisherNormalizer(standardize=normalization == "empirical", power=power,
                             whiten=whiten, l2=l2)
    return steps.fit_transform(fv), fv, steps.recipe()


def _check_whiten(whiten: int | None, n: int, dim: int) -> None:
    if whiten is None:
        return
    if isinstance(whiten, bool) or not isinstance(whiten, int) or whiten < 1:
        raise ValueError(f"whiten must be None or an integer >= 1; got {whiten!r}.")
    if whiten > min(n, dim):
        raise ValueError(f"whiten={whiten} exceeds min(images, Fisher-vector dimension) = "
                         f"{min(n, dim)}; choose at most {min(n, dim)} dimensions.")


def patch_gmm_embedding(
    model: Any,
    images: np.ndarray,
    *,
    normalization: str = "analytic",
    power: float | None = 0.5,
    l2: bool = True,
    whiten: int | None = None,
    dataset_key: str = "",
    model_name: str | None = None,
    progress: Progress | None = None,
    chunk: int = 512,
) -> Embedding:
    """Fisher vectors of every image under a trained :class:`~fisher_core.models.PatchGMM`.

    The model's own descriptor recipe (patches, PCA, positions) and mixture are reused: no
    mixture is fitted here, so embeddings of several datasets share one vocabulary.

    Parameters
    ----------
    model : PatchGMM
        A fitted patch GMM (``fisherlab train gmm`` or the Train page).
    images : ndarray of shape (N, C, H, W)
        Floats in [0, 1], the size the model was trained on.
    normalization : {"analytic", "empirical", "none"}, default="analytic"
    power : float or None, default=0.5
    l2 : bool, default=True
    whiten : int or None, default=None
        As in :func:`fisher_vector_embedding`.
    dataset_key, model_name : str
        Recorded in the embedding's metadata.
    progress : callable(fraction, message) or None, default=None
    chunk : int, default=512
        Images encoded per call.

    Returns
    -------
    Embedding
        kind ``"fisher_vector"``, shape (N, K (1 + 2d)).
    """
    from ..models.patchgmm import PatchGMM

    if not isinstance(model, PatchGMM):
        raise TypeError(f"model must be a PatchGMM; got {type(model).__name__}.")
    _check_normalization(normalization)
    images = np.asarray(images, dtype=np.float32)
    cfg = model.config
    if images.ndim != 4 or images.shape[1:] != tuple(model.image_shape):
        raise ValueError(f"images must have shape (N, {cfg.channels}, {cfg.height}, "
                         f"{cfg.width}) like the model's training data; got {images.shape}.")
    _check_whiten(whiten, len(images), cfg.n_components * (1 + 2 * model.descriptor_dim))
    report = progress or _noop
    descriptor = model.descriptor()
    fv, base, post = _encode(lambda i, c: descriptor.transform(images[i:i + c]), len(images),
                             model.mixture(), normalization, power, l2, whiten, chunk, report,
                             start=0.0)
    report(1.0, "done")
    params = {"n_components": cfg.n_components, "patch": cfg.patch, "stride": cfg.stride,
              "pca": cfg.pca or None, "spatial": cfg.spatial, "power": power, "l2": l2,
              "whiten": whiten, "descriptor_dim": model.descriptor_dim,
              "n_patches": int(model.positions.shape[0])}
    return Embedding(fv, dataset_key, "fisher_vector", model=model_name or "gmm",
                     normalization=normalization, params=params, base=base, post=post)
