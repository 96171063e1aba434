"""Interpolation and attribute directions on embeddings with known structure."""

from __future__ import annotations

import numpy as np
import pytest

from fisher_core.explore import apply_direction, attribute_direction, interpolate


def test_linear_interpolation_and_extrapolation():
    a, b = np.array([0.0, 2.0]), np.array([4.0, -2.0])
    out = interpolate(a, b, [-0.5, 0.0, 0.25, 1.0, 1.5])
    np.testing.assert_allclose(out, [[-2, 4], [0, 2], [1, 1], [4, -2], [6, -4]])


def test_slerp_keeps_the_unit_circle_and_ends():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    out = interpolate(a, b, np.linspace(0, 1, 5), method="slerp")
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out[2], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(out[[0, -1]], [a, b], atol=1e-6)
    # norms are interpolated linearly
    out = interpolate(2 * a, 4 * b, [0.5], method="slerp")
    assert np.linalg.norm(out) == pytest.approx(3.0)


def test_attribute_direction_recovers_a_planted_shift():
    rng = np.random.default_rng(0)
    n, k = 2000, 6
    attr = rng.random(n) < 0.5
    shift = np.array([0, 3.0, 0, 0, -1.0, 0])
    z = rng.normal(size=(n, k)) + attr[:, None] * shift
    delta = attribute_direction(z, attr)
    np.testing.assert_allclose(delta, shift, atol=0.15)
    # explicit groups by index give the same as the boolean mask
    d2 = attribute_direction(z, np.flatnonzero(attr), np.flatnonzero(~attr))
    np.testing.assert_allclose(d2, delta, atol=1e-6)
    # moving a negative example by δ makes it look positive to a linear classifier
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression().fit(z, attr)
    edited = apply_direction(z[~attr][:200], delta, 1.0)
    assert clf.predict(edited).mean() > 0.9


def test_apply_direction_shapes_follow_inputs():
    z, d = np.zeros((3, 2)), np.array([1.0, -1.0])
    grid = apply_direction(z, d, [0, 1, 3])
    assert grid.shape == (3, 3, 2)
    np.testing.assert_allclose(grid[2, 1], [3, -3])
    np.testing.assert_allclose(apply_direction(z[0], d, 2.0), [2, -2])


def test_errors():
    with pytest.raises(ValueError, match="both groups need at least one example"):
        attribute_direction(np.zeros((4, 2)), np.ones(4, bool))
    with pytest.raises(ValueError, match="method must be 'linear' or 'slerp'"):
        interpolate(np.zeros(2), np.ones(2), [0.5], method="cubic")
    with pytest.raises(ValueError, match="delta must be \\(k,\\) with k = 2"):
        apply_direction(np.zeros((3, 2)), np.zeros(3), 1.0)


def test_whitened_direction_against_a_naive_loop():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 4)) * np.array([1.0, 5.0, 0.2, 1.0])
    pos = rng.random(50) < 0.4
    got = attribute_direction(z, pos, method="whitened")
    mean_diff = z[pos].mean(0) - z[~pos].mean(0)
    within = np.array([(((z[pos, d] - z[pos, d].mean()) ** 2).sum()
                        + ((z[~pos, d] - z[~pos, d].mean()) ** 2).sum()) / 50
                       for d in range(4)])
    white = mean_diff / (within + 1e-6 * within.mean())  # the documented tiny ridge
    expected = white * (mean_diff @ mean_diff) / (white @ mean_diff)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert float(got @ mean_diff) == pytest.approx(float(mean_diff @ mean_diff), rel=1e-5)
    with pytest.raises(ValueError, match="method must be 'mean' or 'whitened'"):
        attribute_direction(z, pos, method="lda")
