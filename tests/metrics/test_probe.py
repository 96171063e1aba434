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
