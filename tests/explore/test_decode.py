"""Decoders: losses against naive formulas, training through the shared loop (tuple data),
held-out errors, and exact save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fisher_core.explore import (
    Decoder,
    DecoderConfig,
    decoder_skill,
    decoder_warning,
    default_likelihood,
    load_decoder,
    save_decoder,
    train_decoder,
)
from fisher_core.models import ConfigError, ModelFileError
from fisher_core.training import train

pytestmark = pytest.mark.usefixtures("single_torch_thread")


# ---- train() with tuple data ----------------------------------------------------------------


class _Regressor(nn.Module):
    """y ≈ w·z + b with a per-example squared error; records the batches it sees."""

    def __init__(self, k: int, per_example: bool = True):
        super().__init__()
        self.lin = nn.Linear(k, 1)
        self.per_example = per_example
        self.seen: list[tuple] = []

    def errors(self, z, y):
        return (self.lin(z)[:, 0] - y) ** 2

    def training_step(self, batch, opts):
        self.seen.append(tuple((t.dtype, tuple(t.shape)) for t in batch))
        (opt,) = opts.values()
        opt.zero_grad()
        loss = self.errors(batch[0], batch[1]).mean()
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    def validation_loss(self, batch):
        e = self.errors(batch[0], batch[1])
        return e if self.per_example else e.mean()  # a batch mean must be weighted by B


RNG = np.random.default_rng(0)
Z = RNG.standard_normal((50, 3)).astype(np.float32)
Y = Z @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3
Z_VAL = RNG.standard_normal((13, 3)).astype(np.float32)
Y_VAL = Z_VAL @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3


@pytest.mark.parametrize("per_example", [True, False])
def test_train_on_tuples_batches_and_validation_loss(per_example):
    torch.manual_seed(0)
    model = _Regressor(3, per_example)
    labels = np.arange(50)  # an integer array travels as int64
    res = train(model, (Z, Y, labels), val_images=(Z_VAL, Y_VAL, np.arange(13)), epochs=4,
                batch_size=16, lr=0.05, seed=1, n_samples=3, eval_batch_size=5,
                step_fn=lambda m, b, o: m.training_step(b[:2], o) | {"n": float(len(b))})
    assert model.seen[0] == ((torch.float32, (16, 3)), (torch.float32, (16,)))
    assert [s[0][1][0] for s in model.seen[:4]] == [16, 16, 16, 2] and res.steps == 16
    assert res.history["step_metrics"]["n"] == [3.0] * 16
    # best weights restored: the recorded validation loss is the mean error now (eval batches
    # of 5 do not divide 13, so a batch-mean validation_loss must be weighted by batch size)
    with torch.no_grad():
        expected = float(model.errors(torch.from_numpy(Z_VAL), torch.from_numpy(Y_VAL))
                         .double().mean())
    assert res.best_val_nll == pytest.approx(expected, rel=1e-6)
    assert res.history["epoch_bits_per_dim"] == [None] * 4
    assert res.history["epoch_val_nll"][-1] < res.history["epoch_val_nll"][0]


def test_train_on_tuples_is_reproducible_and_checks_its_inputs():
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(train(_Regressor(3), (Z, Y), epochs=2, batch_size=8, lr=0.1, seed=3))
    assert runs[0].history["step_loss"] == runs[1].history["step_loss"]
    with pytest.raises(ValueError, match="same first dimension"):
        train(_Regressor(3), (Z, Y[:-1]), epochs=1)
    with pytest.raises(ValueError, match="shaped like train_images"):
        train(_Regressor(3), (Z, Y), val_images=(Z_VAL[:, :2], Y_VAL), epochs=1)
    with pytest.raises(TypeError, match="both be image arrays or both tuples"):
        train(_Regressor(3), (Z, Y), val_images=Z_VAL, epochs=1)
    with pytest.raises(TypeError, match="needs a step function"):
        train(nn.Linear(3, 1), (Z, Y), epochs=1)
    no_val = type("NoVal", (nn.Module,), {"training_step": _Regressor.training_step})
    with pytest.raises(TypeError, match=r"needs NoVal.validation_loss"):
        train(no_val(), (Z, Y), val_images=(Z_VAL, Y_VAL), epochs=1)


# ---- the decoder --------------------------------------------------------------------------


def _decoder(likelihood: str, levels: int = 4, seed: int = 0, **kw) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(DecoderConfig(in_dim=5, channels=2, height=6, width=7,
                                 likelihood=likelihood, levels=levels, hidden=16,
                                 base_channels=8, min_channels=4, **kw))


def test_losses_and_means_match_naive_formulas():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 5, generator=g)
    x = torch.rand(3, 2, 6, 7, generator=g)
    with torch.no_grad():
        d = _decoder("bernoulli")
        p = torch.sigmoid(d(z)).double()
        naive = -(x * p.log() + (1 - x) * (1 - p).log()).mean(dim=(1, 2, 3))
        torch.testing.assert_close(d.loss(z, x).double(), naive, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(d.mean(z).double(), p)

        d = _decoder("gaussian")
        m = torch.sigmoid(d(z)).double()
        torch.testing.assert_close(d.loss(z, x).double(), ((m - x) ** 2).mean(dim=(1, 2, 3)),
                                   rtol=1e-5, atol=1e-7)

        d = _decoder("categorical", levels=4)
        logits = d(z).double().numpy()  # (B, C, L, H, W)
        xs = x.numpy()
        nll = np.zeros(3)
        mean = np.zeros_like(xs)
        for b, c, i, j in np.ndindex(3, 2, 6, 7):
            v = logits[b, c, :, i, j]
            logp = v - np.log(np.exp(v).sum())
            nll[b] -= logp[int(np.round(xs[b, c, i, j] * 3))] / (2 * 6 * 7)
            mean[b, c, i, j] = (np.exp(logp) * np.arange(4) / 3).sum()
        np.testing.assert_allclose(d.loss(z, x).numpy(), nll, rtol=1e-5)
        np.testing.assert_allclose(d.decode(z.numpy()), mean, rtol=1e-5, atol=1e-6)


def test_decode_standardises_raw_vectors_with_the_stored_statistics():
    d = _decoder("gaussian")
    ref = _decoder("gaussian")  # same init, identity standardisation
    mean, std = np.arange(5.0) * 10, np.array([1.0, 2.0, 0.0, 4.0, 5.0])  # a constant column
    d.set_standardization(mean, std)
    z = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32) * 3 + mean
    safe = np.where(std > 0, std, 1.0)
    np.testing.assert_allclose(d.decode(z), ref.decode((z - mean) / safe), rtol=1e-5, atol=1e-6)
    assert d.decode(z[0]).shape == (2, 6, 7)
    with pytest.raises(ValueError, match=r"z must be \(M, 5\) embedding vectors"):
        d.decode(np.zeros((2, 4)))


def test_likelihood_choice_and_config_errors():
    assert [default_likelihood(v) for v in (None, 2, 4, 256)] == [
        "gaussian", "bernoulli", "categorical", "categorical"]
    with pytest.raises(ValueError, match=r"levels must be None or an integer in \[2, 256\]"):
        default_likelihood(1)
    with pytest.raises(ConfigError, match="likelihood must be one of"):
        DecoderConfig(in_dim=3, likelihood="poisson")
    with pytest.raises(ConfigError, match=r"in_dim must be an integer"):
        DecoderConfig(in_dim=0)
    assert DecoderConfig(in_dim=3, height=32, width=32).n_up == 3
    assert DecoderConfig(in_dim=3, height=8, width=8).n_up == 1


def _toy_set(n: int = 240, seed: int = 0):
    """8×8 images made of two blobs whose brightness is set by a 2-d embedding."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0, 1, (n, 2)).astype(np.float32)
    yy, xx = np.mgrid[:8, :8]
    blob_a = np.exp(-((yy - 2) ** 2 + (xx - 2) ** 2) / 3.0)
    blob_b = np.exp(-((yy - 5) ** 2 + (xx - 5) ** 2) / 3.0)
    images = 0.8 * (z[:, :1, None] * blob_a + z[:, 1:, None] * blob_b)[:, None]  # (n, 1, 8, 8)
    return z * 7 - 3, images.astype(np.float32)  # raw embedding not centred, not unit scale


def test_training_improves_reconstruction_and_reports_held_out_errors():
    z, x = _toy_set()
    res = train_decoder(z, x, epochs=12, batch_size=32, lr=3e-3, seed=0, hidden=32,
                        base_channels=16, max_seconds=None)
    va = res.val_index
    assert res.metrics["n_val"] == va.size == 24 and res.metrics["n_train"] == 216
    mse = float(((res.decoder.decode(z[va]) - x[va]) ** 2).mean())
    assert res.metrics["val_mse"] == pytest.approx(mse, rel=1e-5)
    # far better than the best constant image (the training mean) ...
    tr = np.setdiff1d(np.arange(len(z)), va)
    const = float(((x[tr].mean(0) - x[va]) ** 2).mean())
    assert mse < 0.2 * const
    # ... and than the same decoder before training
    torch.manual_seed(0)
    fresh = Decoder(res.decoder.config)
    fresh.set_standardization(z[tr].mean(0), z[tr].std(0))
    assert mse < 0.1 * float(((fresh.decode(z[va]) - x[va]) ** 2).mean())
    np.testing.assert_allclose(res.decoder.in_mean.numpy(), z[tr].mean(0), rtol=1e-6)


def test_binary_images_use_bce_and_report_it():
    z, x = _toy_set(n=60)
    xb = (x > 0.3).astype(np.float32)
    res = train_decoder(z, xb, levels=2, epochs=1, batch_size=32, hidden=8, base_channels=4,
                        max_seconds=None)
    d, va = res.decoder, res.val_index
    assert d.config.likelihood == "bernoulli"
    p = d.decode(z[va]).astype(np.float64)
    bce = -(xb[va] * np.log(p) + (1 - xb[va]) * np.log(1 - p)).mean()
    assert res.metrics["val_bce"] == pytest.approx(bce, rel=1e-4)
    with pytest.raises(ValueError, match="same N ≥ 2"):
        train_decoder(z[:5], x[:4])


def test_save_load_round_trip_is_exact(tmp_path):
    d = _decoder("categorical", levels=5)
    d.set_standardization(np.arange(5.0), np.full(5, 2.0))
    save_decoder(d, tmp_path / "dec", metrics={"val_mse": 0.1})
    back = load_decoder(tmp_path / "dec")
    assert back.config == d.config and not back.training
    for (k, v), (k2, v2) in zip(d.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    z = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    assert np.array_equal(back.decode(z), d.decode(z))
    weights = tmp_path / "dec" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelFileError, match="checksum differs"):
        load_decoder(tmp_path / "dec")
    with pytest.raises(ModelFileError, match="cannot read a saved decoder"):
        load_decoder(tmp_path / "missing")
    with pytest.raises(TypeError, match="decoder must be a Decoder"):
        save_decoder(nn.Linear(2, 2), tmp_path / "x")


def test_a_decoder_that_learned_nothing_is_flagged_with_its_numbers():
    """Issue 15: a faces decoder hit its time cap after 0 epochs and every decoded image was
    flat grey, with no warning."""
    z, x = _toy_set()
    good = train_decoder(z, x, epochs=12, batch_size=32, lr=3e-3, seed=0, hidden=32,
                         base_channels=16, max_seconds=None)
    va, tr = good.val_index, np.setdiff1d(np.arange(len(z)), good.val_index)
    base = float(((x[va] - x[tr].mean(0)) ** 2).mean())
    assert good.metrics["val_mse_mean_image"] == pytest.approx(base, rel=1e-6)
    assert decoder_skill(good.metrics) == pytest.approx(1 - good.metrics["val_mse"] / base)
    assert decoder_skill(good.metrics) > 0.8 and decoder_warning(good.metrics) is None

    noise = np.random.default_rng(1).normal(size=z.shape).astype(np.float32)  # says nothing
    blind = train_decoder(noise, x, epochs=3, batch_size=32, seed=0, hidden=32,
                          base_channels=16, max_seconds=None)
    assert decoder_skill(blind.metrics) < 0.2
    assert decoder_warning(blind.metrics).startswith("barely learned: held-out error")

    capped = train_decoder(z, x, epochs=5, batch_size=32, seed=0, hidden=32,
                           base_channels=16, max_seconds=1e-9)
    metrics = capped.metrics | {"epochs": capped.train_result.epochs_completed}
    assert capped.metrics["time_capped"] == 1.0 and metrics["epochs"] == 0
    assert decoder_warning(metrics).startswith(
        "trained for no complete epoch (it hit its time cap); its images are noise")
    assert decoder_warning({"val_mse": 0.1}) is None  # older decoders: nothing to judge by


def test_auto_time_budget_scales_with_the_data():
    z, x = _toy_set(n=64)
    res = train_decoder(z, x, epochs=1, batch_size=32, seed=0, hidden=32, base_channels=16,
                        max_seconds="auto")
    assert res.train_result.epochs_completed == 1
    with pytest.raises(ValueError, match="max_seconds must be a number, None or 'auto'"):
        train_decoder(z, x, epochs=1, max_seconds="soon")
