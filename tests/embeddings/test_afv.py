"""Adversarial Fisher vectors and the D-pool baseline, checked against naive per-example
``.backward()`` loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fisher_core.embeddings import (
    activation_embedding,
    adversarial_fisher_vectors,
    afv_embedding,
    afv_scorer,
    d_pool_embedding,
    discriminator_pool,
    generator_samples,
)
from fisher_core.models import EBGAN, VAE, EBGANConfig, VAEConfig

EPS = 1e-6  # added to √I, as in the reference code


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _gan(dtype=torch.float64, seed: int = 0, **kw) -> EBGAN:
    torch.manual_seed(seed)
    cfg = dict(height=8, width=8, latent_dim=4, g_width=4, d_width=3) | kw
    return EBGAN(EBGANConfig(**cfg)).to(dtype)


def _naive_grads(model: EBGAN, images: torch.Tensor) -> torch.Tensor:
    """∇θ D(x_i) over D's parameters, one backward pass per example: (N, P)."""
    names = model.discriminator_parameter_names()
    params = dict(model.named_parameters())
    model.eval()
    rows = []
    for i in range(images.shape[0]):
        for n in names:
            params[n].grad = None
        model.log_prob(images[i : i + 1]).sum().backward()
        rows.append(torch.cat([params[n].grad.flatten() for n in names]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def _naive_afv(model, images, fake) -> tuple[torch.Tensor, torch.Tensor]:
    """The AFVs (N, P) and, per entry, the rounding error the engine may make.

    The engine accumulates per-example gradients in float32 whatever the model's dtype, and a
    parameter whose gradient hardly varies across generator samples (a bias behind active
    units) has a tiny √I, which magnifies that rounding; the tolerance follows it.
    """
    g_fake, g_x = _naive_grads(model, fake), _naive_grads(model, images)
    mean, var = g_fake.mean(0), g_fake.var(0, unbiased=False)
    scale = 1.0 / (var.sqrt() + EPS)
    afv = (g_x - mean) * scale
    # float32 rounding (≈ 1e-7 relative) of g and m, and its effect on the estimated √I
    big = g_fake.abs().max(0).values
    err = 1e-6 * (g_x.abs() + big) * scale + 1e-6 * afv.abs() * big * scale
    return afv, err


def _close(ours: np.ndarray, ref: torch.Tensor, err: torch.Tensor) -> None:
    ref, err = ref.detach().numpy(), err.detach().numpy()
    assert ours.shape == ref.shape
    bad = np.abs(ours - ref) > err + 1e-6 * np.abs(ref) + 1e-9
    assert not bad.any(), (np.argwhere(bad)[:5], ours[bad][:5], ref[bad][:5])


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    model = _gan()
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
    # a well-spread reference set (an untrained G draws nearly identical images, which makes
    # some variances tiny); test_afv_draws_its_own_seeded_generator_samples uses G itself
    fake = torch.rand(9, 1, 8, 8, generator=torch.Generator().manual_seed(2),
                      dtype=torch.float64)
    return model, images, fake


def test_afv_unprojected_equals_naive_loop(setup):
    model, images, fake = setup
    ours = adversarial_fisher_vectors(model, images, samples=fake, dim=None, projection=None,
                                      normalize="fim_diag")
    ref, err = _naive_afv(model, images, fake)
    assert ref.shape[1] == sum(p.numel() for p in model.disc.parameters())  # D only
    assert float(err.max()) < 1e-4 * float(ref.abs().max())  # a tolerance that means something
    _close(ours, ref, err)
    # "exact" is the same thing without a projection
    same = adversarial_fisher_vectors(model, images, samples=fake, dim=None, projection=None)
    _close(same, ref, err)


def test_afv_projected_exact_is_projected_paper_afv(setup):
    """normalize="fim_diag_exact": the parameter-space AFV, then the random projection."""
    model, images, fake = setup
    scorer = afv_scorer(model, samples=fake, dim=16, projection="sparse", seed=4)
    ours = scorer.transform(images)
    ref, err = _naive_afv(model, images, fake)
    R = scorer.projection_.matrix().double()  # (P, 16)
    _close(ours, ref @ R, err @ R.abs())
    # the function is the scorer's transform
    np.testing.assert_array_equal(
        adversarial_fisher_vectors(model, images, samples=fake, dim=16, projection="sparse",
                                   seed=4), ours)


def test_afv_projected_fim_diag_whitens_projected_scores(setup):
    """normalize="fim_diag": project the raw gradients, then centre/scale each coordinate."""
    model, images, fake = setup
    scorer = afv_scorer(model, samples=fake, dim=16, projection="sparse", seed=4,
                        normalize="fim_diag")
    ours = scorer.transform(images)
    R = scorer.projection_.matrix().double()  # (P, 16)
    g_fake, g_x = _naive_grads(model, fake), _naive_grads(model, images)
    u_fake, u_x = g_fake @ R, g_x @ R
    mean, var = u_fake.mean(0), u_fake.var(0, unbiased=False)
    scale = 1.0 / (var.sqrt() + EPS)
    err = 1e-6 * (g_x.abs() + g_fake.abs().max(0).values) @ R.abs() * scale
    _close(ours, (u_x - mean) * scale, err)


def test_afv_draws_its_own_seeded_generator_samples(setup):
    model = setup[0]
    x = setup[1]
    a = adversarial_fisher_vectors(model, x, n_generator_samples=10, dim=None, projection=None,
                                   seed=5)
    fake = model.sample(10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(generator_samples(model, 10, seed=5), fake)
    _close(a, *_naive_afv(model, x, fake))


def test_afv_rejects_models_without_a_generator_and_bad_options(setup):
    vae = VAE(VAEConfig(height=8, width=8, hidden=4, latent_dim=2))
    with pytest.raises(TypeError, match="need a discriminator"):
        discriminator_pool(vae, torch.rand(2, 1, 8, 8))
    with pytest.raises(TypeError, match="log_prob .*and sample"):
        adversarial_fisher_vectors(torch.nn.Linear(2, 2), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="normalize must be one of"):
        afv_scorer(setup[0], samples=setup[2], normalize="l2")
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        adversarial_fisher_vectors(setup[0], np.zeros((3, 8, 8)))


def test_discriminator_pool_matches_forward_hooks(setup):
    model, images, _ = setup
    caught = []
    hooks = [b.register_forward_hook(lambda m, i, o: caught.append(o.detach()))
             for b in model.disc.blocks]
    try:
        model.eval()
        with torch.no_grad():
            model.log_prob(images)
    finally:
        for h in hooks:
            h.remove()
    ref = torch.cat([c.mean(dim=(2, 3)) for c in caught], dim=1).numpy()
    np.testing.assert_allclose(discriminator_pool(model, images, batch_size=4), ref, rtol=1e-6)
    np.testing.assert_allclose(discriminator_pool(model, images, layer=-1),
                               caught[-1].mean(dim=(2, 3)).numpy(), rtol=1e-6)
    # the generic activation baseline on the model's default layer is the deepest D block
    emb = activation_embedding(model.float(), images.float().numpy())
    model.double()
    np.testing.assert_allclose(emb.vectors, caught[-1].mean(dim=(2, 3)).numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="layer must be 'all' or a block index"):
        discriminator_pool(model, images, layer=7)


def test_embedding_helpers_record_what_made_them(setup):
    model, images, fake = setup
    emb = afv_embedding(model, images.numpy(), n_generator_samples=8, dim=12, seed=2,
                        dataset_key="digits", model_name="gan-1")
    direct = adversarial_fisher_vectors(model, images.numpy(), n_generator_samples=8, dim=12,
                                        seed=2)
    np.testing.assert_array_equal(emb.vectors, direct)
    assert (emb.kind, emb.dataset, emb.model, emb.projection) == ("afv", "digits", "gan-1",
                                                                  "sparse-12")
    assert emb.params["normalize"] == "fim_diag_exact"
    pool = d_pool_embedding(model, images.numpy(), dataset_key="digits")
    np.testing.assert_array_equal(pool.vectors, discriminator_pool(model, images.numpy()))
    assert (pool.kind, pool.model) == ("d_pool", "ebgan")
