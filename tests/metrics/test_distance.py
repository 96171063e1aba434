"""Distances against independent references: pytorch-fid's formula, naive loops."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from fisher_core.metrics import (
    FrechetAccumulator,
    class_distance_matrix,
    fisher_distance,
    fisher_similarity,
    frechet_distance,
)


def pytorch_fid_reference(x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> float:
    """The formula of pytorch-fid's calculate_frechet_distance, re-typed here."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))  # SciPy ≥ 1.18 has no disp=; the retry is the same
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [2, 16, 64])
def test_frechet_matches_pytorch_fid_formula(d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(500, d)) @ rng.normal(size=(d, d))
    b = rng.normal(loc=0.3, size=(400, d)) @ rng.normal(size=(d, d))
    ours = frechet_distance(a, b)
    ref = pytorch_fid_reference(a, b)
    assert ours == pytest.approx(ref, rel=1e-6)


def test_frechet_closed_form_for_diagonal_gaussians():
    # With exact diagonal covariances, FD = ‖μ1−μ2‖² + Σ (σ1 − σ2)².
    from fisher_core.metrics.distance import frechet_from_stats

    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert frechet_from_stats(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected)


def test_frechet_singular_covariances_stay_real_and_nonnegative():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 64))  # fewer samples than dimensions: rank-19 covariance
    b = rng.normal(size=(20, 64))
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_accumulator_equals_batch():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 8)), rng.normal(1.0, 2.0, size=(200, 8))
    acc = FrechetAccumulator(8)
    for chunk in np.array_split(a, 7):
        acc.update(chunk, real=True)
    for chunk in np.array_split(b, 3):
        acc.update(chunk, real=False)
    assert acc.compute() == pytest.approx(frechet_distance(a, b), rel=1e-9)
    with pytest.raises(ValueError, match="feats must be \\(N, 8\\)"):
        acc.update(np.zeros((3, 4)), real=True)


def test_fisher_distance_and_class_matrix_against_loops():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(90, 5))
    y = np.repeat([0, 1, 2], 30)
    x[y == 1] += 2.0
    classes, dm = class_distance_matrix(x, y)
    for i in range(3):
        for j in range(3):
            ref = np.sqrt(sum((x[y == i][:, k].mean() - x[y == j][:, k].mean()) ** 2
                              for k in range(5)))
            assert dm[i, j] == pytest.approx(ref, abs=1e-9)
    assert fisher_distance(x[y == 0], x[y == 1]) == pytest.approx(dm[0, 1])
    assert dm[0, 1] > dm[0, 2]


def test_fisher_similarity_naive():
    rng = np.random.default_rng(3)
    r, f = rng.normal(size=(50, 4)), rng.normal(0.5, 1.0, size=(60, 4))
    gap = np.mean([(r[:, j].mean() - f[:, j].mean()) ** 2 / f[:, j].var() for j in range(4)])
    assert fisher_similarity(r, f) == pytest.approx(np.exp(-10 * gap), rel=1e-6)
    assert fisher_similarity(f, f) == pytest.approx(1.0)


@pytest.mark.parametrize(("args", "msg"), [
    ((np.zeros((1, 3)), np.zeros((5, 3))), "N ≥ 2"),
    ((np.zeros((4, 3)), np.zeros((5, 2))), "feature dimensions differ"),
    ((np.full((4, 3), np.nan), np.zeros((5, 3))), "NaN"),
])
def test_frechet_errors(args, msg):
    with pytest.raises(ValueError, match=msg):
        frechet_distance(*args)
