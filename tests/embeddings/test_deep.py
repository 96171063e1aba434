"""Deep embeddings: Fisher scores, activations, latent means — against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fisher_core.embeddings import (
    activation_embedding,
    default_activation_layer,
    fisher_score_embedding,
    latent_embedding,
)
from fisher_core.models import VAE, PixelCNN, PixelCNNConfig, VAEConfig

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _pixelcnn() -> PixelCNN:
    torch.manual_seed(0)
    return PixelCNN(PixelCNNConfig(channels=1, height=6, width=6, hidden=4, n_blocks=2,
                                   head_hidden=8))


def _images(n: int = 10, size: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.integers(0, 4, (n, 1, size, size)) / 3).astype(np.float32)


def _loop_scores(model, x) -> np.ndarray:
    rows = []
    for xi in torch.from_numpy(x):
        model.zero_grad()
        model.log_prob(xi[None]).sum().backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]).numpy())
    return np.stack(rows)


def test_exact_scores_with_centering_and_fim_diag_match_a_backward_loop():
    model, x = _pixelcnn(), _images()
    g = _loop_scores(model, x).astype(np.float64)
    emb = fisher_score_embedding(model, x, dim=None, projection=None, normalize="fim_diag",
                                 center=True, dataset_key="toy")
    centred = g - g.mean(0)
    expected = centred / (np.sqrt((centred**2).mean(0)) + 1e-6)
    np.testing.assert_allclose(emb.vectors, expected, rtol=2e-3, atol=2e-3)
    assert (emb.kind, emb.dataset, emb.model) == ("fisher", "toy", "pixelcnn")
    assert emb.normalization == "center+fim_diag"


def test_fim_and_centring_from_model_samples_match_a_backward_loop():
    """I = E_{x∼pθ}[U Uᵀ]: mean and diagonal FIM from the model's own samples."""
    model, x = _pixelcnn(), _images()
    samples = model.sample(30, generator=torch.Generator().manual_seed(4)).numpy()
    ref = _loop_scores(model, samples).astype(np.float64)
    g = _loop_scores(model, x).astype(np.float64)
    seen = []
    emb = fisher_score_embedding(model, x, dim=None, projection=None, normalize="fim_diag",
                                 center=True, fim_from="samples", n_fim_samples=30, seed=4,
                                 progress=lambda f, m: seen.append((f, m)))
    mean, var = ref.mean(0), ref.var(0)
    np.testing.assert_allclose(emb.vectors, (g - mean) / (np.sqrt(var) + 1e-6), rtol=2e-3,
                               atol=2e-3)
    assert emb.normalization == "center+fim_diag+from30samples"
    assert any("model samples" in m for _, m in seen)
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0
    with pytest.raises(ValueError, match="fim_from must be 'data' or 'samples'"):
        fisher_score_embedding(model, x, fim_from="prior")
    with pytest.raises(ValueError, match="n_fim_samples must be an integer >= 2"):
        fisher_score_embedding(model, x, fim_from="samples", n_fim_samples=1)


def test_projected_scores_are_seeded_and_preserve_distances():
    model, x = _pixelcnn(), _images(12)
    g = _loop_scores(model, x)
    a = fisher_score_embedding(model, x, dim=2048, normalize=None, center=False, seed=3)
    b = fisher_score_embedding(model, x, dim=2048, normalize=None, center=False, seed=3)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    d_true = np.linalg.norm(g[:, None] - g[None], axis=-1)
    d_proj = np.linalg.norm(a.vectors[:, None] - a.vectors[None], axis=-1)
    off = ~np.eye(len(x), dtype=bool)
    ratio = d_proj[off] / d_true[off]
    assert np.all(np.abs(ratio - 1) < 0.25), ratio  # JL at dim 2048: ε ≈ 0.1 typical


def test_activations_equal_a_manual_hook_and_pooling():
    model, x = _pixelcnn(), _images()
    assert default_activation_layer(model) == "head_in"
    seen = []
    h = model.head_in.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    with torch.no_grad():
        model.log_prob(torch.from_numpy(x))
    h.remove()
    act = seen[0]  # (N, D, H, W)
    for pool, ref in [("mean", act.mean((2, 3))), ("max", act.amax((2, 3))),
                      ("none", act.flatten(1))]:
        emb = activation_embedding(model, x, pool=pool, batch_size=4)
        np.testing.assert_allclose(emb.vectors, ref.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pool must be one of"):
        activation_embedding(model, x, pool="median")
    with pytest.raises(ValueError, match="is not a module of PixelCNN"):
        activation_embedding(model, x, layer="nope")


def test_latent_means_and_errors():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(channels=1, height=8, width=8, latent_dim=3, hidden=4))
    x = _images(7, size=8)
    emb = latent_embedding(vae, x, batch_size=3)
    with torch.no_grad():
        ref = vae.latent_means(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(emb.vectors, ref, rtol=1e-5, atol=1e-6)
    assert emb.kind == "latent"
    with pytest.raises(ValueError, match="latent embeddings need a VAE"):
        latent_embedding(_pixelcnn(), _images())
    # the ELBO is stochastic: its Fisher scores are reproducible through the seed
    a = fisher_score_embedding(vae, x, dim=64, seed=1).vectors
    b = fisher_score_embedding(vae, x, dim=64, seed=1).vectors
    np.testing.assert_array_equal(a, b)
