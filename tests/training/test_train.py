"""Tests of the one training loop: reproducibility, resume, cancel, NaN, early stopping, hooks."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from fisher_core.models import PixelCNN, PixelCNNConfig, bits_per_dim, nll_training_step
from fisher_core.training import CheckpointError, ProgressEvent, train

RNG = np.random.default_rng(0)
X = (RNG.random((40, 1, 5, 5)) < 0.3).astype(np.float32)
X_VAL = (RNG.random((12, 1, 5, 5)) < 0.3).astype(np.float32)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: extra intra-op threads only add synchronisation, which on a loaded 2-core
    machine costs up to 40× (measured). The caller's setting is restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(seed: int = 0) -> PixelCNN:
    torch.manual_seed(seed)
    return PixelCNN(PixelCNNConfig(height=5, width=5, levels=2, hidden=4, n_blocks=2,
                                   dilations=None, head_hidden=4))


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [v.detach().clone() for v in model.state_dict().values()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


KW = dict(val_images=X_VAL, batch_size=16, lr=1e-2, seed=3)


def test_same_seed_same_losses_and_caller_rng_untouched():
    model = _model()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = train(model, X, epochs=2, **KW)
    assert torch.equal(torch.rand(3), expected_next)  # the loop forks torch's RNG
    b = train(_model(), X, epochs=2, **KW)
    c = train(_model(), X, epochs=2, **{**KW, "seed": 4})
    assert a.history["step_loss"] == b.history["step_loss"]
    assert a.history["step_loss"] != c.history["step_loss"]
    assert a.steps == 6 and len(a.history["step_loss"]) == 6 and a.stopped_reason == "completed"


def test_validation_history_matches_independent_evaluation():
    model = _model()
    res = train(model, X, epochs=3, **KW)
    # The best epoch's weights are restored: its recorded NLL is the model's NLL now.
    nll = float(-model.log_prob(torch.from_numpy(X_VAL)).detach().double().mean())
    assert res.best_val_nll == pytest.approx(nll, rel=1e-6)
    assert res.history["epoch_val_nll"][res.best_epoch - 1] == pytest.approx(nll, rel=1e-6)
    assert res.history["epoch_bits_per_dim"][0] == pytest.approx(
        bits_per_dim(res.history["epoch_val_nll"][0], (1, 5, 5)))
    assert res.best_val_nll == min(res.history["epoch_val_nll"])


def test_resume_after_cancel_gives_the_uninterrupted_weights(tmp_path):
    full_model = _model()
    full = train(full_model, X, epochs=4, **KW)
    # First run: checkpoints after epochs 1 and 2, cancelled mid-epoch 3.
    stop = threading.Event()

    def cb(ev: ProgressEvent) -> None:
        if ev.kind == "step" and ev.step == 8:
            stop.set()

    part = train(_model(), X, epochs=4, checkpoint_dir=tmp_path, cancel=stop, callback=cb, **KW)
    assert part.stopped_reason == "cancelled" and part.steps == 8
    resumed_model = _model(seed=99)  # different init: everything must come from the checkpoint
    resumed = train(resumed_model, X, epochs=4, checkpoint_dir=tmp_path, resume=True, **KW)
    assert resumed.history["step_loss"] == full.history["step_loss"]
    assert resumed.history["epoch_val_nll"] == full.history["epoch_val_nll"]
    assert _same(_weights(resumed_model), _weights(full_model))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json",
                                                          "ckpt-0004.safetensors"]


def test_resume_with_other_settings_is_refused(tmp_path):
    train(_model(), X, epochs=1, checkpoint_dir=tmp_path, **KW)
    with pytest.raises(CheckpointError, match="resume with the same settings"):
        train(_model(), X, epochs=2, checkpoint_dir=tmp_path, resume=True,
              **{**KW, "batch_size": 8})
    (tmp_path / "checkpoint.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="unreadable"):
        train(_model(), X, epochs=2, checkpoint_dir=tmp_path, resume=True, **KW)
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        train(_model(), X, epochs=1, resume=True)


def test_cancel_callable_and_time_limit_stop_before_the_next_step():
    calls = []
    res = train(_model(), X, epochs=3, cancel=lambda: len(calls) >= 2,
                callback=lambda ev: calls.append(ev) if ev.kind == "step" else None, **KW)
    assert res.stopped_reason == "cancelled" and res.steps == 2
    res = train(_model(), X, epochs=3, max_seconds=0.0, **KW)
    assert res.stopped_reason == "time_limit" and res.steps == 0


def test_nan_loss_stops_with_reason_and_restores_finite_weights():
    model = _model()
    start = _weights(model)
    calls = []

    def poisoned_step(m, batch, opts):
        calls.append(1)
        if len(calls) == 3:
            with torch.no_grad():
                m.head_in.bias.fill_(float("nan"))
        return nll_training_step(m, batch, opts)

    res = train(model, X, epochs=2, step_fn=poisoned_step, **KW)
    assert res.stopped_reason == "nan"
    assert "loss became nan at epoch 1, step 3" in res.message
    assert "epoch-start weights were restored" in res.message
    assert res.steps == 2 and _same(_weights(model), start)


def test_early_stopping_restores_the_best_epoch():
    def ascend(m, batch, opts):  # makes the model worse every step
        (opt,) = opts.values()
        opt.zero_grad()
        loss = m.log_prob(batch).mean()
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    model = _model()
    weights_after_epoch = []

    def cb(ev):
        if ev.kind == "epoch":
            weights_after_epoch.append(_weights(model))

    res = train(model, X, epochs=10, early_stopping_patience=2, step_fn=ascend, callback=cb, **KW)
    assert res.stopped_reason == "early_stopping" and res.epochs_completed == 3
    assert res.best_epoch == 1 and _same(_weights(model), weights_after_epoch[0])
    assert "did not improve for 2 epoch(s)" in res.message


def test_progress_events_report_steps_epochs_and_samples():
    events: list[ProgressEvent] = []
    train(_model(), X, epochs=2, n_samples=3, callback=events.append, **KW)
    kinds = [e.kind for e in events]
    assert kinds == ["step"] * 3 + ["epoch"] + ["step"] * 3 + ["epoch", "end"]
    assert [e.step for e in events if e.kind == "step"] == [1, 2, 3, 4, 5, 6]
    assert all(e.total_steps == 6 for e in events)
    ep = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in ep] == [1, 2]
    assert ep[0].samples.shape == (3, 1, 5, 5) and set(np.unique(ep[0].samples)) <= {0.0, 1.0}
    assert ep[1].bits_per_dim == pytest.approx(bits_per_dim(ep[1].val_nll, (1, 5, 5)))
    assert events[-1].message == "trained 2 epoch(s)."


class _TwoPlayer(nn.Module):
    """A toy with two optimizers, like a GAN: a linear 'discriminator', a shift 'generator'."""

    def __init__(self):
        super().__init__()
        self.d = nn.Linear(25, 1)
        self.g = nn.Parameter(torch.zeros(25))

    def log_prob(self, x):
        return self.d(x.flatten(1))[:, 0]

    def configure_optimizers(self, lr):
        return {"d": torch.optim.Adam(self.d.parameters(), lr=lr, betas=(0.0, 0.999)),
                "g": torch.optim.SGD([self.g], lr=lr, momentum=0.9)}

    def training_step(self, batch, opts):
        fake = torch.sigmoid(self.g).expand_as(batch.flatten(1))
        opts["d"].zero_grad()
        d_loss = ((self.d(batch.flatten(1)) - 1) ** 2).mean() + (self.d(fake.detach()) ** 2).mean()
        d_loss.backward()
        opts["d"].step()
        opts["g"].zero_grad()
        g_loss = ((self.d(fake) - 1) ** 2).mean()
        g_loss.backward()
        opts["g"].step()
        return {"loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}


def test_model_hooks_with_two_optimizers_resume_exactly(tmp_path):
    torch.manual_seed(0)
    full = _TwoPlayer()
    ref = train(full, X, epochs=3, batch_size=16, lr=1e-2, seed=0)
    assert set(ref.history["step_metrics"]) == {"loss", "g_loss"}
    torch.manual_seed(0)
    part = _TwoPlayer()
    train(part, X, epochs=1, batch_size=16, lr=1e-2, seed=0, checkpoint_dir=tmp_path)
    torch.manual_seed(1)
    resumed = _TwoPlayer()
    res = train(resumed, X, epochs=3, batch_size=16, lr=1e-2, seed=0, checkpoint_dir=tmp_path,
                resume=True)
    assert res.history["step_metrics"]["g_loss"] == ref.history["step_metrics"]["g_loss"]
    assert _same(_weights(resumed), _weights(full))


def test_lr_and_batch_size_default_to_the_model_family_settings():
    seen = []

    def spy(m, batch, opts):
        seen.append((opts["main"].param_groups[0]["lr"], batch.shape[0]))
        return nll_training_step(m, batch, opts)

    train(_model(), X, epochs=1, step_fn=spy)
    assert seen[0] == (PixelCNN.training_defaults["lr"], PixelCNN.training_defaults["batch_size"])
    seen.clear()
    train(_model(), X, epochs=1, step_fn=spy, lr=0.5, batch_size=7)
    assert seen[0] == (0.5, 7) and len(seen) == 6


def test_input_validation_messages():
    with pytest.raises(ValueError, match=r"train_images must hold finite values in \[0, 1\]"):
        train(_model(), X * 255, epochs=1)
    with pytest.raises(ValueError, match="train_images must have shape"):
        train(_model(), X[:, 0], epochs=1)
    with pytest.raises(ValueError, match="val_images must have the same"):
        train(_model(), X, val_images=X[:, :, :4], epochs=1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got 0"):
        train(_model(), X, epochs=1, batch_size=0)
    with pytest.raises(TypeError, match="must return a dict with a 'loss'"):
        train(_model(), X, epochs=1, step_fn=lambda m, b, o: 1.0)
