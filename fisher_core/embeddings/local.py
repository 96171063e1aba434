"""Dataset → Embedding: local-descriptor baselines (dense / SIFT / ORB × Fisher / VLAD / BoW).

The FV-VAE proposal claims that learned dense descriptors beat interest-point ones. This module
puts the classical alternatives next to each other at a matched codebook size K: descriptors
from a dense grid of patches (:mod:`fisher_core.fisher.descriptors`, today's Fisher-vector
path) or at SIFT / ORB keypoints (:mod:`fisher_core.fisher.keypoints`), encoded as an improved
Fisher vector (GMM), a VLAD or a bag of visual words (k-means, :mod:`fisher_core.fisher.encodings`).
"""

from __future__ import annotations

import numpy as np

from ..data.dataset import ImageDataset
from ..fisher.descriptors import DENSE_PCA
from .classical import Progress, _noop, fisher_vector_embedding
from .embedding import Embedding

__all__ = ["DENSE_PCA", "DESCRIPTOR_KINDS", "ENCODINGS", "KEYPOINT_PCA", "default_pca",
           "local_descriptor_embedding", "local_embedding_name"]

DESCRIPTOR_KINDS = ("dense", "sift", "orb")
# encoding → Embedding.kind
ENCODINGS = {"fisher": "fisher_vector", "vlad": "vlad", "bow": "bow"}
KEYPOINT_PCA = 32


def default_pca(descriptors: str, image_shape: tuple[int, ...], patch: int | None = None
                ) -> int | None:
    """What ``pca="auto"`` means: 32 for SIFT / ORB; for dense patches, 24 when a raw patch
    has more than 24 values (images over 16 px: 6×6 patches), else none (8×8 digits: 3×3).

    The dense rule is the app's and ``fisherlab embed``'s default. On the 32×32 faces it
    lifts the Fisher vector's class probe from 53 % (raw patches) to 94 %
    (``bench/eval_baselines.py``): a diagonal GMM needs decorrelated descriptors (Sánchez
    et al. 2013), and raw neighbouring pixels are anything but.

    Parameters
    ----------
    descriptors : {"dense", "sift", "orb"}
    image_shape : tuple (C, H, W)
    patch : int or None, default=None
        Dense patch side (``None``: from the image size).
    """
    if descriptors != "dense":
        return KEYPOINT_PCA
    from ..fisher.descriptors import default_patch_pca

    return default_patch_pca(*image_shape, patch=patch)


def local_embedding_name(dataset: str, descriptors: str, encoding: str, n_components: int, *,
                         pca: int | None = None, patch: int | None = None,
                         power: float | None = 0.5, l2: bool = True) -> str:
    """The default workspace name of a baseline, as the app and ``fisherlab embed`` give it.

    ``"faces-sift-vlad-k16-pca32"``; ``-p{patch}`` for a given dense patch size, ``-nopow`` /
    ``-nol2`` when those normalisations are off. Pass it through a slug for free-text
    dataset names.
    """
    return (f"{dataset}-{descriptors}-{encoding}-k{n_components}"
            + (f"-p{patch}" if descriptors == "dense" and patch else "")
            + (f"-pca{pca}" if pca else "") + ("" if power else "-nopow")
            + ("" if l2 else "-nol2"))


def _check(descriptors: str, encoding: str, n_components) -> None:
    if descriptors not in DESCRIPTOR_KINDS:
        raise ValueError(f"descriptors must be one of {list(DESCRIPTOR_KINDS)}, got "
                         f"{descriptors!r}.")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {list(ENCODINGS)}, got {encoding!r}.")
    if not isinstance(n_components, int) or isinstance(n_components, bool) or n_components < 1:
        raise ValueError(f"n_components must be an integer >= 1, got {n_components!r}.")


def _sets(ds: ImageDataset, descriptors: str, pca, spatial: bool, patch, stride, size: int,
          pad: int, n_keypoints: int, random_state: int, report: Progress):
    """(sets: an (N, L, d) array or a list of (n_i, d) arrays, params describing them)."""
    if descriptors == "dense":
        from ..fisher.descriptors import image_descriptors

        report(0.0, "extracting dense patches")
        dense = image_descriptors(ds.images, patch=patch, stride=stride, pca=pca,
                                  spatial=spatial, random_state=random_state)  # (N, L, d)
        return dense, {"patch": patch, "stride": stride}
    from ..fisher.keypoints import KeypointDescriptor

    extractor = KeypointDescriptor(descriptors, size=size, pad=pad, pca=pca, spatial=spatial,
                                   n_keypoints=n_keypoints, random_state=random_state)
    sets = extractor.fit_transform(ds.images, progress=lambda f, m: report(0.7 * f, m))
    params = {"size": size, "pad": pad, "n_relaxed": extractor.n_relaxed_}
    if descriptors == "orb":
        params["n_keypoints"] = n_keypoints
    return sets, params


def _encode(sets: list[np.ndarray], encoding: str, k: int, power, l2: bool, intra: bool,
            weighting: str, random_state: int) -> np.ndarray:
    """(N, dim) encodings; an image without descriptors gets the zero vector."""
    from ..fisher.encodings import BagOfWordsEncoder, VLADEncoder
    from ..fisher.vectors import FisherVectorEncoder

    if encoding == "vlad":
        return VLADEncoder(k, intra=intra, power=power, l2=l2,
                           random_state=random_state).fit_transform(sets)
    if encoding == "bow":
        return BagOfWordsEncoder(k, weighting=weighting, power=power, l2=l2,
                                 random_state=random_state).fit_transform(sets)
    # a Fisher vector averages over descriptors: encode the non-empty sets, zeros elsewhere
    # (zero is also the expected Fisher vector under the model: "no evidence")
    full = [i for i, s in enumerate(sets) if len(s)]
    if not full:
        raise ValueError("no image has a keypoint; use dense descriptors or larger images.")
    fv = FisherVectorEncoder(k, power=power, l2=l2, random_state=random_state
                             ).fit_transform([sets[i] for i in full])
    out = np.zeros((len(sets), fv.shape[1]), dtype=np.float32)
    out[full] = fv
    return out


def local_descriptor_embedding(
    ds: ImageDataset,
    *,
    descriptors: str = "sift",
    encoding: str = "vlad",
    n_components: int = 16,
    pca: int | None | str = "auto",
    spatial: bool = True,
    patch: int | None = None,
    stride: int | None = None,
    size: int = 64,
    pad: int = 16,
    n_keypoints: int = 50,
    power: float | None = 0.5,
    l2: bool = True,
    intra: bool = True,
    weighting: str = "tf",
    random_state: int = 0,
    dataset_key: str | None = None,
    progress: Progress | None = None,
) -> Embedding:
    """Local descriptors of every image, encoded against a vocabulary learned on the dataset.

    Parameters
    ----------
    ds : ImageDataset
    descriptors : {"dense", "sift", "orb"}, default="sift"
        ``"dense"``: patches on a grid (:func:`~fisher_core.fisher.image_descriptors`);
        ``"sift"`` / ``"orb"``: scikit-image keypoints on the image upsampled to ``size``
        (:class:`~fisher_core.fisher.KeypointDescriptor`).
    encoding : {"fisher", "vlad", "bow"}, default="vlad"
        Improved Fisher vector of a diagonal GMM (K + 2KD dims), VLAD (K·D) or bag of
        visual words (K) over a k-means codebook.
    n_components : int, default=16
        K, GMM components or codebook words.
    pca : int, None or "auto", default="auto"
        Principal components kept per descriptor; ``"auto"``: :func:`default_pca` (32 for
        SIFT / ORB; 24 for dense patches of more than 24 values, else none).
    spatial : bool, default=True
        Append the normalised (x, y) position to every descriptor (Krapac et al. 2011).
    patch, stride : int or None, default=None
        Dense only (``None``: from the image size).
    size, pad, n_keypoints : int, default=64, 16, 50
        Keypoints only: upsampled smaller side, edge padding, ORB keypoints kept.
    power : float or None, default=0.5
        Signed power normalisation.
    l2 : bool, default=True
        Final L2 normalisation.
    intra : bool, default=True
        VLAD only: per-block L2 (intra-normalisation).
    weighting : {"tf", "tfidf", "none"}, default="tf"
        Bag of words only.
    random_state : int, default=0
    dataset_key : str, optional
        Recorded in the embedding (defaults to ``ds.name``).
    progress : callable(fraction, message), optional

    Returns
    -------
    Embedding
        kind ``"fisher_vector"``, ``"vlad"`` or ``"bow"``; ``params`` record the descriptor
        settings, the mean number of descriptors per image, ``n_relaxed`` (keypoints only:
        images that needed the detector's relaxed thresholds) and ``n_empty``, the images on
        which no keypoint was found even then (their row is all zeros).
    """
    _check(descriptors, encoding, n_components)
    report = progress or _noop
    if pca == "auto":
        pca = default_pca(descriptors, ds.shape, patch)
    if descriptors == "dense" and encoding == "fisher":  # today's path, unchanged
        emb, _ = fisher_vector_embedding(
            ds, n_components=n_components, patch=patch, stride=stride, pca=pca,
            spatial=spatial, power=power, l2=l2, random_state=random_state,
            dataset_key=dataset_key, progress=progress)
        emb.params.update(descriptors="dense", encoding="fisher")
        return emb
    sets, extra = _sets(ds, descriptors, pca, spatial, patch, stride, size, pad, n_keypoints,
                        random_state, report)
    lengths = np.array([len(s) for s in sets])
    report(0.75, f"fitting a {n_components}-word vocabulary and encoding ({encoding})")
    vectors = _encode(sets, encoding, n_components, power, l2, intra, weighting, random_state)
    report(1.0, "done")
    params = {"descriptors": descriptors, "encoding": encoding, "n_components": n_components,
              "pca": pca, "spatial": spatial, **extra, "power": power, "l2": l2,
              "descriptor_dim": int(sets[0].shape[1]),
              "mean_descriptors": round(float(lengths.mean()), 2),
              "n_empty": int((lengths == 0).sum()), "random_state": random_state}
    if encoding == "vlad":
        params["intra"] = intra
    if encoding == "bow":
        params["weighting"] = weighting
    model = f"{'gmm' if encoding == 'fisher' else 'kmeans'}-k{n_components}-{descriptors}"
    return Embedding(vectors, dataset_key or ds.name, ENCODINGS[encoding], model=model,
                     normalization="analytic" if encoding == "fisher" else None, params=params)
