"""Linear probes and the Fisher-vector normalisation ablation, against a hand-written
cross-validation loop with scikit-learn's pieces."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from fisher_core.data import load_builtin
from fisher_core.metrics import (
    fisher_vector_ablation,
    knn_probe,
    linear_probe,
    normalization_ablation,
    probe_embeddings,
)


def _data(n=120, k=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, k)) + 1.5 * np.eye(3, k)[y]
    return X.astype(np.float32), y


def _loop(X, y, folds, seed, scale=False):
    accs = []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        a, b = X[tr], X[te]
        if scale:
            sc = StandardScaler().fit(a)  # training-fold statistics only
            a, b = sc.transform(a), sc.transform(b)
        clf = LogisticRegression(max_iter=500).fit(a, y[tr])
        accs.append((clf.predict(b) == y[te]).mean())
    return np.array(accs)


def test_linear_probe_is_the_stratified_cv_loop():
    X, y = _data()
    r = linear_probe(X, y, cv=4, seed=3)
    ref = _loop(X, y, 4, 3)
    np.testing.assert_allclose(r.folds, ref)
    assert r.accuracy == pytest.approx(ref.mean()) and r.std == pytest.approx(ref.std())
    assert (r.n, r.dim) == (120, 6)
    with pytest.raises(ValueError, match="single class"):
        linear_probe(X, np.zeros(120))


def test_knn_probe_is_a_cosine_vote_on_the_same_folds():
    X, y = _data(n=90, k=5, seed=1)
    r = knn_probe(X, y, k=5, cv=3, seed=2)
    accs = []
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=2).split(X, y):
        unit = X / np.linalg.norm(X, axis=1, keepdims=True)
        correct = 0
        for i in te:  # the naive vote: the 5 most cosine-similar training rows
            sims = unit[tr] @ unit[i]
            top = tr[np.argsort(-sims, kind="stable")[:5]]
            correct += np.bincount(y[top], minlength=3).argmax() == y[i]
        accs.append(correct / len(te))
    np.testing.assert_allclose(r.folds, accs)
    rows = probe_embeddings(X, {"e": X * 3.0}, y, cv=3, seed=2)  # cosine: scale-free
    assert rows[0]["knn_accuracy"] == pytest.approx(rows[1]["knn_accuracy"])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        knn_probe(X, y, k=0)


def test_ablation_empirical_uses_training_fold_statistics_and_reports_honest_progress():
    X, y = _data(seed=1)
    seen = []
    rows = normalization_ablation(X, 2 * X, y, cv=3, seed=0,
                                  progress=lambda f, m: seen.append((f, m)))
    assert len(rows) == 12
    plain = next(r for r in rows if r["normalization"] == "empirical"
                 and not r["power"] and not r["l2"])
    assert plain["accuracy"] == pytest.approx(_loop(X, y, 3, 0, scale=True).mean())
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [m for _, m in seen].index("done") == len(seen) - 1  # "done" only at the end


def test_fv_ablation_progress_never_says_done_before_the_end():
    """Issue 15: the ablation showed "done" with its bar at 35 % for minutes (the inner
    Fisher-vector step's own "done")."""
    ds = load_builtin("digits").subset(slice(0, 150))
    seen = []
    fisher_vector_ablation(ds, ds.labels, n_components=2, patch=3, cv=2, max_images=None,
                           progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    done = [f for f, m in seen if m == "done"]
    assert done == [1.0]


def _fitted_embedding(X, whiten=None):
    from fisher_core.embeddings import Embedding
    from fisher_core.fisher import FisherNormalizer

    steps = FisherNormalizer(standardize=True, power=0.5, whiten=whiten, l2=True)
    return Embedding(steps.fit_transform(X), "d", "fisher_vector", base=X,
                     post=steps.recipe())


def test_probe_refits_data_fitted_steps_on_training_folds_only(monkeypatch):
    """Issue 18: an "empirical" (or whitened) embedding saved with statistics of all rows
    must not let a probe's held-out rows shape its features."""
    from fisher_core.fisher import FisherNormalizer

    X, y = _data(seed=2)
    emb = _fitted_embedding(X, whiten=4)
    seen = []
    fit = FisherNormalizer.fit

    def spy(self, Z, y=None):
        seen.append(np.asarray(Z).copy())
        return fit(self, Z, y)

    monkeypatch.setattr(FisherNormalizer, "fit", spy)
    r = linear_probe(emb, y, cv=4, seed=1)
    folds = list(StratifiedKFold(4, shuffle=True, random_state=1).split(X, y))
    assert len(seen) == 4
    for Z, (tr, _te) in zip(seen, folds, strict=True):
        np.testing.assert_array_equal(Z, X[tr])  # the training rows, before any step
    # and the result is the hand-written loop that refits the steps per fold
    accs = []
    for tr, te in folds:
        steps = fit(FisherNormalizer(standardize=True, power=0.5, whiten=4, l2=True), X[tr])
        clf = LogisticRegression(max_iter=500).fit(steps.transform(X[tr]), y[tr])
        accs.append((clf.predict(steps.transform(X[te])) == y[te]).mean())
    np.testing.assert_allclose(r.folds, accs)
    assert (r.n, r.dim) == (120, 6)  # the base's width: the whitening is refitted inside


def test_probe_embeddings_and_knn_take_embeddings():
    X, y = _data(seed=3)
    emb = _fitted_embedding(X)
    rows = probe_embeddings(X, {"fv": emb, "plain": emb.vectors}, y, cv=3)
    assert [r["embedding"] for r in rows] == ["raw pixels", "fv", "plain"]
    assert rows[1]["accuracy"] == pytest.approx(linear_probe(emb, y, cv=3).accuracy)
    assert rows[1]["knn_accuracy"] == pytest.approx(knn_probe(emb, y, cv=3).accuracy)
    assert rows[2]["accuracy"] == pytest.approx(linear_probe(emb.vectors, y, cv=3).accuracy)


def test_ablation_whitening_rows_fit_the_pca_on_training_folds():
    from sklearn.decomposition import PCA

    X, y = _data(n=150, k=10, seed=4)
    rows = normalization_ablation(X, 2 * X, y, cv=3, seed=0, whiten=5)
    assert len(rows) == 15
    white = [r for r in rows if r["whiten"] == 5]
    assert [r["normalization"] for r in white] == ["none", "analytic", "empirical"]
    assert all(r["power"] and r["l2"] for r in white)
    accs = []
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=0).split(X, y):
        root = np.sign(X) * np.sqrt(np.abs(X))
        pca = PCA(5, whiten=True, random_state=0).fit(root[tr])

        def unit(z):
            return z / np.linalg.norm(z, axis=1, keepdims=True)

        clf = LogisticRegression(max_iter=500).fit(unit(pca.transform(root[tr])), y[tr])
        accs.append((clf.predict(unit(pca.transform(root[te]))) == y[te]).mean())
    assert white[0]["accuracy"] == pytest.approx(np.mean(accs))


def test_fv_ablation_refuses_a_whitening_wider_than_a_fold():
    ds = load_builtin("digits").subset(slice(0, 60))
    with pytest.raises(ValueError, match=r"whiten=500 exceeds what a training fold can "
                                         r"whiten .* = 40\); choose at most 40"):
        fisher_vector_ablation(ds, ds.labels, n_components=2, patch=3, cv=3, max_images=None,
                               whiten=500)
