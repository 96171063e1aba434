"""Tests of the PixelCNN and VAE families, the registry and safetensors/JSON model files."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fisher_core.models import (
    MODEL_FAMILIES,
    VAE,
    ConfigError,
    ModelFileError,
    PixelCNN,
    PixelCNNConfig,
    VAEConfig,
    bits_per_dim,
    build_model,
    gaussian_kl,
    load_model,
    save_model,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: extra intra-op threads only add synchronisation, which on a loaded 2-core
    machine costs up to 40× (measured). The caller's setting is restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pixelcnn(**kw) -> PixelCNN:
    torch.manual_seed(0)
    cfg = dict(hidden=6, n_blocks=3, dilations=None, head_hidden=6, height=4, width=5)
    cfg.update(kw)
    return PixelCNN(PixelCNNConfig(**cfg))


def _all_images(channels: int, height: int, width: int, levels: int) -> torch.Tensor:
    """Every image on the L-level grid, as floats in [0, 1]: (L^(C·H·W), C, H, W)."""
    grid = itertools.product(range(levels), repeat=channels * height * width)
    lv = torch.tensor(list(grid), dtype=torch.float32)
    return (lv / (levels - 1)).view(-1, channels, height, width)


# ---- PixelCNN ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(channels=1, output="categorical", levels=4),
        dict(channels=3, output="categorical", levels=3),
        dict(channels=3, output="logistic", levels=256, n_mix=2, kernel_size=5),
        dict(channels=1, output="logistic", levels=8, n_blocks=4, dilations=(1, 2, 1, 3)),
    ],
)
def test_pixelcnn_is_autoregressive(kw):
    """d output[c, r, j] / d input[c', r', j'] is exactly 0 for (r', j', c') ≥ (r, j, c) in raster
    order, and non-zero for the pixels a single masked stack would miss (its blind spot)."""
    model = _pixelcnn(**kw)
    C, H, W = model.image_shape
    x_in = torch.randn(1, C, H, W, dtype=torch.float64, requires_grad=True)
    model.double()
    out = model.network(x_in)  # (1, C, P, H, W)
    order = lambda c, r, j: (r * W + j) * C + c  # noqa: E731 - raster index
    for c, r, j in itertools.product(range(C), range(H), range(W)):
        (grad,) = torch.autograd.grad(out[0, c, :, r, j].sum(), x_in, retain_graph=True)
        for c2, r2, j2 in itertools.product(range(C), range(H), range(W)):
            if order(c2, r2, j2) >= order(c, r, j):
                assert grad[0, c2, r2, j2] == 0.0, ((c, r, j), (c2, r2, j2))
        if r >= 1 and j + 1 < W:  # upper-right neighbour: the classic blind spot
            assert grad[0, :, r - 1, j + 1].abs().sum() > 0
        if j >= 1:
            assert grad[0, :, r, j - 1].abs().sum() > 0
        if c >= 1:
            assert grad[0, c - 1, r, j] != 0.0


@pytest.mark.parametrize(
    "kw, shape",
    [
        (dict(output="categorical", levels=2), (1, 2, 2)),
        (dict(output="logistic", levels=2, n_mix=3), (1, 2, 2)),
        (dict(output="logistic", levels=3, n_mix=2), (1, 2, 2)),
        (dict(output="categorical", levels=2, channels=3), (3, 2, 1)),
        (dict(output="logistic", levels=2, channels=3), (3, 1, 2)),
    ],
)
def test_pixelcnn_log_prob_sums_to_one(kw, shape):
    C, H, W = shape
    model = _pixelcnn(height=H, width=W, **kw)
    with torch.no_grad():
        # Random biases/scales so that the distribution is far from uniform.
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
        x = _all_images(C, H, W, model.config.levels)
        total = model.log_prob(x).exp().sum()
    assert abs(float(total) - 1.0) < 1e-5


def test_discretized_logistic_matches_naive_cdf_differences():
    from fisher_core.models.layers import discretized_logistic_log_prob

    g = torch.Generator().manual_seed(1)
    L, K, N = 7, 3, 50
    level = torch.randint(0, L, (N,), generator=g)
    logit_pi, mu, log_s = (torch.randn(N, K, generator=g, dtype=torch.float64) for _ in range(3))
    ours = discretized_logistic_log_prob(level, logit_pi, mu, log_s, L)
    # Naive: CDF(upper edge) − CDF(lower edge), edges at ±∞ for the end bins.
    edges = torch.linspace(-1, 1, L, dtype=torch.float64)
    half = 1.0 / (L - 1)
    up = torch.where(level == L - 1, torch.tensor(math.inf, dtype=torch.float64),
                     edges[level] + half)
    lo = torch.where(level == 0, torch.tensor(-math.inf, dtype=torch.float64), edges[level] - half)
    s = log_s.exp()
    cdf = lambda t: torch.sigmoid((t.unsqueeze(-1) - mu) / s)  # noqa: E731
    ref = torch.log((F.softmax(logit_pi, -1) * (cdf(up) - cdf(lo))).sum(-1))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def _naive_sample(model: PixelCNN, n: int, seed: int) -> torch.Tensor:
    """Reference sampler: a full forward pass for every pixel and channel."""
    g = torch.Generator().manual_seed(seed)
    C, H, W = model.image_shape
    L = model.config.levels
    x = torch.zeros(n, C, H, W)
    with torch.no_grad():
        for r, j, c in itertools.product(range(H), range(W), range(C)):
            logits = model(x)[:, c, :, r, j]
            x[:, c, r, j] = torch.multinomial(F.softmax(logits, -1), 1, generator=g)[:, 0] / (L - 1)
    return x


def test_pixelcnn_sample_matches_naive_sampler_and_is_seeded():
    # 6×9 image, receptive field 3 rows up / 3 columns aside: the cropped fast path is used.
    model = _pixelcnn(channels=3, height=6, width=9, levels=4, n_blocks=2, hidden=4)
    assert model.receptive_field == (3, 3)
    ours = model.sample(3, generator=11)
    torch.testing.assert_close(ours, _naive_sample(model, 3, 11), rtol=0, atol=0)
    torch.testing.assert_close(model.sample(3, generator=torch.Generator().manual_seed(11)), ours)
    assert not torch.equal(model.sample(3, generator=12), ours)
    assert set(torch.unique(ours * 3).tolist()) <= {0.0, 1.0, 2.0, 3.0}


@pytest.mark.parametrize("output", ["categorical", "logistic"])
def test_pixelcnn_sample_frequencies_follow_log_prob(output):
    model = _pixelcnn(height=2, width=2, levels=2, output=output, n_mix=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
        x = _all_images(1, 2, 2, 2)
        probs = model.log_prob(x).exp()
    s = model.sample(20000, generator=3)
    idx = (s.view(-1, 4) * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    freq = torch.bincount(idx, minlength=16).float() / 20000
    # Binomial standard error of each frequency, 5 sigma.
    tol = 5 * torch.sqrt(probs * (1 - probs) / 20000) + 1e-3
    assert torch.all((freq - probs).abs() <= tol)


def test_pixelcnn_log_prob_quantises_like_the_dataset():
    model = _pixelcnn(levels=4)
    x = torch.rand(3, 1, 4, 5)
    snapped = torch.round(x * 3) / 3
    torch.testing.assert_close(model.log_prob(x), model.log_prob(snapped))


# ---- VAE --------------------------------------------------------------------------------------


def _tiny_vae(likelihood="bernoulli", **kw) -> VAE:
    torch.manual_seed(0)
    cfg = dict(height=4, width=3, latent_dim=1, hidden=6, n_down=0, likelihood=likelihood)
    cfg.update(kw)
    return VAE(VAEConfig(**cfg)).double()


@pytest.mark.parametrize("likelihood", ["bernoulli", "categorical", "gaussian"])
def test_vae_elbo_below_iwae_below_exact_log_p(likelihood):
    """Exact log p(x) of a 1-d latent by quadrature: ELBO < E[IW_10] < E[IW_100] ≤ log p, and
    the IW bound converges to log p (Burda et al. 2016)."""
    model = _tiny_vae(likelihood, levels=3, sigma=0.3)
    with torch.no_grad():
        model.dec_in.weight.mul_(4.0)  # make p(x|z) depend strongly on z: a real posterior gap
    x = torch.rand(3, 1, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = torch.Generator().manual_seed(1)

    def iw_mean(k: int, reps: int) -> torch.Tensor:  # E[IW_k] by averaging replications
        lp = model.log_prob(x.repeat(reps, 1, 1, 1), n_samples=k, iw=True, generator=g)
        return lp.view(reps, len(x)).mean(0)

    with torch.no_grad():
        z = torch.linspace(-9, 9, 6001, dtype=torch.float64)
        log_prior = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
        exact = torch.stack([
            torch.logsumexp(model.log_px_given_z(xi.expand(len(z), -1, -1, -1), z[:, None])
                            + log_prior, 0) + math.log(float(z[1] - z[0]))
            for xi in x
        ])
        elbo = model.log_prob(x, n_samples=4000, generator=g)
        iw10, iw100 = iw_mean(10, 400), iw_mean(100, 100)
        iw4000 = model.log_prob(x, n_samples=4000, iw=True, generator=g)
    assert torch.all(exact - elbo > 0.3)
    assert torch.all(elbo < iw10) and torch.all(iw10 < iw100)
    assert torch.all(iw100 <= exact + 0.01)
    torch.testing.assert_close(iw4000, exact, rtol=0, atol=0.05)


def test_gaussian_kl_matches_torch_distributions_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(4, 3, generator=g, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), ref)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(mc, ref, rtol=0.02, atol=0.02)


def test_vae_log_likelihoods_match_torch_distributions():
    x = torch.rand(2, 1, 4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z = torch.randn(2, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    m = _tiny_vae("bernoulli")
    out = m.decoder_params(z)[:, :, 0]
    ref = torch.distributions.Bernoulli(logits=out).log_prob(torch.round(x)).sum((1, 2, 3))
    torch.testing.assert_close(m.log_px_given_z(x, z), ref)
    m = _tiny_vae("categorical", levels=5)
    out = m.decoder_params(z).movedim(2, -1)
    ref = torch.distributions.Categorical(logits=out).log_prob(torch.round(x * 4).long())
    torch.testing.assert_close(m.log_px_given_z(x, z), ref.sum((1, 2, 3)))
    m = _tiny_vae("gaussian", sigma=0.2, learn_sigma=True)
    mean = torch.sigmoid(m.decoder_params(z)[:, :, 0])
    ref = torch.distributions.Normal(mean, 0.2).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(m.log_px_given_z(x, z), ref)
    assert any(n == "log_sigma" for n, _ in m.named_parameters())


def test_vae_elbo_is_seeded_and_sample_is_reproducible():
    m = _tiny_vae(height=8, width=8, n_down=None, latent_dim=3)
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    a = m.log_prob(x, generator=torch.Generator().manual_seed(5))
    b = m.log_prob(x, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.manual_seed(9)
    c = m.log_prob(x)
    torch.manual_seed(9)
    torch.testing.assert_close(m.log_prob(x), c, rtol=0, atol=0)
    s = m.sample(5, generator=4)
    torch.testing.assert_close(s, m.sample(5, generator=4), rtol=0, atol=0)
    assert s.shape == (5, 1, 8, 8) and 0 <= float(s.min()) and float(s.max()) <= 1
    assert m.config.n_down == 1
    torch.testing.assert_close(m.latent_means(x), m.encode(x)[0])


@pytest.mark.parametrize("hw", [(8, 8), (32, 32), (28, 20), (5, 7)])
def test_vae_generic_sizes_decode_back_to_input_size(hw):
    torch.manual_seed(0)
    m = VAE(VAEConfig(height=hw[0], width=hw[1], latent_dim=2, hidden=4, likelihood="categorical",
                      levels=4))
    x = torch.rand(2, 1, *hw)
    assert m.decode(m.latent_means(x)).shape == x.shape
    s = m.sample(2, generator=0, mean=False)
    assert set(torch.unique(s * 3).tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert torch.isfinite(m.log_prob(x)).all()


def test_vae_elbo_increases_with_training():
    from fisher_core.training import train

    rng = np.random.default_rng(0)
    base = (rng.random((4, 1, 8, 8)) > 0.5).astype(np.float32)
    data = np.repeat(base, 16, axis=0)  # 64 images of 4 binary patterns
    torch.manual_seed(0)
    m = VAE(VAEConfig(height=8, width=8, latent_dim=2, hidden=8, likelihood="bernoulli"))
    x = torch.from_numpy(data)

    def elbo() -> float:
        with torch.no_grad():
            return float(m.log_prob(x, n_samples=20, generator=torch.Generator().manual_seed(0))
                         .mean())

    before = elbo()
    train(m, data, epochs=15, batch_size=16, lr=1e-2, seed=0)
    after = elbo()
    assert after > before + 10.0


# ---- registry, bits/dim, files ----------------------------------------------------------------


def test_bits_per_dim_value():
    assert bits_per_dim(100.0, (1, 8, 8)) == pytest.approx(100.0 / (64 * math.log(2)))
    assert bits_per_dim(100.0, (5, 3, 4, 4)) == pytest.approx(100.0 / (48 * math.log(2)))


def test_build_model_validates_family_keys_and_values():
    assert set(MODEL_FAMILIES) >= {"pixelcnn", "vae"}
    assert isinstance(build_model("vae", latent_dim=3), VAE)
    with pytest.raises(ConfigError, match=r"family must be one of .*got 'flow'"):
        build_model("flow")
    with pytest.raises(ConfigError, match=r"unknown PixelCNNConfig key\(s\) \['level'\]"):
        build_model("pixelcnn", level=4)
    with pytest.raises(ConfigError, match=r"levels must be an integer in \[2, 256\]; got 1"):
        build_model("pixelcnn", levels=1)
    with pytest.raises(ConfigError, match="kernel_size must be odd; got 4"):
        build_model("pixelcnn", kernel_size=4)
    with pytest.raises(ConfigError, match=r"dilations must hold n_blocks=5 .*got \(1, 2\)"):
        build_model("pixelcnn", dilations=(1, 2))
    # The automatic dilation schedule follows the image size.
    assert PixelCNNConfig().dilations == (1, 2, 4, 8, 1)
    assert PixelCNNConfig(height=8, width=8).dilations == (1, 2, 2, 2, 1)
    assert PixelCNNConfig(height=8, width=8, dilations=[1, 1, 1, 1, 1]).dilations == (1,) * 5
    with pytest.raises(ConfigError, match="likelihood must be one of"):
        build_model("vae", likelihood="poisson")
    with pytest.raises(ValueError, match="channel"):
        PixelCNN(PixelCNNConfig(channels=1)).log_prob(torch.rand(2, 3, 32, 32))
    with pytest.raises(TypeError, match="must be a float tensor"):
        PixelCNN().log_prob(torch.zeros(1, 1, 32, 32, dtype=torch.long))


@pytest.mark.parametrize("family", ["pixelcnn", "vae"])
def test_save_load_roundtrip(tmp_path, family):
    torch.manual_seed(0)
    cfg = dict(height=6, width=6, hidden=4)
    model = build_model(family, **cfg)
    save_model(model, tmp_path / "m", metrics={"val_bpd": 1.25})
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["family"] == family and meta["metrics"] == {"val_bpd": 1.25}
    assert meta["config"]["hidden"] == 4 and "torch" in meta["versions"]
    loaded = load_model(tmp_path / "m")
    x = torch.rand(3, 1, 6, 6)
    torch.manual_seed(1)
    a = model.log_prob(x)
    torch.manual_seed(1)
    torch.testing.assert_close(loaded.log_prob(x), a, rtol=0, atol=0)
    assert loaded.config == model.config


def test_save_model_stores_tied_weights_once(tmp_path):
    model = PixelCNN(PixelCNNConfig(height=4, width=4, hidden=4, n_blocks=3, dilations=None))
    model.blocks[2].h_out.weight = model.blocks[1].h_out.weight
    save_model(model, tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["aliases"] == {"blocks.2.h_out.weight": "blocks.1.h_out.weight"}
    loaded = load_model(tmp_path)
    torch.testing.assert_close(loaded.blocks[2].h_out.weight, model.blocks[1].h_out.weight)


def test_load_model_errors(tmp_path):
    with pytest.raises(ModelFileError, match="no model.json"):
        load_model(tmp_path / "nothing")
    model = build_model("pixelcnn", height=4, width=4, hidden=4)
    d = save_model(model, tmp_path / "m")
    meta_path, weights = d / "model.json", d / "weights.safetensors"
    meta = json.loads(meta_path.read_text())

    meta_path.write_text(json.dumps({**meta, "family": "gan9"}))
    with pytest.raises(ModelFileError, match="unknown model family 'gan9'"):
        load_model(d)
    meta_path.write_text(json.dumps({**meta, "config": {**meta["config"], "hidden": 5}}))
    with pytest.raises(ModelFileError, match="shapes that do not match the config"):
        load_model(d)
    meta_path.write_text(json.dumps({**meta, "config": {**meta["config"], "levels": 0}}))
    with pytest.raises(ModelFileError, match="invalid config"):
        load_model(d)
    meta_path.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(d)
    blob = weights.read_bytes()
    meta_path.write_text(json.dumps(meta))
    weights.write_bytes(blob[:50])
    with pytest.raises(ModelFileError, match="does not match model.json"):
        load_model(d)
    import hashlib

    meta_path.write_text(json.dumps({**meta, "weights_sha256": hashlib.sha256(blob[:50])
                                     .hexdigest()}))
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_model(d)
    weights.unlink()
    with pytest.raises(ModelFileError, match="no weights.safetensors"):
        load_model(d)
