"""Interest-point local descriptors of images: SIFT or ORB keypoints (scikit-image).

The baseline the FV-VAE proposal argues against: a Fisher vector (or VLAD, or a bag of visual
words) of descriptors computed at *detected* keypoints, as in Perronnin & Dance (2007) and
Sánchez et al. (2013), instead of on a dense grid (:mod:`.descriptors`) or learned.

Each image becomes a variable-length set of descriptors:

1. **Grey level.** Channels are averaged (both detectors work on one channel).
2. **Upsampling.** The built-in images are tiny (8×8 digits, 32×32 faces) and both detectors
   need room: the smaller side is upsampled to at least ``size`` pixels (default 64) by
   bilinear interpolation (``skimage.transform.resize``, order 1, no anti-aliasing since it
   only enlarges), then the image is **edge-padded** by ``pad`` pixels (default 16) on every
   side. SIFT drops keypoints whose neighbourhood leaves the image and ORB drops those within
   its 31-pixel patch of the border; on an 8×8 digit the stroke touches the border, and
   padding by replication adds room without adding edges (a constant border would add a
   frame of false corners). At the defaults a digit yields ~13 SIFT and ~43 ORB keypoints
   (~8 of each without padding) and a face ~15 and ~49.
3. **Detection and description** with ``skimage.feature.SIFT(upsampling=1)`` (scikit-image
   defaults otherwise: 3 scales per octave, c_dog = 0.013) or ``ORB(n_keypoints)`` (FAST +
   Harris ranking, oriented rBRIEF, scikit-image defaults otherwise). SIFT's own 2×
   upsampling is off because step 2 already enlarged the image: doubling again finds ~3× the
   keypoints on a face (42 against 15) at ~3× the cost (17 against 5–6 ms an image on one
   core, i.e. ~50 s against ~18 s for the 3,000 faces); ``size=128`` is the way to ask for
   the denser detection. ORB costs ~7 ms an image. Threads or processes (joblib) brought
   nothing on a loaded 2-core machine, so extraction is a plain loop over images.
4. **Scaling to unit length.** SIFT's 128-D descriptor (histograms quantised to 0..255) is
   divided by its L2 norm. ORB's 256 binary tests become ±1/16 = (2b − 1)/√256, also of unit
   norm, so that the squared Euclidean distance between two is 4/256 × their Hamming
   distance: k-means and the diagonal GMM then see ORB's own metric, not 0/1 floats whose
   scale would drown the (x, y) columns.
5. **PCA** (optional, default 32 components) on a random subsample of training descriptors —
   Sánchez et al. found decorrelating SIFT essential for diagonal-covariance GMMs.
6. **Position** (optional): the keypoint's (x, y) in the *original* image frame, normalised to
   [0, 1] like the dense patch centres (Krapac, Verbeek & Jurie 2011), appended as the two
   last columns.

**Images without keypoints.** A straight stroke (most "1"s of the digits) has no blob or
corner: SIFT rejects its DoG extrema as edges and FAST finds no corner, so 10 (SIFT) and 5
(ORB) of the 1,797 digits came out empty at the default thresholds. Such an image is tried
once more with relaxed thresholds — SIFT: edge ratio ``c_edge`` 10 → 50 and contrast
``c_dog`` 0.013 → 0.004; ORB: FAST threshold 0.08 → 0.02 — which finds 4–9 SIFT and 17–27 ORB
keypoints on each of those digits (``n_relaxed_`` counts these images). Only an image
with nothing even then (a blank one) gets an empty (0, d) set; the encoders of
:mod:`.encodings` map it to the zero vector (the expected Fisher vector under the model, an
empty VLAD / histogram) and the embeddings report how many images that happened to. Zero
rows are best avoided, hence the retry: under the cosine metric of a nearest-neighbour probe
a zero vector is closer than any other to a query whose cosine with its true neighbours is
below 0.5, so ten blank rows made themselves every image's neighbours (10-NN accuracy at
chance) before the retry existed.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .descriptors import _check_images

__all__ = ["KEYPOINT_KINDS", "KeypointDescriptor", "keypoint_descriptors", "upsample_image"]

KEYPOINT_KINDS = ("sift", "orb")
_RAW_DIM = {"sift": 128, "orb": 256}
Progress = Callable[[float, str], None]
_RELAXED_SIFT = {"c_dog": 0.004, "c_edge": 50.0}  # second try on an image with no keypoint


def upsample_image(image: np.ndarray, *, size: int = 64, pad: int = 16) -> tuple[np.ndarray,
                                                                                 tuple[int, int]]:
    """The grey, upsampled, edge-padded image the detectors see.

    Parameters
    ----------
    image : ndarray of shape (C, H, W) or (H, W), float in [0, 1]
    size : int, default=64
        The smaller side is enlarged (bilinear) to at least this many pixels; an image that
        is already as large keeps its size.
    pad : int, default=16
        Pixels replicated from the border on every side.

    Returns
    -------
    grey : ndarray of shape (H' + 2·pad, W' + 2·pad), float64
    shape : (H', W')
        The upsampled size before padding (keypoint positions are normalised by it).
    """
    from skimage.transform import resize

    grey = np.asarray(image, dtype=np.float64)
    if grey.ndim == 3:
        grey = grey.mean(0)  # (H, W)
    height, width = grey.shape
    scale = max(1.0, size / min(height, width))
    shape = (round(height * scale), round(width * scale))
    if shape != (height, width):
        grey = resize(grey, shape, order=1, anti_aliasing=False)
    return np.pad(grey, pad, mode="edge"), shape


def _detect(grey: np.ndarray, kind: str, n_keypoints: int, relaxed: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) positions (n, 2) and unit-norm descriptors (n, 128 or 256) of one image."""
    from skimage.feature import ORB, SIFT

    if kind == "sift":
        detector = SIFT(upsampling=1, **(_RELAXED_SIFT if relaxed else {}))
    else:
        detector = ORB(n_keypoints=n_keypoints, fast_threshold=0.02 if relaxed else 0.08)
    try:
        detector.detect_and_extract(grey)
    except RuntimeError as exc:  # scikit-image's way of saying "no keypoint"
        if "found no features" not in str(exc):
            raise
        return np.zeros((0, 2)), np.zeros((0, _RAW_DIM[kind]), dtype=np.float32)
    if kind == "sift":
        where = detector.positions  # sub-pixel (row, col)
        raw = detector.descriptors.astype(np.float64)
        raw /= np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    else:
        where = detector.keypoints
        raw = (2.0 * detector.descriptors - 1.0) / 16.0  # ±1/√256: unit norm, Hamming metric
    return np.asarray(where, dtype=np.float64).reshape(-1, 2), raw.astype(np.float32)


def _extract(images: np.ndarray, kind: str, size: int, pad: int, n_keypoints: int,
             progress: Progress | None) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Per image: normalised (x, y) positions (n_i, 2) and raw unit descriptors (n_i, D); and
    the number of images that needed the relaxed thresholds."""
    positions, raws, n_relaxed = [], [], 0
    n = len(images)
    step = max(1, n // 50)
    for i, image in enumerate(images):  # the detectors take one image at a time
        grey, (height, width) = upsample_image(image, size=size, pad=pad)
        where, raw = _detect(grey, kind, n_keypoints)
        if not len(raw):
            where, raw = _detect(grey, kind, n_keypoints, relaxed=True)
            n_relaxed += 1
        # pixel j spans [j, j + 1): its centre is j + 0.5, as for the dense patch centres
        xy = np.stack([(where[:, 1] - pad + 0.5) / width, (where[:, 0] - pad + 0.5) / height],
                      axis=1)
        positions.append(np.clip(xy, 0.0, 1.0).astype(np.float32))
        raws.append(raw)
        if progress is not None and ((i + 1) % step == 0 or i + 1 == n):
            progress((i + 1) / n, f"{kind.upper()} keypoints of {i + 1:,}/{n:,} images")
    return positions, raws, n_relaxed


def _check_int(name: str, value, low: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")


class KeypointDescriptor(TransformerMixin, BaseEstimator):
    """SIFT or ORB descriptors at detected keypoints, optionally PCA-reduced and positioned.

    ``transform`` returns a list of (n_i, d) float32 arrays, one per image (n_i may be 0),
    with d = (``pca`` or 128 / 256) + 2·``spatial`` — the "list of sets" input of
    :class:`~fisher_core.fisher.FisherVectorEncoder`, :class:`~fisher_core.fisher.VLADEncoder`
    and :class:`~fisher_core.fisher.BagOfWordsEncoder`.

    Parameters
    ----------
    kind : {"sift", "orb"}, default="sift"
    size : int, default=64
        Smaller image side after (bilinear) upsampling; see :func:`upsample_image`.
    pad : int, default=16
        Edge padding, in upsampled pixels, so that keypoints near the border survive.
    pca : int or None, default=32
        Project the unit-norm descriptors on their top ``pca`` principal directions, fitted
        on at most ``max_fit_descriptors`` training descriptors; ``None`` keeps them whole.
    spatial : bool, default=True
        Append the keypoint's normalised (x, y) ∈ [0, 1] as two last columns.
    n_keypoints : int, default=50
        ORB only: the strongest keypoints (Harris response) kept per image. SIFT keeps all.
    random_state : int, RandomState or None, default=0
        Seeds the PCA subsample.
    max_fit_descriptors : int, default=100_000

    Attributes
    ----------
    pca_ : sklearn.decomposition.PCA
        Only with ``pca``.
    n_raw_features_ : int
        128 (SIFT) or 256 (ORB).
    n_features_out_ : int
        d, the width of every returned set.
    n_relaxed_ : int
        Images of the last ``fit_transform`` / ``transform`` call on which the default
        thresholds found nothing and the relaxed ones were tried (see the module notes).
    """

    def __init__(self, kind: str = "sift", *, size: int = 64, pad: int = 16,
                 pca: int | None = 32, spatial: bool = True, n_keypoints: int = 50,
                 random_state=0, max_fit_descriptors: int = 100_000) -> None:
        self.kind = kind
        self.size = size
        self.pad = pad
        self.pca = pca
        self.spatial = spatial
        self.n_keypoints = n_keypoints
        self.random_state = random_state
        self.max_fit_descriptors = max_fit_descriptors

    def _check_params(self) -> None:
        if self.kind not in KEYPOINT_KINDS:
            raise ValueError(f"kind must be one of {list(KEYPOINT_KINDS)}, got {self.kind!r}.")
        for name, low in (("size", 8), ("pad", 0), ("n_keypoints", 1),
                          ("max_fit_descriptors", 1)):
            _check_int(name, getattr(self, name), low)
        raw = _RAW_DIM[self.kind]
        if self.pca is not None:
            ok = isinstance(self.pca, numbers.Integral) and not isinstance(self.pca, bool)
            if not ok or not 1 <= self.pca <= raw:
                raise ValueError(f"pca must be None or an integer in [1, {raw}] for "
                                 f"{self.kind.upper()} descriptors, got {self.pca!r}.")

    def _raw(self, images, progress: Progress | None):
        positions, raws, self.n_relaxed_ = _extract(_check_images(images), self.kind,
                                                    self.size, self.pad, self.n_keypoints,
                                                    progress)
        return positions, raws

    def _finish(self, positions: list[np.ndarray], raws: list[np.ndarray]) -> list[np.ndarray]:
        lengths = np.array([len(r) for r in raws])
        flat = np.concatenate(raws)  # (T, D_raw)
        if self.pca is not None and len(flat):
            flat = self.pca_.transform(flat).astype(np.float32)  # (T, pca)
        if self.spatial:
            flat = np.concatenate([flat, np.concatenate(positions)], axis=1)  # (T, d)
        return np.split(flat, np.cumsum(lengths)[:-1])

    def fit_transform(self, images, y=None, *, progress: Progress | None = None
                      ) -> list[np.ndarray]:
        """Learn the PCA (if any) on these images and return their sets of descriptors.

        Parameters
        ----------
        images : ndarray of shape (N, C, H, W), float in [0, 1]
        y : ignored
        progress : callable(fraction, message), optional
            Called while the keypoints are extracted (the slow part: ~5 ms an image).

        Returns
        -------
        list of N float32 arrays of shape (n_i, d)
        """
        self._check_params()
        positions, raws = self._raw(images, progress)
        flat = np.concatenate(raws)  # (T, D_raw)
        self.n_raw_features_ = _RAW_DIM[self.kind]
        if self.pca is not None:
            if len(flat) < self.pca:
                raise ValueError(
                    f"pca={self.pca} needs at least that many keypoints; the images gave "
                    f"{len(flat)}. Lower pca, pass more images or use pca=None.")
            rng = check_random_state(self.random_state)
            sample = flat
            if len(flat) > self.max_fit_descriptors:
                sample = flat[np.sort(rng.choice(len(flat), self.max_fit_descriptors,
                                                 replace=False))]
            self.pca_ = PCA(self.pca, random_state=rng.randint(np.iinfo(np.int32).max))
            self.pca_.fit(sample.astype(np.float64))
        self.n_features_out_ = (self.pca or self.n_raw_features_) + 2 * bool(self.spatial)
        return self._finish(positions, raws)

    def fit(self, images, y=None) -> KeypointDescriptor:
        """Learn the PCA (if any) on training images (N, C, H, W)."""
        self.fit_transform(images)
        return self

    def transform(self, images, *, progress: Progress | None = None) -> list[np.ndarray]:
        """Sets of descriptors of new images, with the PCA learned in ``fit``."""
        check_is_fitted(self, "n_features_out_")
        return self._finish(*self._raw(images, progress))


def keypoint_descriptors(images, kind: str = "sift", *, size: int = 64, pad: int = 16,
                         pca: int | None = 32, spatial: bool = True, n_keypoints: int = 50,
                         random_state=0, progress: Progress | None = None
                         ) -> list[np.ndarray]:
    """SIFT or ORB descriptor sets of a batch of images.

    Convenience for ``KeypointDescriptor(kind, ...).fit_transform(images)``; keep a fitted
    :class:`KeypointDescriptor` to reuse the same PCA on new images.

    Parameters
    ----------
    images : ndarray of shape (N, C, H, W), float in [0, 1]
    kind : {"sift", "orb"}, default="sift"
    size, pad, pca, spatial, n_keypoints, random_state
        As in :class:`KeypointDescriptor` (upsample to ≥ 64 px, pad 16, PCA to 32, (x, y)
        appended, ORB keeps its 50 strongest keypoints).
    progress : callable(fraction, message), optional

    Returns
    -------
    list of N float32 arrays of shape (n_i, d)
        n_i may be 0 (no keypoint found); d = (pca or 128 / 256) + 2·spatial.
    """
    return KeypointDescriptor(kind, size=size, pad=pad, pca=pca, spatial=spatial,
                              n_keypoints=n_keypoints, random_state=random_state
                              ).fit_transform(images, progress=progress)
