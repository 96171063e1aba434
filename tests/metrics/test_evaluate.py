"""FID-vs-α and attribute-edit scores against direct computations and planted structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fisher_core.explore import Decoder, DecoderConfig
from fisher_core.metrics import (
    DomainFeatureExtractor,
    FeatureExtractorConfig,
    attribute_edit_scores,
    edit_operating_points,
    fid_vs_alpha,
    frechet_distance,
    interpolation_ratios,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _nets(k: int = 4):
    torch.manual_seed(0)
    dec = Decoder(DecoderConfig(in_dim=k, height=8, width=8, hidden=16, base_channels=8,
                                min_channels=4))
    ext = DomainFeatureExtractor(FeatureExtractorConfig(height=8, width=8, n_attributes=2,
                                                        feature_dim=5, hidden=4, dataset="t"))
    return dec, ext


def test_fid_curve_ends_equal_fid_of_directly_decoded_endpoints():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((30, 4)).astype(np.float32) * 2
    real = rng.uniform(0, 1, (40, 1, 8, 8)).astype(np.float32)
    dec, ext = _nets()
    seen = []
    out = fid_vs_alpha(z, dec, real, ext, n_pairs=25, alphas=[0.0, 0.5, 1.0], seed=3,
                       progress=lambda f, m: seen.append(f))
    pairs = out["pairs"]
    assert pairs.shape == (25, 2) and (pairs[:, 0] != pairs[:, 1]).all()
    assert out["extractor"] == "domain-cnn(t)" and out["n_real"] == 40 and out["n_pairs"] == 25
    real_f = ext.features(real)

    def direct(zs):
        return frechet_distance(real_f, ext.features(dec.decode(zs)))

    assert out["fid"][0] == pytest.approx(direct(z[pairs[:, 0]]), rel=1e-6)
    assert out["fid"][2] == pytest.approx(direct(z[pairs[:, 1]]), rel=1e-6)
    mid = 0.5 * z[pairs[:, 0]].astype(np.float64) + 0.5 * z[pairs[:, 1]]
    assert out["fid"][1] == pytest.approx(direct(mid.astype(np.float32)), rel=1e-5)
    assert seen == sorted(seen) and seen[-1] == 1.0
    again = fid_vs_alpha(z, dec, real, ext, n_pairs=25, alphas=[0.0, 0.5, 1.0], seed=3)
    assert again["fid"] == out["fid"]
    with pytest.raises(ValueError, match="n_pairs must be an integer ≥ 2"):
        fid_vs_alpha(z, dec, real, ext, n_pairs=1)


def test_repeated_draws_are_independent_single_draws():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((30, 4)).astype(np.float32)
    real = rng.uniform(0, 1, (40, 1, 8, 8)).astype(np.float32)
    dec, ext = _nets()
    out = fid_vs_alpha(z, dec, real, ext, n_pairs=10, alphas=[0.0, 1.0], seed=4, repeats=3)
    singles = np.array([fid_vs_alpha(z, dec, real, ext, n_pairs=10, alphas=[0.0, 1.0],
                                     seed=4 + r)["fid"] for r in range(3)])
    np.testing.assert_allclose(out["fid_draws"], singles, rtol=1e-12)
    np.testing.assert_allclose(out["fid"], singles.mean(0), rtol=1e-12)
    np.testing.assert_allclose(out["fid_std"], singles.std(0), rtol=1e-9)
    with pytest.raises(ValueError, match="repeats must be an integer ≥ 1"):
        fid_vs_alpha(z, dec, real, ext, n_pairs=10, repeats=0)


def test_interpolation_ratios_by_hand():
    rows = [{"space": s, "kind": k, "alpha": a, "fid": f} for s, k, pts in [
        ("fisher", "fisher", [(0.0, 10.0), (0.5, 30.0), (1.0, 14.0)]),
        ("px", "pixels", [(1.0, 20.0), (0.0, 20.0), (0.5, 120.0)]),  # order of rows is free
    ] for a, f in pts]
    fisher, px = interpolation_ratios(rows)
    assert fisher["endpoint_fid"] == 12.0 and fisher["peak_fid"] == 30.0
    assert fisher["ratio"] == pytest.approx(2.5) and px["ratio"] == pytest.approx(6.0)
    assert fisher["ratio_vs_reference"] == pytest.approx(2.5 / 6.0)
    assert px["ratio_vs_reference"] == pytest.approx(1.0) and px["peak_alpha"] == 0.5
    assert interpolation_ratios(rows[:3])[0]["ratio_vs_reference"] is None  # no pixel space
    with pytest.raises(ValueError, match="has 1 FID point"):
        interpolation_ratios(rows[:1])


class _Identity:
    """'Decodes' z into a 1×1×k image sigmoid(z), so an oracle can read z back."""

    def decode(self, z):
        z = np.asarray(z, dtype=np.float64)
        return (1 / (1 + np.exp(-z)))[:, None, None, :]  # (M, 1, 1, k)


def _planted(n: int = 600, k: int = 8, seed: int = 0, balanced: bool = False):
    """Attribute j present ⇔ z·u_j ≈ +2, absent ⇔ ≈ −2, along orthonormal u_0..u_2.
    ``balanced``: every attribute combination equally often, so δ has no component along the
    other attributes' directions beyond noise."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.standard_normal((k, 3)))[0].T  # (3, k), orthonormal rows
    if balanced:
        attrs = (np.arange(n)[:, None] >> np.arange(3) & 1).astype(bool)  # n % 8 == 0
    else:
        attrs = rng.random((n, 3)) < 0.5
    z = (4.0 * attrs - 2.0) @ u + 0.2 * rng.standard_normal((n, k))
    return z.astype(np.float32), attrs, u


def _oracle(u):
    def classify(images):
        z = np.log(images / (1 - images))[:, 0, 0, :]  # (M, k): logit undoes the sigmoid
        return 1 / (1 + np.exp(-5.0 * (z @ u.T)))  # (M, 3)
    return classify


def test_edit_along_a_planted_direction_succeeds_and_preserves_the_others():
    z, attrs, u = _planted(balanced=True)
    rows = attribute_edit_scores(z, attrs, _Identity(), _oracle(u), attribute=0,
                                 strengths=(1, 3), n_sources=50, attribute_names=list("abc"))
    assert [(r["direction"], r["strength"]) for r in rows] == [
        ("add", 1.0), ("add", 3.0), ("remove", 1.0), ("remove", 3.0)]
    for r in rows:
        assert r["attribute"] == "a" and r["n"] == 50
        assert r["success"] == 1.0 and r["preservation"] == 1.0 and r["baseline"] == 0.0
    assert rows[1]["target_prob"] > 0.99 and rows[3]["target_prob"] < 0.01


def test_partial_success_matches_a_naive_count():
    z, attrs, u = _planted(seed=1)
    s = 0.5  # moves sources only half-way: some flip, some do not
    rows = attribute_edit_scores(z, attrs, _Identity(), _oracle(u), attribute=1,
                                 strengths=(s,), n_sources=10_000, remove=False)
    (row,) = rows
    zd = z.astype(np.float64)
    delta = zd[attrs[:, 1]].mean(0) - zd[~attrs[:, 1]].mean(0)
    src = zd[~attrs[:, 1]]
    before = (src @ u.T) > 0  # oracle labels of the unedited reconstructions
    after = ((src + s * delta) @ u.T) > 0
    assert row["n"] == src.shape[0]
    assert 0.05 < row["success"] < 0.95
    assert row["success"] == pytest.approx(after[:, 1].mean())
    others = [0, 2]
    assert row["preservation"] == pytest.approx((after[:, others] == before[:, others]).mean())
    assert row["baseline"] == pytest.approx(before[:, 1].mean())


def test_edit_scores_check_their_inputs():
    z, attrs, u = _planted(n=40)
    with pytest.raises(ValueError, match=r"attribute must be a column index in \[0, 3\)"):
        attribute_edit_scores(z, attrs, _Identity(), _oracle(u), attribute=3)
    with pytest.raises(ValueError, match=r"must return \(M, 3\) probabilities"):
        attribute_edit_scores(z, attrs, _Identity(), lambda x: np.zeros((len(x), 2)),
                              attribute=0)
    with pytest.raises(ValueError, match=r"attributes must be \(N, A\) with N = 40"):
        attribute_edit_scores(z, attrs[:5], _Identity(), _oracle(u), attribute=0)
    seen = []
    attribute_edit_scores(z, attrs, _Identity(), _oracle(u), attribute=2, strengths=(1, 2),
                          progress=lambda f, m: seen.append((f, m)))
    assert [f for f, _ in seen] == pytest.approx(np.arange(1, 7) / 6)
    assert seen[-1][1].startswith("remove attr2 ×2")


def test_edit_operating_points_by_hand():
    rows = []
    for space, table in [("fisher", {1.0: (0.90, 0.97), 2.0: (0.96, 0.93), 3.0: (1.0, 0.85)}),
                         ("pixels", {1.0: (0.50, 0.99), 3.0: (0.94, 0.90)})]:
        for strength, (succ, pres) in table.items():
            for direction, shift in (("add", 0.02), ("remove", -0.02)):  # means are the table
                rows.append({"space": space, "kind": space, "strength": strength,
                             "direction": direction, "success": succ + shift,
                             "preservation": pres - shift})
    fisher, pixels = edit_operating_points(rows)
    assert fisher["strength"] == 2.0
    assert fisher["success"] == pytest.approx(0.96) and fisher["preservation"] == pytest.approx(
        0.93)
    assert fisher["fixed_preservation"] == pytest.approx(0.85)
    assert pixels["strength"] is None and pixels["preservation"] is None  # never reaches 95 %
    assert pixels["fixed_success"] == pytest.approx(0.94)
    with pytest.raises(ValueError, match=r"target must be in \(0, 1\]"):
        edit_operating_points(rows, target=0)
