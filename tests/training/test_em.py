"""Fitting the patch GMM by EM: the same mixture as one GaussianMixture fit, reported like the
training loop; choosing K."""

import threading

import numpy as np
import pytest

from fisher_core.data import load_builtin
from fisher_core.fisher import GaussianMixture, PatchDescriptor
from fisher_core.models import PatchGMM, PatchGMMConfig
from fisher_core.training import fit_patch_gmm, sweep_components


@pytest.fixture(scope="module")
def digits():
    return load_builtin("digits").images[:300]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_em_iterations_equal_one_fit_of_the_mixture(digits):
    model = PatchGMM(PatchGMMConfig(height=8, width=8, n_components=6, max_iter=15,
                                    tol=0.0, max_descriptors=10**6))
    events = []
    result = fit_patch_gmm(model, digits, val_images=digits[:50], seed=3,
                           callback=events.append, n_samples=2)
    # the reference: the same descriptors (all of them), one fit of 15 iterations
    flat = PatchDescriptor(patch=3, stride=1, random_state=3).fit_transform(digits)
    ref = GaussianMixture(6, random_state=3, max_iter=15, tol=0.0).fit(
        flat.reshape(-1, flat.shape[2]))
    order = np.argsort(ref.means_[:, 0])
    got = model.mixture()
    np.testing.assert_allclose(np.sort(got.means_[:, 0]), ref.means_[order, 0], rtol=1e-5,
                               atol=1e-6)
    assert result.epochs_completed == 15 and result.stopped_reason == "completed"
    assert [e.kind for e in events[:2]] == ["step", "epoch"] and events[-1].kind == "end"
    # the reported loss is −(mean log-likelihood per descriptor) of the fit
    assert events[-3].loss == pytest.approx(-ref.lower_bound_, rel=1e-5)
    # held-out NLL per image is −Σ over its patches of log p(descriptor)
    val = PatchDescriptor(patch=3, stride=1).fit(digits).transform(digits[:50])
    naive = -np.mean([got.score_samples(s).sum() for s in val])
    assert result.best_val_nll == pytest.approx(naive, rel=1e-6)
    assert events[-2].samples.shape == (2, 1, 8, 8)
    assert np.isfinite(result.history["bic"])


def test_convergence_and_cancel(digits):
    model = PatchGMM(PatchGMMConfig(height=8, width=8, n_components=4, tol=1e-2))
    result = fit_patch_gmm(model, digits)
    assert result.stopped_reason == "completed" and "converged" in result.message
    stop = threading.Event()

    def cancel_after_two(event):
        if event.kind == "epoch" and event.epoch == 2:
            stop.set()

    model = PatchGMM(PatchGMMConfig(height=8, width=8, n_components=4, tol=0.0))
    result = fit_patch_gmm(model, digits, callback=cancel_after_two, cancel=stop)
    assert result.stopped_reason == "cancelled" and result.epochs_completed == 2
    assert bool(model.fitted)


def test_sweep_scores_every_k_like_a_direct_fit(digits):
    rows = sweep_components(digits, [2, 6], seed=1, max_descriptors=5_000)
    assert [r["n_components"] for r in rows] == [2, 6]
    assert rows[1]["train_ll"] > rows[0]["train_ll"]
    n = 5_000
    for r in rows:  # BIC from the reported likelihood and the parameter count
        k, d = r["n_components"], 11
        assert r["bic"] == pytest.approx(-2 * r["train_ll"] * n + (2 * k * d + k - 1)
                                         * np.log(n), rel=1e-9)


@pytest.mark.parametrize("ks, kwargs, message", [
    ([], {}, "n_components must list integers >= 1"),
    ([2], {"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\)"),
    ([2_000], {"max_descriptors": 1_000}, "K = 2000 is more than the 1,000 training"),
])
def test_sweep_errors(digits, ks, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sweep_components(digits, ks, **kwargs)
