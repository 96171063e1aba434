"""The energy-based least-squares GAN: log_prob is D, the reference-code losses and updates,
files, and reproducibility."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from fisher_core.models import (
    EBGAN,
    MODEL_FAMILIES,
    ConfigError,
    EBGANConfig,
    build_model,
    load_model,
    save_model,
)
from fisher_core.models.ebgan import ls_discriminator_loss, ls_generator_loss
from fisher_core.training import train

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _gan(seed: int = 0, **kw) -> EBGAN:
    torch.manual_seed(seed)
    cfg = dict(height=8, width=8, latent_dim=4, g_width=4, d_width=3) | kw
    return EBGAN(EBGANConfig(**cfg))


def _manual_d(model: EBGAN, x: torch.Tensor) -> torch.Tensor:
    """D(x) by hand from the modules' effective (spectrally normalised) weights."""
    h = F.pad(2.0 * x - 1.0, (0, 0, 0, 0))
    for i, block in enumerate(model.disc.blocks):
        conv = block[0]
        stride, pad = (1, 1) if i == 0 else (2, 1)
        h = F.leaky_relu(F.conv2d(h, conv.weight, conv.bias, stride=stride, padding=pad), 0.2)
    out = F.linear(h.flatten(1), model.disc.out.weight, model.disc.out.bias).squeeze(1)
    return torch.sigmoid(out) if model.config.sigmoid else out


@pytest.mark.parametrize("sigmoid", [True, False])
def test_log_prob_is_the_discriminator_output(sigmoid):
    model = _gan(sigmoid=sigmoid).eval()
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    lp = model.log_prob(x)
    torch.testing.assert_close(lp, _manual_d(model, x))
    torch.testing.assert_close(lp, model.discriminate(x))
    if sigmoid:
        assert bool(((lp > 0) & (lp < 1)).all())
    # every spectrally normalised weight has spectral norm 1 (up to the power iteration)
    for block in model.disc.blocks:
        w = block[0].weight.detach().flatten(1)
        assert float(torch.linalg.matrix_norm(w, ord=2)) == pytest.approx(1.0, rel=0.05)
    # it depends on D only
    lp.sum().backward()
    assert all(p.grad is None for p in model.gen.parameters())
    assert all(p.grad is not None for p in model.disc.parameters())
    assert not model.normalized


def test_least_squares_losses_match_the_reference_formulas():
    gen = torch.Generator().manual_seed(0)
    d_real, d_fake = torch.rand(6, generator=gen), torch.rand(6, generator=gen)
    fake, ema, eps = (torch.rand(6, 1, 4, 4, generator=gen) for _ in range(3))
    want_d = sum((r - 1) ** 2 for r in d_real) / 6 + sum(f**2 for f in d_fake) / 6
    assert float(ls_discriminator_loss(d_real, d_fake)) == pytest.approx(float(want_d))
    want_g = float(((d_fake - 1) ** 2).mean() + 0.3 * ((fake - ema + eps) ** 2).mean())
    assert float(ls_generator_loss(d_fake, fake, ema, gamma=0.3, noise=eps)) == pytest.approx(
        want_g)
    assert float(ls_generator_loss(d_fake)) == pytest.approx(float(((d_fake - 1) ** 2).mean()))


def test_optimizers_split_generator_and_discriminator():
    model = _gan(d_lr_ratio=2.0, beta1=0.5)
    opts = model.configure_optimizers(1e-3)
    g, d = opts["generator"].param_groups[0], opts["discriminator"].param_groups[0]
    assert (g["lr"], d["lr"], g["betas"], d["betas"]) == (1e-3, 2e-3, (0.5, 0.999), (0.5, 0.999))
    assert {id(p) for p in g["params"]} == {id(p) for p in model.gen.parameters()}
    assert {id(p) for p in d["params"]} == {id(p) for p in model.disc.parameters()}
    assert not any(p.requires_grad for p in model.gen_ema.parameters())
    assert set(model.discriminator_parameter_names()) == {
        f"disc.{n}" for n, _ in model.disc.named_parameters()}


def test_training_step_updates_both_nets_and_the_ema():
    model = _gan(ema_decay=0.75)
    opts = model.configure_optimizers(1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    out = model.training_step(batch, opts)
    assert out["loss"] == pytest.approx(out["d_loss"] + out["g_loss"])
    assert 0 < out["d_real"] < 1 and 0 < out["d_fake"] < 1
    after = model.state_dict()
    for prefix in ("disc.out.parametrizations.weight.original", "gen.inp.weight"):
        assert not torch.equal(before[prefix], after[prefix]), prefix
    # θ_ema ← d θ_ema + (1 − d) θ_G after the G update (EMA and G started equal)
    w_ema = 0.75 * before["gen_ema.inp.weight"] + 0.25 * after["gen.inp.weight"]
    torch.testing.assert_close(after["gen_ema.inp.weight"], w_ema)
    torch.testing.assert_close(after["gen_ema.inp_bn.running_mean"],
                               after["gen.inp_bn.running_mean"])


def test_discriminator_loss_falls_on_a_fixed_batch():
    model = _gan(gamma=0.5, noise_std=0.1)
    opts = model.configure_optimizers(5e-3)
    real = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2)) ** 3
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(3))

    def fixed_loss() -> float:
        model.eval()
        with torch.no_grad():
            loss = ls_discriminator_loss(model.log_prob(real), model.log_prob(model.generate(z)))
        model.train()
        return float(loss)

    start = fixed_loss()
    torch.manual_seed(0)
    for _ in range(25):
        model.training_step(real, opts)
    assert fixed_loss() < start - 0.02


def test_sample_is_seeded_and_leaves_the_model_untouched():
    model = _gan(height=6, width=10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    a = model.sample(5, generator=3)
    b = model.sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (5, 1, 6, 10)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    model.gen_ema.eval()
    torch.testing.assert_close(a, model.generate(z, ema=True).clamp(0, 1))
    model.train()
    model.sample(2)
    assert model.gen_ema.training  # mode restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert model.log_prob(torch.rand(3, 1, 6, 10)).shape == (3,)


def test_save_load_round_trip_is_exact(tmp_path):
    model = _gan(gamma=0.1)
    opts = model.configure_optimizers(1e-2)
    for _ in range(2):
        model.training_step(torch.rand(8, 1, 8, 8), opts)
    model.eval()
    save_model(model, tmp_path / "m", metrics={"steps": 2})
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, EBGAN) and loaded.config == model.config
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["family"] == "ebgan" and meta["config"]["gamma"] == 0.1
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model.log_prob(x), loaded.log_prob(x))
    assert torch.equal(model.sample(3, generator=1), loaded.sample(3, generator=1))


def test_seeded_training_is_reproducible():
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    runs = []
    for _ in range(2):
        model = _gan(seed=4)
        res = train(model, x, epochs=2, batch_size=8, seed=7)
        runs.append((res.history["step_loss"], model.state_dict()))
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) == 6
    for k, v in runs[0][1].items():
        assert torch.equal(v, runs[1][1][k]), k


def test_registry_and_config_validation():
    assert MODEL_FAMILIES["ebgan"] == (EBGAN, EBGANConfig)
    model = build_model("ebgan", height=8, width=8, g_width=4, d_width=3)
    assert model.config.n_scale == 1 and model.disc.blocks[-1][0].stride == (2, 2)
    assert EBGANConfig(height=32, width=32).n_scale == 3
    with pytest.raises(ConfigError, match="EBGANConfig.gamma must be a number"):
        EBGANConfig(gamma=-1.0)
    with pytest.raises(ConfigError, match="EBGANConfig.ema_decay must be a number"):
        EBGANConfig(ema_decay=1.0)
    with pytest.raises(ConfigError, match="EBGANConfig.d_width must be an integer"):
        EBGANConfig(d_width=0)
    with pytest.raises(ConfigError, match="unknown EBGANConfig key"):
        build_model("ebgan", width_mult=2)
    with pytest.raises(ValueError, match="1 channel"):
        _gan().log_prob(torch.rand(2, 3, 8, 8))
