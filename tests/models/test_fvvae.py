"""The differentiable Fisher-vector layer (vs the NumPy-facing encoder, scikit-learn and
autograd's gradcheck) and the FV-VAE built on it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture as SkGMM
from torch.func import functional_call

from fisher_core.embeddings import fvvae_embedding
from fisher_core.fisher import FisherVectorLayer, fisher_vector, signed_power
from fisher_core.models import (
    FVVAE,
    MODEL_FAMILIES,
    ConfigError,
    FVVAEConfig,
    load_model,
    save_model,
)
from fisher_core.training import train

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _layer(k: int = 3, d: int = 2, seed: int = 0, **kw) -> FisherVectorLayer:
    torch.manual_seed(seed)
    layer = FisherVectorLayer(k, d, **kw).double()
    with torch.no_grad():  # unequal weights and variances
        layer.logits.copy_(torch.randn(k, dtype=torch.float64))
        layer.log_std.copy_(0.3 * torch.randn(k, d, dtype=torch.float64))
    return layer


# ---- FisherVectorLayer ------------------------------------------------------------------------


@pytest.mark.parametrize("normalization", ["analytic", "none"])
@pytest.mark.parametrize("power,l2", [(None, False), (0.5, True), (0.3, False)])
def test_layer_equals_fisher_vector(normalization, power, l2):
    layer = _layer(4, 3, normalization=normalization, power=power, l2=l2)
    x = torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = layer(x).detach().numpy()
    ref = fisher_vector(x.numpy(), layer.to_gmm(), normalization=normalization, power=power,
                        l2=l2, dtype="float64")
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer(x[2]).detach().numpy(), ref[2], rtol=1e-10, atol=1e-12)


def test_layer_from_a_sklearn_gmm_matches_its_density_and_fisher_vector():
    data = np.random.default_rng(0).normal(size=(200, 2)) * [1.0, 3.0]
    sk = SkGMM(3, covariance_type="diag", random_state=0).fit(data)
    layer = FisherVectorLayer(3, 2).double().load_gmm(sk)
    x = torch.from_numpy(data[:12])
    np.testing.assert_allclose(layer.log_likelihood(x).detach().numpy(),
                               sk.score_samples(data[:12]), rtol=1e-10)
    np.testing.assert_allclose(layer(x).detach().numpy(),
                               fisher_vector(data[:12], sk, dtype="float64"), rtol=1e-9,
                               atol=1e-12)
    with pytest.raises(ValueError, match="the layer needs K=4, D=2"):
        FisherVectorLayer(4, 2).load_gmm(sk)


def test_unnormalised_layer_is_the_gradient_of_the_mean_log_likelihood():
    """normalization="none" equals autograd's gradient w.r.t. (logits, μ, σ)."""
    layer = _layer(3, 2, normalization="none", power=None, l2=False)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    std = layer.log_std.detach().exp().requires_grad_(True)
    mean_ll = _gmm_loglik(x, layer.logits, layer.means, std).mean()
    g = torch.autograd.grad(mean_ll, [layer.logits, layer.means, std])
    ref = torch.cat([t.flatten() for t in g])
    torch.testing.assert_close(layer(x), ref)


def _gmm_loglik(x, logits, means, std):
    """Independent log-density of a diagonal GMM via torch.distributions."""
    comp = torch.distributions.Independent(torch.distributions.Normal(means, std), 1)
    mix = torch.distributions.Categorical(logits=logits)
    return torch.distributions.MixtureSameFamily(mix, comp).log_prob(x)


class _LogLikelihood(torch.nn.Module):
    def __init__(self, layer: FisherVectorLayer):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer.log_likelihood(x)


def test_layer_gradcheck_inputs_and_gmm_parameters():
    layer = _layer(2, 2, power=0.5, l2=True)
    x = torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64,
                    requires_grad=True)
    names = ["logits", "means", "log_std"]
    inputs = (x, *(getattr(layer, n).detach().clone().requires_grad_(True) for n in names))

    def encode(x, *tensors):
        return functional_call(layer, dict(zip(names, tensors, strict=True)), (x,))

    def log_lik(x, *tensors):
        params = {f"layer.{n}": t for n, t in zip(names, tensors, strict=True)}
        return functional_call(_LogLikelihood(layer), params, (x,))

    assert torch.autograd.gradcheck(encode, inputs, eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(log_lik, inputs, eps=1e-6, atol=1e-6)


def test_signed_power_has_finite_gradients_at_zero_and_validates():
    z = torch.tensor([0.0, 1e-12, 0.25, -4.0], dtype=torch.float64, requires_grad=True)
    out = signed_power(z, 0.5, eps=1e-6)
    torch.testing.assert_close(out.detach(), torch.tensor([0.0, 1e-6, 0.5, -2.0],
                                                          dtype=torch.float64))
    (g,) = torch.autograd.grad(out.sum(), z)
    torch.testing.assert_close(g, torch.tensor([500.0, 500.0, 1.0, 0.25], dtype=torch.float64))
    with pytest.raises(ValueError, match="normalization must be one of"):
        FisherVectorLayer(2, 2, normalization="empirical")
    with pytest.raises(ValueError, match=r"descriptors must have shape \(\.\.\., n, 2\)"):
        FisherVectorLayer(2, 2)(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n, 1\) for dims="):
        FisherVectorLayer(2, 3).log_likelihood(torch.zeros(4, 2), dims=slice(2, 3))


# ---- FV-VAE -----------------------------------------------------------------------------------


def _fvvae(seed: int = 0, **kw) -> FVVAE:
    torch.manual_seed(seed)
    cfg = dict(height=8, width=8, latent_dim=2, hidden=6, n_components=3) | kw
    return FVVAE(FVVAEConfig(**cfg))


def _grid_positions() -> torch.Tensor:
    """Normalised (row, column) of a 4×4 grid, raster order: (16, 2)."""
    c = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0])
    return torch.stack([c.repeat_interleave(4), c.repeat(4)], dim=1)


@pytest.mark.parametrize("spatial", [True, False])
def test_embed_is_the_fisher_vector_of_the_encoder_descriptors(spatial):
    model = _fvvae(spatial=spatial).eval()
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    desc = model.descriptors(x)
    mu, _ = model.encode(x)
    assert mu.shape == (5, 16, 2)  # a 4×4 grid of 2-d local latents
    if spatial:  # (μ_t, row_t, column_t)
        torch.testing.assert_close(desc, torch.cat([mu, _grid_positions().expand(5, 16, 2)], 2))
    else:
        torch.testing.assert_close(desc, mu)
    torch.testing.assert_close(model.embed(x), model.fv(desc))
    ref = fisher_vector(desc.detach().numpy(), model.fv.to_gmm(), dtype="float64")
    np.testing.assert_allclose(model.embed(x).detach().numpy(), ref, rtol=1e-4, atol=1e-6)
    emb = fvvae_embedding(model, x.numpy(), batch_size=2, dataset_key="digits")
    d = 4 if spatial else 2
    assert (emb.kind, emb.dim, emb.dataset) == ("fv_vae", 3 * (1 + 2 * d), "digits")
    np.testing.assert_allclose(emb.vectors, model.embed(x).detach().numpy(), rtol=1e-6)
    torch.testing.assert_close(model.latent_means(x), mu.flatten(1))


def _independent_prior(model: FVVAE, z: torch.Tensor) -> torch.Tensor:
    """Σ_t log p(z_t | p_t) = Σ_t [log p(z_t, p_t) − log p(p_t)] via torch.distributions."""
    fv = model.prior
    std = fv.log_std.exp()
    if not model.config.spatial:
        return _gmm_loglik(z, fv.logits, fv.means, std).sum(-1)
    pos = _grid_positions().expand(*z.shape[:-1], 2)
    joint = _gmm_loglik(torch.cat([z, pos], -1), fv.logits, fv.means, std)
    marginal = _gmm_loglik(pos, fv.logits, fv.means[:, 2:], std[:, 2:])
    return (joint - marginal).sum(-1)


@pytest.mark.parametrize("spatial", [True, False])
def test_elbo_terms_match_an_independent_computation(spatial):
    model = _fvvae(likelihood="gaussian", sigma=0.2, spatial=spatial).eval()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    terms = model.elbo_terms(x, generator=torch.Generator().manual_seed(5))
    mu, logvar = model.encode(x)
    eps = torch.randn((1, *mu.shape), generator=torch.Generator().manual_seed(5))[0]
    z = mu + (0.5 * logvar).exp() * eps
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    recon = torch.distributions.Normal(model.decode(z), 0.2).log_prob(x).sum(dim=(1, 2, 3))
    prior = _independent_prior(model, z)
    torch.testing.assert_close(terms["recon"], recon, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(terms["prior"], prior, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms["entropy"], q.entropy().sum(dim=(1, 2)))
    lp = model.log_prob(x, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(lp, recon + prior + q.entropy().sum(dim=(1, 2)), rtol=1e-5,
                               atol=1e-3)


def test_spatial_prior_is_a_normalised_density_at_each_location():
    """∫ p(z | p_t) dz = 1: a Monte-Carlo check with a wide Gaussian proposal, in 1-d."""
    model = _fvvae(latent_dim=1, seed=3)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 1, generator=gen, dtype=torch.float64) * 4.0
    proposal = torch.distributions.Normal(0.0, 4.0).log_prob(z[:, 0])
    model.double()
    lp = model.prior_log_prob(z[:, None, :].expand(-1, 16, 1))  # (20000, 16)
    mass = (lp - proposal[:, None]).exp().mean(0)
    torch.testing.assert_close(mass, torch.ones(16, dtype=torch.float64), atol=0.03, rtol=0)


def test_bernoulli_likelihood_is_the_binarised_cross_entropy():
    model = _fvvae(likelihood="bernoulli").eval()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    z = torch.randn(3, 16, 2, generator=torch.Generator().manual_seed(5))
    p = model.decode(z)  # E[x|z] = sigmoid(logits)
    ref = torch.distributions.Bernoulli(probs=p).log_prob(x.round()).sum(dim=(1, 2, 3))
    torch.testing.assert_close(model.log_px_given_z(x, z), ref, rtol=1e-5, atol=1e-4)


def test_trains_end_to_end_with_the_shared_loop():
    x = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(2)) ** 2
    model = _fvvae(seed=1)
    gmm_before = model.prior.means.detach().clone()
    fv_before = model.fv.means.detach().clone()
    res = train(model, x, epochs=6, batch_size=16, lr=1e-2, seed=0)
    ep = res.history["epoch_train_loss"]
    assert ep[-1] < ep[0] - 5.0  # nats per image
    steps = res.history["step_metrics"]
    for k in ("recon", "prior", "entropy"):
        assert len(steps[k]) == res.steps
    assert not torch.equal(model.prior.means, gmm_before)  # the prior is learned too
    assert not torch.equal(model.fv.means, fv_before)  # and the descriptor GMM, by EM
    assert model.fv.means.grad is None


def test_sample_draws_latents_from_the_prior_given_the_location():
    model = _fvvae(seed=2)
    a = model.sample(4, generator=3)
    assert torch.equal(a, model.sample(4, generator=torch.Generator().manual_seed(3)))
    fv = model.prior
    pos_pdf = torch.distributions.Normal(fv.means[:, 2:], fv.log_std[:, 2:].exp())
    log_pi = fv.logits.log_softmax(0) + pos_pdf.log_prob(_grid_positions()[:, None]).sum(-1)
    gen = torch.Generator().manual_seed(3)
    k = torch.multinomial(log_pi.softmax(-1).repeat(4, 1), 1, generator=gen).squeeze(1)
    eps = torch.randn(4 * 16, 2, generator=gen)
    z = (fv.means[k, :2] + fv.log_std[k, :2].exp() * eps).view(4, 16, 2)
    torch.testing.assert_close(a, model.decode(z).detach())
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_save_load_round_trip_and_config(tmp_path):
    assert MODEL_FAMILIES["fvvae"] == (FVVAE, FVVAEConfig)
    model = _fvvae(fv_power=None).eval()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = torch.rand(3, 1, 8, 8)
    assert loaded.config == model.config
    assert torch.equal(loaded.embed(x), model.embed(x))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(loaded.log_prob(x, generator=g),
                       model.log_prob(x, generator=torch.Generator().manual_seed(0)))
    assert FVVAEConfig(height=32, width=32).n_down == 3
    with pytest.raises(ConfigError, match="FVVAEConfig.likelihood must be one of"):
        FVVAEConfig(likelihood="logistic")
    with pytest.raises(ConfigError, match="FVVAEConfig.fv_power must be None or > 0"):
        FVVAEConfig(fv_power=0)
    assert math.isfinite(float(model.log_prob(x).detach().mean()))


# ---- the descriptor GMM (stepwise EM) and the objective's weight ------------------------------


def test_em_step_with_rate_one_is_one_scikit_learn_em_iteration():
    layer = _layer(3, 2)
    x = torch.randn(2, 40, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    w, mu = layer.weights().detach().numpy(), layer.means.detach().numpy()
    var = np.exp(2 * layer.log_std.detach().numpy())
    sk = SkGMM(3, covariance_type="diag", max_iter=1, reg_covar=1e-3, weights_init=w,
               means_init=mu, precisions_init=1 / var)
    with pytest.warns(UserWarning):  # one iteration does not converge
        sk.fit(x.reshape(-1, 2).numpy())
    layer.em_step(x, rate=1.0, reg=1e-3)
    np.testing.assert_allclose(layer.weights().detach().numpy(), sk.weights_, rtol=1e-9)
    np.testing.assert_allclose(layer.means.detach().numpy(), sk.means_, rtol=1e-9)
    np.testing.assert_allclose(np.exp(2 * layer.log_std.detach().numpy()), sk.covariances_,
                               rtol=1e-9)


def test_stepwise_em_moves_the_sufficient_statistics_by_the_rate():
    """Naive loop: γ per descriptor, batch statistics, convex combination, M-step."""
    layer = _layer(2, 3, seed=4)
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    w, m = layer.weights().detach(), layer.means.detach().clone()
    var = layer.log_std.detach().exp().pow(2)
    std = var.sqrt()
    s0, s1, s2 = torch.zeros(2, dtype=torch.float64), torch.zeros(2, 3), torch.zeros(2, 3)
    s1, s2 = s1.double(), s2.double()
    for t in range(9):
        dens = torch.stack([w[k] * torch.distributions.Normal(m[k], std[k]).log_prob(x[t])
                            .sum().exp() for k in range(2)])
        g = dens / dens.sum()
        s0, s1, s2 = s0 + g / 9, s1 + g[:, None] * x[t] / 9, s2 + g[:, None] * x[t] ** 2 / 9
    r = 0.3
    n0 = (1 - r) * w + r * s0
    n1 = (1 - r) * w[:, None] * m + r * s1
    n2 = (1 - r) * w[:, None] * (var + m**2) + r * s2
    layer.em_step(x, rate=r, reg=0.0)
    torch.testing.assert_close(layer.weights().detach(), n0)
    torch.testing.assert_close(layer.means.detach(), n1 / n0[:, None])
    torch.testing.assert_close(layer.log_std.detach().exp().pow(2),
                               n2 / n0[:, None] - (n1 / n0[:, None]) ** 2)
    with pytest.raises(ValueError, match=r"rate must be a number in \(0, 1\]; got 0"):
        layer.em_step(x, rate=0)


def test_fv_gmm_chooses_the_layer_that_embeds():
    old = _fvvae(fv_gmm="prior")
    assert old.prior is old.fv
    assert not any(k.startswith("prior_gmm.") for k in old.state_dict())  # old files load
    new = _fvvae()
    assert new.config.fv_gmm == "descriptors" and new.prior is not new.fv
    # the same seed gives the same initial prior in both modes
    torch.testing.assert_close(new.prior.means, old.fv.means)


def test_descriptor_gmm_is_fitted_to_the_dequantised_descriptors():
    """fit_descriptor_gmm = em_step on (μ_t, p_t + u), u uniform over the grid cell, after
    moving dead components onto descriptors."""
    model = _fvvae(seed=5).double()
    with torch.no_grad():
        model.fv.logits.copy_(torch.tensor([0.0, 0.0, -30.0]))  # component 2 is dead
    mu = torch.randn(4, 16, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    torch.manual_seed(0)
    model.fit_descriptor_gmm(mu, rate=1.0)
    # component 2 took a random descriptor and a weight of ≈ 1/K before the EM step
    assert float(model.fv.weights()[2].detach()) > 0.01
    assert torch.isfinite(model.fv.log_std).all()
    # reference: redo the update by hand with the same random draws
    ref = _fvvae(seed=5).double()
    with torch.no_grad():
        ref.fv.logits.copy_(torch.tensor([0.0, 0.0, -30.0]))
    torch.manual_seed(0)
    desc = ref._with_positions(mu)  # (4, 16, 4)
    noise = (2.0 * torch.rand_like(desc[..., 2:]) - 1.0) / 3.0  # half-cell 1/3 on a 4×4 grid
    flat = torch.cat([desc[..., :2], desc[..., 2:] + noise], -1).reshape(-1, 4)  # (64, 4)
    pick = torch.randint(0, 64, (1,))
    with torch.no_grad():
        ref.fv.means[2] = flat[pick[0]]
        ref.fv.log_std[2] = 0.5 * torch.log(flat.var(0) + 1e-4)
        ref.fv.logits[2] = ref.fv.logits.logsumexp(0) - math.log(3)
    ref.fv.em_step(flat, rate=1.0, reg=1e-4)
    torch.testing.assert_close(model.fv.means, ref.fv.means)
    torch.testing.assert_close(model.fv.log_std, ref.fv.log_std)


def test_kl_weight_scales_the_prior_and_entropy_in_the_training_gradient():
    model = _fvvae(kl_weight=0.25, fv_gmm="prior")
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    torch.manual_seed(3)
    t = model.elbo_terms(x)
    ref = torch.autograd.grad(-(t["recon"] + 0.25 * (t["prior"] + t["entropy"])).mean(),
                              model.enc_out.weight)[0]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    torch.manual_seed(3)
    metrics = model.training_step(x, {"opt": opt})
    torch.testing.assert_close(model.enc_out.weight.grad, ref)
    # "loss" is −ELBO, not the weighted objective
    elbo = (t["recon"] + t["prior"] + t["entropy"]).detach()
    assert metrics["loss"] == pytest.approx(-float(elbo.mean()), rel=1e-5)


@pytest.mark.parametrize("field,value,match", [
    ("kl_weight", 0.0, r"kl_weight must be a number in \(0, 1\]; got 0.0"),
    ("kl_weight", 1.5, r"kl_weight must be a number in \(0, 1\]; got 1.5"),
    ("fv_gmm", "em", r"fv_gmm must be one of \('descriptors', 'prior'\); got 'em'"),
])
def test_new_config_fields_are_validated(field, value, match):
    with pytest.raises(ConfigError, match=match):
        FVVAEConfig(**{field: value})


def test_models_saved_before_fv_gmm_and_kl_weight_still_load(tmp_path):
    """A save made before the two fields existed meant the prior GMM and the plain ELBO."""
    import json

    from fisher_core.models import load_model, save_model

    old = FVVAE(FVVAEConfig(height=8, width=8, n_components=3, fv_gmm="prior", kl_weight=1.0))
    save_model(old, tmp_path / "m")
    meta_path = tmp_path / "m" / "model.json"
    meta = json.loads(meta_path.read_text())
    for field in ("fv_gmm", "kl_weight", "final_em"):
        del meta["config"][field]
    meta_path.write_text(json.dumps(meta))
    back = load_model(tmp_path / "m")
    assert back.config.fv_gmm == "prior" and back.config.kl_weight == 1.0
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(back.embed(x), old.eval().embed(x))


def test_finish_training_refits_the_descriptor_gmm_by_full_em():
    from fisher_core.fisher import GaussianMixture as GMM

    torch.manual_seed(0)
    model = FVVAE(FVVAEConfig(height=8, width=8, n_components=3)).eval()
    x = torch.rand(40, 1, 8, 8)
    untouched = FVVAE(FVVAEConfig(height=8, width=8, n_components=3, final_em=False))
    before = untouched.fv.means.detach().clone()
    untouched.finish_training(x, seed=5)
    assert torch.equal(untouched.fv.means, before)  # final_em=False: left as trained
    model.finish_training(x, seed=5, batch_size=64)
    # the same draws by hand: the image subsample, then the positions' dequantisation
    gen = torch.Generator().manual_seed(5)
    rows = torch.randperm(40, generator=gen)[:40].sort().values
    with torch.no_grad():
        desc = model._dequantised(model.descriptors(x[rows]), gen)
    flat = desc.reshape(-1, desc.shape[-1]).double().numpy()
    ref = GMM(3, reg_covar=1e-4, random_state=5).fit(flat)
    fv = model.fv
    np.testing.assert_allclose(fv.means.detach().double().numpy(), ref.means_, rtol=1e-5)
    np.testing.assert_allclose(torch.exp(2 * fv.log_std).detach().double().numpy(),
                               ref.covariances_, rtol=1e-5)
    np.testing.assert_allclose(fv.weights().detach().double().numpy(), ref.weights_,
                               rtol=1e-5)


def test_the_training_loop_ends_with_the_refit():
    from fisher_core.training import train

    torch.manual_seed(0)
    calls = []
    model = FVVAE(FVVAEConfig(height=8, width=8, n_components=3))
    model.finish_training = lambda images, seed: calls.append((images.shape[0], seed))
    train(model, np.random.default_rng(0).random((32, 1, 8, 8)).astype(np.float32),
          epochs=1, batch_size=16, seed=7)
    assert calls == [(32, 7)]
