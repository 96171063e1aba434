"""Patch GMM model family: its density, descriptors and samples against independent references."""

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture as SkGMM

from fisher_core.fisher import GaussianMixture, PatchDescriptor
from fisher_core.models import ConfigError, PatchGMM, PatchGMMConfig, load_model, save_model


def _images(n=12, side=8, seed=0):
    return np.random.default_rng(seed).random((n, 1, side, side)).astype(np.float32)


def _fitted(pca=0, spatial=True, k=3, seed=0):
    images = _images()
    model = PatchGMM(PatchGMMConfig(height=8, width=8, n_components=k, pca=pca,
                                    spatial=spatial))
    cfg = model.config
    desc = PatchDescriptor(patch=cfg.patch, stride=cfg.stride, pca=pca or None,
                           spatial=spatial).fit(images)
    flat = desc.transform(images).reshape(-1, model.descriptor_dim)
    gmm = GaussianMixture(k, random_state=seed, dtype="float64").fit(flat)
    model.set_fitted(desc, gmm)
    return model, desc, gmm, images


@pytest.mark.parametrize("pca, spatial", [(0, True), (4, True), (5, False)])
def test_log_prob_is_the_sum_of_patch_log_densities(pca, spatial):
    model, desc, gmm, images = _fitted(pca, spatial)
    ref = SkGMM(3, covariance_type="diag")  # an independent scorer with the same parameters
    ref.weights_, ref.means_, ref.covariances_ = (
        np.asarray(a, np.float64) for a in (gmm.weights_, gmm.means_, gmm.covariances_))
    ref.precisions_cholesky_ = 1 / np.sqrt(ref.covariances_)
    sets = desc.transform(images.astype(np.float64))  # (N, L, d), float64
    expected = np.array([ref.score_samples(s).sum() for s in sets])
    got = model.log_prob(torch.from_numpy(images)).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_descriptors_match_patch_descriptor():
    model, desc, _, images = _fitted(pca=4)
    np.testing.assert_allclose(model.descriptors(torch.from_numpy(images)).numpy(),
                               desc.transform(images), rtol=1e-5, atol=1e-6)


def test_mixture_and_descriptor_round_trip():
    model, desc, gmm, images = _fitted(pca=4)
    back = model.mixture()
    for a, b in [(back.weights_, gmm.weights_), (back.means_, gmm.means_),
                 (back.covariances_, gmm.covariances_)]:
        np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(model.descriptor().transform(images), desc.transform(images))


def test_samples_are_images_and_seeded():
    model, *_ = _fitted(pca=4)
    a, b = model.sample(5, generator=3), model.sample(5, generator=3)
    assert a.shape == (5, 1, 8, 8) and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, model.sample(5, generator=4))


def test_spatial_samples_follow_the_components_positions():
    """Two components, one per image half: samples are bright left, dark right."""
    model = PatchGMM(PatchGMMConfig(height=8, width=8, n_components=2, patch=2, stride=2))
    gmm = GaussianMixture(2)
    gmm.weights_ = np.array([0.5, 0.5])
    gmm.means_ = np.array([[0.9] * 4 + [0.25, 0.5], [0.1] * 4 + [0.75, 0.5]])
    gmm.covariances_ = np.array([[1e-4] * 4 + [0.02, 0.1], [1e-4] * 4 + [0.02, 0.1]])
    model.set_fitted(None, gmm)
    x = model.sample(20, generator=0)
    assert float(x[..., :4].mean()) > 0.8 and float(x[..., 4:].mean()) < 0.2


def test_save_load_round_trip(tmp_path):
    model, _, _, images = _fitted(pca=4)
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m")
    x = torch.from_numpy(images)
    torch.testing.assert_close(back.log_prob(x), model.log_prob(x))
    assert back.n_parameters == 3 - 1 + 2 * 3 * 6


def test_unfitted_and_gradient_training_are_refused():
    model = PatchGMM(PatchGMMConfig(height=8, width=8))
    with pytest.raises(RuntimeError, match="not fitted yet.*fit_patch_gmm"):
        model.log_prob(torch.zeros(1, 1, 8, 8))
    with pytest.raises(TypeError, match="fitted by EM, not by gradient steps"):
        model.configure_optimizers(1e-3)


@pytest.mark.parametrize("field, value, message", [
    ("patch", 9, "patch must be at most the image side 8"),
    ("pca", 10, r"pca must be at most C·p·p = 9"),
    ("n_components", 0, r"n_components must be an integer in \[1,"),
    ("tol", -1.0, "tol must be a number >= 0"),
    ("spatial", 1, "spatial must be True or False"),
])
def test_config_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        PatchGMMConfig(height=8, width=8, **{field: value})


def test_auto_patch_follows_the_image_size():
    assert (PatchGMMConfig(height=8, width=8).patch, PatchGMMConfig(height=8, width=8).stride) \
        == (3, 1)
    assert (PatchGMMConfig().patch, PatchGMMConfig().stride) == (6, 2)
