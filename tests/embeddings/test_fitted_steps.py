"""Fisher-vector embeddings whose last steps learn statistics from their rows (empirical
standardisation, whitening) keep the vectors before those steps, so probes can refit them
per fold; whitening is checked against the covariance of the vectors it whitens."""

from __future__ import annotations

import numpy as np
import pytest

from fisher_core.data import load_builtin
from fisher_core.embeddings import Embedding, fisher_vector_embedding
from fisher_core.fisher import FisherNormalizer
from fisher_core.workspace import Workspace


@pytest.fixture(scope="module")
def digits():
    return load_builtin("digits").subset(slice(0, 200))


def test_whitened_fisher_vectors_have_identity_covariance(digits):
    emb, gmm = fisher_vector_embedding(digits, n_components=2, patch=3, power=None, l2=False,
                                       whiten=16)
    assert emb.dim == 16 and emb.params["whiten"] == 16
    np.testing.assert_allclose(np.cov(emb.vectors.astype(np.float64), rowvar=False),
                               np.eye(16), atol=1e-3)
    # the base is the analytic Fisher vector before the whitening, as without it
    plain, _ = fisher_vector_embedding(digits, n_components=2, patch=3, power=None, l2=False,
                                       gmm=gmm)
    np.testing.assert_allclose(emb.base, plain.vectors, rtol=1e-5, atol=1e-6)
    assert emb.post == FisherNormalizer(power=None, whiten=16, l2=False).recipe()


def test_empirical_keeps_the_plain_gradient_as_base(digits):
    emb, gmm = fisher_vector_embedding(digits, n_components=2, patch=3,
                                       normalization="empirical")
    raw, _ = fisher_vector_embedding(digits, n_components=2, patch=3, normalization="none",
                                     power=None, l2=False, gmm=gmm)
    np.testing.assert_allclose(emb.base, raw.vectors, rtol=1e-5, atol=1e-7)
    z = (raw.vectors - raw.vectors.mean(0)) / raw.vectors.std(0)
    z = np.sign(z) * np.sqrt(np.abs(z))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(emb.vectors, z, atol=2e-4)
    analytic, _ = fisher_vector_embedding(digits, n_components=2, patch=3, gmm=gmm)
    assert analytic.base is None and analytic.post is None  # nothing learned from the rows


def test_base_survives_the_workspace_and_subsets(digits, tmp_path):
    emb, _ = fisher_vector_embedding(digits, n_components=2, patch=3, whiten=8)
    ws = Workspace(tmp_path)
    ws.save_embedding(emb, "w")
    back = ws.load_embedding("w")
    np.testing.assert_array_equal(back.base, emb.base)
    assert back.post == emb.post and back.metadata() == emb.metadata()
    part = back.subset(np.arange(10))
    np.testing.assert_array_equal(part.base, emb.base[:10])
    X, steps = part.probe_input()
    assert X is part.base and isinstance(steps, FisherNormalizer) and steps.whiten == 8


def test_whitening_wider_than_the_data_is_refused(digits):
    with pytest.raises(ValueError, match=r"whiten=500 exceeds min\(images, Fisher-vector "
                                         r"dimension\) = 46; choose at most 46"):
        fisher_vector_embedding(digits, n_components=2, patch=3, whiten=500)


def test_base_and_post_go_together():
    with pytest.raises(ValueError, match="base and Embedding.post go together"):
        Embedding(np.zeros((3, 2)), "d", "fisher_vector", base=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="base has 2 rows but vectors has 3"):
        Embedding(np.zeros((3, 2)), "d", "fisher_vector", base=np.zeros((2, 4)), post={})
