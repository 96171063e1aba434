"""EBM-GAN options: the log-loss objective and its entropy estimate, several G steps per D
step, real images mixed into D's negatives; validation, files written before the options."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import digamma, gammaln

from fisher_core.embeddings.afv import adversarial_fisher_vectors
from fisher_core.models import EBGAN, ConfigError, EBGANConfig, load_model, save_model
from fisher_core.models.ebgan import (
    OBJECTIVES,
    log_discriminator_loss,
    log_generator_loss,
    ls_discriminator_loss,
    ls_generator_loss,
)
from fisher_core.models.ebgan_losses import knn_entropy, mix_real
from fisher_core.training import train

from .test_ebgan import _gan

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _neg_log_sigmoid(a: np.ndarray) -> np.ndarray:
    """−log σ(a) from the definition σ(a) = 1 / (1 + e^(−a)), in float64."""
    return -np.log(1.0 / (1.0 + np.exp(-a.astype(np.float64))))


# ---- the log losses -----------------------------------------------------------------------


def test_log_losses_match_the_naive_formula_bce_and_their_gradients():
    gen = torch.Generator().manual_seed(0)
    a_real = (torch.rand(7, generator=gen) * 10 - 5).requires_grad_()
    a_fake = (torch.rand(5, generator=gen) * 10 - 5).requires_grad_()
    ours = log_discriminator_loss(a_real, a_fake)
    r, f = a_real.detach().numpy(), a_fake.detach().numpy()
    # −log(1 − σ(a)) = −log σ(−a)
    naive = _neg_log_sigmoid(r).mean() + _neg_log_sigmoid(-f).mean()
    assert float(ours.detach()) == pytest.approx(naive, rel=1e-6)
    with torch.no_grad():
        bce = (F.binary_cross_entropy(torch.sigmoid(a_real), torch.ones(7))
               + F.binary_cross_entropy(torch.sigmoid(a_fake), torch.zeros(5)))
    assert float(ours.detach()) == pytest.approx(float(bce), rel=1e-5)
    # gradients: d/da −log σ(a) = σ(a) − 1 and d/da −log(1 − σ(a)) = σ(a), per mean
    ours.backward()
    sig = lambda v: 1.0 / (1.0 + np.exp(-v.astype(np.float64)))  # noqa: E731
    np.testing.assert_allclose(a_real.grad.numpy(), (sig(r) - 1.0) / 7, rtol=1e-5)
    np.testing.assert_allclose(a_fake.grad.numpy(), sig(f) / 5, rtol=1e-5)
    # generator: mean(−log σ(a)) − λ Ĥ
    h = torch.tensor(0.8)
    g = log_generator_loss(a_fake.detach(), h, entropy_weight=0.5)
    assert float(g) == pytest.approx(_neg_log_sigmoid(f).mean() - 0.4, rel=1e-6)
    assert float(log_generator_loss(a_fake.detach())) == pytest.approx(
        _neg_log_sigmoid(f).mean(), rel=1e-6)
    assert float(log_generator_loss(a_fake.detach(), h, entropy_weight=0.0)) == float(
        log_generator_loss(a_fake.detach()))


def test_log_losses_are_finite_at_extreme_logits():
    for a in (torch.tensor([-100.0, 100.0]), torch.tensor([-1e4, 1e4])):
        a_real, a_fake = a.clone().requires_grad_(), a.clone().requires_grad_()
        d = log_discriminator_loss(a_real, a_fake)
        g = log_generator_loss(a_fake)
        (d + g).backward()
        big = float(a[1])
        # each saturated term costs |a|: −log σ(−A) = A, −log(1 − σ(A)) = A
        assert float(d.detach()) == pytest.approx(big, rel=1e-6)  # (A + 0)/2 + (0 + A)/2
        assert float(g.detach()) == pytest.approx(big / 2, rel=1e-6)
        assert torch.isfinite(a_real.grad).all() and torch.isfinite(a_fake.grad).all()
    # the naive log(sigmoid) form is not: σ(−1e4) underflows to 0 in float32
    assert not math.isfinite(float(-torch.log(torch.sigmoid(torch.tensor(-1e4)))))


def test_least_squares_losses_are_still_importable_from_the_model_module():
    d_real, d_fake = torch.tensor([0.9, 0.2]), torch.tensor([0.1, 0.6])
    assert float(ls_discriminator_loss(d_real, d_fake)) == pytest.approx(
        (0.01 + 0.64) / 2 + (0.01 + 0.36) / 2)
    assert float(ls_generator_loss(d_fake)) == pytest.approx((0.81 + 0.16) / 2)


# ---- the entropy estimate -----------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 4, 8])
def test_knn_entropy_of_a_gaussian_sample_is_its_closed_form(d):
    sigma = 0.7
    x = torch.randn(2000, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    want = 0.5 * d * math.log(2 * math.pi * math.e * sigma**2)  # H[N(0, σ² I_d)]
    assert float(knn_entropy(sigma * x)) == pytest.approx(want, abs=0.1)
    assert float(knn_entropy(sigma * x, k=3)) == pytest.approx(want, abs=0.1)
    # scaling the sample by c adds exactly d log c (as for the true entropy)
    assert float(knn_entropy(3.0 * x)) == pytest.approx(
        float(knn_entropy(x)) + d * math.log(3.0), abs=1e-9)


def test_knn_entropy_matches_a_naive_loop_and_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2, 3))  # trailing dimensions flatten to d = 6
    flat = x.reshape(12, -1)
    n, d, k = 12, 6, 2
    rho = []
    for i in range(n):
        dist = sorted(math.dist(flat[i], flat[j]) for j in range(n) if j != i)
        rho.append(dist[k - 1])
    log_vd = d / 2 * math.log(math.pi) - gammaln(d / 2 + 1)
    naive = digamma(n) - digamma(k) + log_vd + d / n * sum(math.log(r) for r in rho)
    xt = torch.tensor(x, requires_grad=True)
    assert float(knn_entropy(xt, k=k).detach()) == pytest.approx(naive, rel=1e-10)
    assert torch.autograd.gradcheck(lambda v: knn_entropy(v, k=k), (xt,))
    # duplicated samples: large but finite, and the float32 result keeps the input's dtype
    dup = torch.zeros(4, 3, requires_grad=True)
    h = knn_entropy(dup)
    h.backward()
    assert h.dtype == torch.float32 and math.isfinite(float(h.detach()))
    assert torch.isfinite(dup.grad).all()
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, N - 1\]"):
        knn_entropy(dup, k=4)


# ---- the log-loss model -------------------------------------------------------------------


def test_log_loss_log_prob_is_log_sigmoid_of_the_logit():
    model = _gan(objective="log_loss").eval()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    logit = model.disc.logit(model._to_disc_input(x))
    lp = model.log_prob(x)
    torch.testing.assert_close(lp, F.logsigmoid(logit))
    assert bool((lp < 0).all())
    # same network, least-squares read-out: σ of the same logit
    ls = _gan(objective="least_squares").eval()
    torch.testing.assert_close(ls.log_prob(x), torch.sigmoid(logit))
    # ∇θ log σ(a) = (1 − σ(a)) ∇θ a: the AFV score of the log-loss model
    w = model.disc.out.parametrizations.weight.original
    g_lp, = torch.autograd.grad(model.log_prob(x[:1]).sum(), w)
    a1 = model.disc.logit(model._to_disc_input(x[:1]))
    g_a, = torch.autograd.grad(a1.sum(), w)
    torch.testing.assert_close(g_lp, (1 - torch.sigmoid(a1.detach())) * g_a)
    afv = adversarial_fisher_vectors(model, x, n_generator_samples=32, dim=None,
                                     projection=None)
    n_params = sum(p.numel() for p in model.disc.parameters())
    assert afv.shape == (6, n_params) and np.isfinite(afv).all()


def test_log_loss_training_is_finite_and_separates_real_from_generated():
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) ** 3
    model = _gan(seed=1, objective="log_loss", g_steps=2, real_mix=0.2, gamma=0.1,
                 noise_std=0.05)
    res = train(model, x, epochs=3, batch_size=16, seed=3)
    metrics = res.history["step_metrics"]
    assert len(res.history["step_loss"]) == 12
    for key in ("loss", "d_loss", "g_loss", "entropy", "mixed", "d_real", "d_fake"):
        assert all(math.isfinite(v) for v in metrics[key]), key
    assert all(v <= 0 for v in metrics["d_real"] + metrics["d_fake"])  # log σ(a)
    model.eval()
    with torch.no_grad():
        real_score = float(model.log_prob(x).mean())
        fake_score = float(model.log_prob(model.sample(64, generator=0)).mean())
    assert real_score > fake_score
    # a last batch of one image: no neighbour, so no entropy term, but a finite step
    out = model.train().training_step(x[:1], model.configure_optimizers(1e-3))
    assert math.isfinite(out["loss"]) and "entropy" not in out


def _counting(fn, calls: dict[str, int], name: str):
    def wrapper(*args, **kwargs):
        calls[name] += 1
        return fn(*args, **kwargs)
    return wrapper


@pytest.mark.parametrize(("k", "objective"), [(1, "least_squares"), (3, "log_loss")])
def test_g_steps_makes_exactly_that_many_generator_updates(k, objective, monkeypatch):
    model = _gan(g_steps=k, objective=objective)
    opts = model.configure_optimizers(1e-3)
    calls = {"generator": 0, "discriminator": 0, "ema": 0}
    for name, opt in opts.items():
        monkeypatch.setattr(opt, "step", _counting(opt.step, calls, name))
    monkeypatch.setattr(model, "update_ema", _counting(model.update_ema, calls, "ema"))
    batch = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        model.training_step(batch, opts)
    # per step: k G updates, one D update, the EMA after every G update
    assert calls == {"generator": 2 * k, "discriminator": 2, "ema": 2 * k}


def _negatives_with_real_rows(p: float, steps: int = 10, b: int = 32) -> tuple[int, int]:
    """How many rows of D's negative batches are real images, over ``steps`` steps."""
    model = _gan(real_mix=p)
    opts = model.configure_optimizers(1e-3)
    seen: list[torch.Tensor] = []
    hook = model.disc.blocks[0].register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].detach().clone()))
    torch.manual_seed(5)
    n_real = 0
    for s in range(steps):
        batch = torch.rand(b, 1, 8, 8, generator=torch.Generator().manual_seed(100 + s))
        seen.clear()
        out = model.training_step(batch, opts)
        real_in, neg_in = seen[-2], seen[-1]  # the D update: real batch, then negatives
        same = (neg_in[:, None] == real_in[None]).flatten(2).all(-1)  # (B, B)
        n_real += int(same.any(1).sum())
        if p > 0:
            assert out["mixed"] == pytest.approx(float(same.any(1).float().mean()))
    hook.remove()
    return n_real, steps * b


def test_real_mix_puts_real_images_in_ds_negative_batch():
    n, total = _negatives_with_real_rows(0.0)
    assert n == 0
    n, total = _negatives_with_real_rows(0.9)
    # Binomial(320, 0.9): mean 288, sd 5.4; a seeded draw, checked at ±4 sd
    assert abs(n - 0.9 * total) < 4 * math.sqrt(total * 0.9 * 0.1), n


def test_mix_real_draws_rows_with_probability_p_without_replacement():
    gen = torch.Generator().manual_seed(0)
    fake = -torch.ones(20000, 1, 2, 2)
    real = torch.arange(20000.0)[:, None, None, None].expand(20000, 1, 2, 2)
    mixed, is_real = mix_real(fake, real, 0.3, generator=gen)
    share = float(is_real.float().mean())
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 20000), share
    assert bool((mixed[~is_real] == -1).all())
    picked = mixed[is_real][:, 0, 0, 0]
    assert len(picked.unique()) == len(picked)  # each real image at most once
    none, flags = mix_real(fake[:5], real[:5], 0.0, generator=gen)
    assert torch.equal(none, fake[:5]) and not flags.any()
    with pytest.raises(ValueError, match="real must hold at least 5 images"):
        mix_real(fake[:5], real[:3], 0.5)


# ---- configuration and files ----------------------------------------------------------------


@pytest.mark.parametrize(("kw", "match"), [
    ({"objective": "hinge"},
     r"EBGANConfig\.objective must be one of 'least_squares', 'log_loss'; got 'hinge'\."),
    ({"objective": "log_loss", "sigmoid": False}, r"objective='log_loss' needs sigmoid=True"),
    ({"g_steps": 0}, r"EBGANConfig\.g_steps must be an integer in \[1, 100\]; got 0\."),
    ({"g_steps": 2.0}, r"EBGANConfig\.g_steps must be an integer"),
    ({"real_mix": 1.0}, r"EBGANConfig\.real_mix must be a number in \[0\.0, 1\.0\); got 1\.0"),
    ({"real_mix": -0.1}, r"EBGANConfig\.real_mix must be a number"),
    ({"entropy_weight": -1.0}, r"EBGANConfig\.entropy_weight must be a number in >= 0"),
    ({"entropy_weight": math.nan}, r"EBGANConfig\.entropy_weight must be a number"),
])
def test_config_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        EBGANConfig(**kw)


def test_defaults_are_the_reference_behaviour():
    cfg = EBGANConfig()
    assert (cfg.objective, cfg.g_steps, cfg.real_mix, cfg.entropy_weight) == (
        "least_squares", 1, 0.0, 0.1)
    assert OBJECTIVES == ("least_squares", "log_loss")
    assert EBGAN.saved_defaults == {"objective": "least_squares", "entropy_weight": 0.1,
                                    "g_steps": 1, "real_mix": 0.0}


def test_save_load_keeps_the_options_and_old_files_load_with_defaults(tmp_path):
    model = _gan(objective="log_loss", g_steps=2, real_mix=0.25, entropy_weight=0.5)
    opts = model.configure_optimizers(1e-2)
    model.training_step(torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                        opts)
    model.eval()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config
    assert (loaded.config.objective, loaded.config.g_steps, loaded.config.real_mix,
            loaded.config.entropy_weight) == ("log_loss", 2, 0.25, 0.5)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model.log_prob(x), loaded.log_prob(x))
    # a model saved before the options existed: its model.json has none of them
    ls = _gan()
    save_model(ls.eval(), tmp_path / "old")
    meta_path = tmp_path / "old" / "model.json"
    meta = json.loads(meta_path.read_text())
    for key in ("objective", "entropy_weight", "g_steps", "real_mix"):
        del meta["config"][key]
    meta_path.write_text(json.dumps(meta))
    old = load_model(tmp_path / "old")
    assert old.config == ls.config
    assert torch.equal(old.log_prob(x), ls.log_prob(x))
