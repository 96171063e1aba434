"""Fisher vectors of a trained patch GMM: the classical pipeline with the model's own recipe."""

import numpy as np
import pytest
import torch

from fisher_core.data import ImageDataset, load_builtin
from fisher_core.embeddings import fisher_vector_embedding, patch_gmm_embedding
from fisher_core.models import PatchGMM, PatchGMMConfig
from fisher_core.training import fit_patch_gmm
from fisher_core.workspace import Workspace, train_and_save


@pytest.fixture(scope="module")
def fitted():
    ds = load_builtin("digits").subset(np.arange(200))
    # dithered: exact-zero background patches would collapse a component to the variance
    # floor, where float32 Fisher vectors amplify round-off (a known limit of fisher_vector)
    noise = np.random.default_rng(0).uniform(0, 0.05, ds.images.shape).astype(np.float32)
    ds = ImageDataset(np.clip(ds.images + noise, 0, 1), labels=ds.labels, name="dithered")
    model = PatchGMM(PatchGMMConfig(height=8, width=8, n_components=5, pca=6))
    fit_patch_gmm(model, ds.images, seed=0)
    return ds, model


@pytest.mark.parametrize("normalization", ["analytic", "empirical", "none"])
def test_equals_the_pipeline_given_the_trained_mixture(fitted, normalization):
    ds, model = fitted
    # power=None: the square root would magnify float32 round-off of posteriors near zero
    ours = patch_gmm_embedding(model, ds.images, normalization=normalization, power=None,
                               chunk=64)
    # the reference refits nothing: same PCA (same seed and subsample) and the model's GMM
    ref, _ = fisher_vector_embedding(ds, patch=3, stride=1, pca=6, gmm=model.mixture(),
                                     normalization=normalization, power=None)
    # the σ block comes from float32 raw moments: ~1e-4 absolute where σ is small
    np.testing.assert_allclose(ours.vectors, ref.vectors, rtol=1e-4, atol=5e-4)
    assert ours.kind == "fisher_vector" and ours.dim == 5 * (1 + 2 * 8)


def test_errors(fitted):
    ds, model = fitted
    with pytest.raises(TypeError, match="model must be a PatchGMM"):
        patch_gmm_embedding(torch.nn.Linear(2, 2), ds.images)
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 8, 8\)"):
        patch_gmm_embedding(model, np.zeros((2, 1, 16, 16), np.float32))
    with pytest.raises(ValueError, match="normalization must be 'analytic', 'empirical'"):
        patch_gmm_embedding(model, ds.images, normalization="l2")


def test_train_and_save_has_no_resume_for_em(tmp_path):
    ds = load_builtin("digits").subset(np.arange(100))
    with pytest.raises(ValueError, match="fitted by EM in one go; there is no interrupted run"):
        train_and_save(ds, "gmm", workspace=Workspace(tmp_path), name="g", resume=True)
