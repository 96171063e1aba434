"""Measuring an embedding through its decoder: interpolation FID curves and attribute edits.

Both protocols follow Yan, Ho & Abbeel (2019, "Natural image manipulation for autoregressive
models using Fisher scores") and work for any embedding with a decoder, so different spaces
(Fisher scores, activations, pixels, latents) are compared by the same code.

The decoder is anything with ``decode(z (M, k)) -> images (M, C, H, W)`` in [0, 1] (a
:class:`fisher_core.explore.decode.Decoder`); the feature extractor anything with
``features(images) -> (M, f)`` (a :class:`fisher_core.metrics.features.DomainFeatureExtractor`),
whose ``name`` is returned with the FIDs; the attribute classifier either has
``predict_attributes(images) -> (M, A)`` probabilities or is such a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..explore.edit import apply_direction, attribute_direction, interpolate
from .distance import frechet_distance

__all__ = ["attribute_edit_scores", "edit_operating_points", "fid_vs_alpha",
           "interpolation_ratios"]

Progress = Callable[[float, str], None]

#: α grid of :func:`fid_vs_alpha`: 0, 0.1, ..., 1.
DEFAULT_ALPHAS: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 12).tolist())


def _vectors(z: Any) -> np.ndarray:
    z = np.asarray(getattr(z, "vectors", z), dtype=np.float32)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"embedding_vectors must be (N, k) with N ≥ 2; got shape {z.shape}.")
    return z


def _random_pairs(n: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """(n_pairs, 2) row indices, the two ends of each pair distinct."""
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n  # never equal to i
    return np.stack([i, j], axis=1)


def fid_vs_alpha(
    embedding_vectors: np.ndarray,
    decoder: Any,
    real_images: np.ndarray,
    extractor: Any,
    *,
    n_pairs: int = 500,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    method: str = "linear",
    seed: int = 0,
    repeats: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """FID of decoded interpolations against real images, as a function of α.

    Protocol (Yan et al. 2019): draw ``n_pairs`` random pairs (i, j), i ≠ j, of embedding
    rows (with replacement across pairs, seeded); for each α compute
    ``z_α = interpolate(z_i, z_j, α, method)`` for every pair (α = 0 is z_i, 1 is z_j), decode
    the ``n_pairs`` points, and compute the Fréchet distance between the extractor's features
    of those images and of ``real_images``. A good space keeps the curve flat; a space whose
    midpoints leave the data manifold peaks at α = 0.5. The ends measure the decoder's
    reconstruction quality alone.

    Parameters
    ----------
    embedding_vectors : ndarray of shape (N, k) or Embedding
        Raw embedding rows (what the decoder takes).
    decoder : object with ``decode(z) -> (M, C, H, W)``
    real_images : ndarray of shape (R, C, H, W)
        Reference set (e.g. the dataset, or its held-out part), in [0, 1].
    extractor : object with ``features(images) -> (M, f)``
        Its ``name`` attribute, if any, is returned with the result.
    n_pairs : int, default=500
        Pairs, i.e. images per FID; FID is biased upwards for small sets, so compare curves
        only at equal ``n_pairs`` and ``len(real_images)``.
    alphas : array-like of shape (T,), default=DEFAULT_ALPHAS (0, 0.1, ..., 1)
    method : {"linear", "slerp"}, default="linear"
    seed : int, default=0
        Seeds the choice of pairs (draw r uses ``seed + r``).
    repeats : int, default=1
        Independent draws of ``n_pairs`` pairs; the curve is their mean, with their spread.
    progress : callable(fraction, message) or None, default=None

    Returns
    -------
    dict
        ``alphas`` (T,), ``fid`` (T,: mean over draws), ``fid_std`` (T,: standard deviation
        over draws, 0 for one draw) and ``fid_draws`` (repeats × T) lists of float,
        ``pairs`` (n_pairs, 2) int array of the first draw, ``n_pairs``, ``repeats``,
        ``n_real``, ``method``, ``extractor`` (name).
    """
    z = _vectors(embedding_vectors)
    a = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.isfinite(a).all():
        raise ValueError(f"alphas must be a non-empty list of finite numbers; got {alphas!r}.")
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 2:
        raise ValueError(f"n_pairs must be an integer ≥ 2 (one FID needs 2 images); got "
                         f"{n_pairs!r}.")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer ≥ 1; got {repeats!r}.")
    report = progress or (lambda f, m: None)
    report(0.0, f"features of {len(real_images):,} real images")
    real = extractor.features(np.asarray(real_images, dtype=np.float32))
    draws, first = [], None
    for r in range(repeats):
        pairs = _random_pairs(z.shape[0], n_pairs, np.random.default_rng(seed + r))
        first = pairs if first is None else first
        paths = np.stack([interpolate(z[i], z[j], a, method=method) for i, j in pairs])
        fids = []  # paths: (P, T, k)
        for t, alpha in enumerate(a):
            feats = extractor.features(decoder.decode(paths[:, t]))
            fids.append(frechet_distance(real, feats))
            done = (r * a.size + t + 1) / (repeats * a.size)
            report(done, f"draw {r + 1}/{repeats}, α = {alpha:.2f}: FID {fids[-1]:.3g}")
        draws.append(fids)
    arr = np.asarray(draws)  # (repeats, T)
    return {"alphas": a.tolist(), "fid": arr.mean(0).tolist(), "fid_std": arr.std(0).tolist(),
            "fid_draws": arr.tolist(), "pairs": first, "n_pairs": n_pairs,
            "repeats": repeats, "n_real": int(real.shape[0]), "method": method,
            "extractor": getattr(extractor, "name", type(extractor).__name__)}


def interpolation_ratios(rows: Sequence[dict[str, Any]], *, reference_kind: str = "pixels"
                         ) -> list[dict[str, Any]]:
    """How far each space's interpolations leave the data: peak over end-point FID.

    Parameters
    ----------
    rows : sequence of dict
        FID-vs-α rows (``space``, ``alpha``, ``fid``, optionally ``kind``, ``fid_std``), as
        :func:`fisher_core.workspace.fid_curves` returns them.
    reference_kind : str, default="pixels"
        The space kind the ratios are compared with (the first space of that kind).

    Returns
    -------
    list of dict
        One per space, in first-seen order: ``space``, ``kind``, ``endpoint_fid`` (mean FID
        at α = 0 and 1: the decoder's reconstructions), ``peak_fid`` and ``peak_alpha`` (the
        largest FID over α), ``ratio`` (peak / end point; 1 is a flat curve), and
        ``ratio_vs_reference`` (this ratio over the reference space's; None without one).
        Yan, Ho & Abbeel's claim reads ``ratio_vs_reference < 1`` for Fisher-score spaces.
    """
    spaces: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        spaces.setdefault(row["space"], []).append(row)
    out = []
    for space, pts in spaces.items():
        pts = sorted(pts, key=lambda r: r["alpha"])
        if len(pts) < 2:
            raise ValueError(f"space {space!r} has {len(pts)} FID point(s); an interpolation "
                             "ratio needs α = 0, 1 and points between.")
        ends = 0.5 * (pts[0]["fid"] + pts[-1]["fid"])
        peak = max(pts, key=lambda r: r["fid"])
        out.append({"space": space, "kind": pts[0].get("kind", ""), "endpoint_fid": ends,
                    "peak_fid": peak["fid"], "peak_alpha": peak["alpha"],
                    "ratio": peak["fid"] / ends if ends > 0 else float("inf")})
    ref = next((r["ratio"] for r in out if r["kind"] == reference_kind), None)
    for r in out:
        r["ratio_vs_reference"] = None if ref is None else r["ratio"] / ref
    return out


def _classify(classifier: Any, images: np.ndarray) -> np.ndarray:
    fn = getattr(classifier, "predict_attributes", classifier)
    return np.asarray(fn(images), dtype=np.float64)


def attribute_edit_scores(
    embedding_vectors: np.ndarray,
    attributes: np.ndarray,
    decoder: Any,
    classifier: Any,
    *,
    attribute: int,
    strengths: Sequence[float] = (1.0, 3.0, 5.0),
    n_sources: int = 200,
    remove: bool = True,
    threshold: float = 0.5,
    attribute_names: Sequence[str] | None = None,
    seed: int = 0,
    direction: str = "mean",
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Success and preservation of attribute-vector edits, judged by a classifier.

    Protocol:

    1. Direction: δ = mean(z | attribute) − mean(z | no attribute) over all N rows, from the
       ground-truth ``attributes[:, attribute]`` (:func:`fisher_core.attribute_direction`).
    2. Sources: up to ``n_sources`` rows *without* the attribute (ground truth), drawn without
       replacement with ``seed``; edited as z + s·δ ("add", target: present). With
       ``remove=True`` also up to ``n_sources`` rows *with* it, edited as z − s·δ ("remove",
       target: absent).
    3. Reference: each source's unedited z is decoded and classified; the classifier's labels
       (probability ≥ ``threshold``) on this reconstruction are the reference, so decoder
       errors are not counted as edit errors.
    4. For every strength s: decode the edited z, classify, and report

       - ``success``: share of sources whose target attribute is predicted as the target
         (present for "add", absent for "remove");
       - ``preservation``: share of (source, other attribute) pairs whose predicted label is
         unchanged from the reference (NaN with a single attribute);
       - ``baseline``: share of sources whose *unedited* reconstruction already shows the
         target (what success would be with no edit at all);
       - ``target_prob``: mean classifier probability of the attribute after the edit.

    Parameters
    ----------
    embedding_vectors : ndarray of shape (N, k) or Embedding
    attributes : ndarray of shape (N, A)
        Ground-truth binary attributes of the rows.
    decoder : object with ``decode(z) -> (M, C, H, W)``
    classifier : object with ``predict_attributes(images) -> (M, A)``, or such a callable
        Probabilities of the same A attributes, in the same order.
    attribute : int
        Column of the edited attribute.
    strengths : sequence of float, default=(1, 3, 5)
    n_sources : int, default=200
    remove : bool, default=True
        Also score removing the attribute from rows that have it.
    threshold : float, default=0.5
        Probability above which the classifier says "present".
    attribute_names : sequence of str or None, default=None
        Names for the rows' ``attribute`` field (default ``"attr<j>"``).
    seed : int, default=0
    direction : {"mean", "whitened"}, default="mean"
        How δ is estimated (:func:`fisher_core.attribute_direction`'s ``method``).
    progress : callable(fraction, message) or None, default=None

    Returns
    -------
    list of dict
        One row per (direction, strength), keys ``attribute``, ``direction``, ``strength``,
        ``n``, ``success``, ``preservation``, ``baseline``, ``target_prob``.
    """
    z = _vectors(embedding_vectors)
    attrs = np.asarray(attributes)
    if attrs.ndim == 1:
        attrs = attrs[:, None]
    if attrs.ndim != 2 or attrs.shape[0] != z.shape[0]:
        raise ValueError(f"attributes must be (N, A) with N = {z.shape[0]}; got {attrs.shape}.")
    n_attr = attrs.shape[1]
    if isinstance(attribute, bool) or not isinstance(attribute, int | np.integer) or not (
            0 <= attribute < n_attr):
        raise ValueError(f"attribute must be a column index in [0, {n_attr}); got {attribute!r}.")
    if isinstance(n_sources, bool) or not isinstance(n_sources, int) or n_sources < 1:
        raise ValueError(f"n_sources must be a positive integer; got {n_sources!r}.")
    has = attrs[:, attribute].astype(bool)
    delta = attribute_direction(z, has, method=direction)
    names = list(attribute_names) if attribute_names is not None else [
        f"attr{j}" for j in range(n_attr)]
    rng = np.random.default_rng(seed)
    plans = [("add", ~has, 1.0, True)] + ([("remove", has, -1.0, False)] if remove else [])
    report = progress or (lambda f, m: None)
    total, done = len(plans) * (1 + len(strengths)), 0
    rows = []
    for direction, pool, sign, target in plans:
        idx = rng.choice(np.flatnonzero(pool), size=min(n_sources, int(pool.sum())),
                         replace=False)
        ref = _classify(classifier, decoder.decode(z[idx])) >= threshold  # (M, A)
        if ref.shape != (idx.size, n_attr):
            raise ValueError(f"the classifier must return (M, {n_attr}) probabilities, one "
                             f"per attribute; got {ref.shape}.")
        done += 1
        report(done / total, f"{direction} {names[attribute]}: reference reconstructions")
        others = np.arange(n_attr) != attribute
        for s in strengths:
            probs = _classify(classifier, decoder.decode(apply_direction(z[idx], delta,
                                                                         sign * float(s))))
            pred = probs >= threshold
            rows.append({
                "attribute": names[attribute], "direction": direction, "strength": float(s),
                "n": int(idx.size),
                "success": float((pred[:, attribute] == target).mean()),
                "preservation": float((pred[:, others] == ref[:, others]).mean())
                if others.any() else float("nan"),
                "baseline": float((ref[:, attribute] == target).mean()),
                "target_prob": float(probs[:, attribute].mean()),
            })
            done += 1
            report(done / total, f"{direction} {names[attribute]} ×{s:g}: success "
                                 f"{rows[-1]['success']:.0%}")
    return rows


def edit_operating_points(rows: Sequence[dict[str, Any]], *, target: float = 0.95,
                          fixed: float = 3.0) -> list[dict[str, Any]]:
    """Edits compared at equal success: each space at the weakest strength that succeeds.

    A space whose δ is longer succeeds at a lower strength and damages more at a fixed one, so
    comparing spaces at one strength mixes their scales. Here, per space (means over the
    attributes and directions scored at every strength): the first strength, in increasing
    order, whose mean success reaches ``target``, and the mean preservation there; beside it
    the paper's fixed-strength protocol.

    Parameters
    ----------
    rows : sequence of dict
        Edit-score rows (``space``, ``strength``, ``success``, ``preservation``, optionally
        ``kind``), as :func:`fisher_core.workspace.edit_scores` returns them.
    target : float, default=0.95
    fixed : float, default=3.0
        The fixed strength reported beside (Yan, Ho & Abbeel use 3).

    Returns
    -------
    list of dict
        One per space: ``space``, ``kind``, ``strength`` (None when no strength reaches the
        target), ``success`` and ``preservation`` there, ``fixed_strength``,
        ``fixed_success`` and ``fixed_preservation`` (None when that strength was not
        scored).
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target must be in (0, 1]; got {target!r}.")
    by_space: dict[str, dict[float, list[dict[str, Any]]]] = {}
    kinds: dict[str, str] = {}
    for r in rows:
        by_space.setdefault(r["space"], {}).setdefault(float(r["strength"]), []).append(r)
        kinds.setdefault(r["space"], r.get("kind", ""))
    out = []
    for space, strengths in by_space.items():
        means = {s: (float(np.mean([r["success"] for r in rs])),
                     float(np.mean([r["preservation"] for r in rs])))
                 for s, rs in sorted(strengths.items())}
        hit = next((s for s, (succ, _) in means.items() if succ >= target), None)
        fixed_pt = means.get(float(fixed))
        out.append({"space": space, "kind": kinds[space], "strength": hit,
                    "success": None if hit is None else means[hit][0],
                    "preservation": None if hit is None else means[hit][1],
                    "fixed_strength": float(fixed),
                    "fixed_success": None if fixed_pt is None else fixed_pt[0],
                    "fixed_preservation": None if fixed_pt is None else fixed_pt[1]})
    return out
