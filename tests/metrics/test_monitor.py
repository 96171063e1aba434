"""The Fisher training monitor of a GAN, checked against hand-computed Fisher distances from
naive per-example ``.backward()`` loops."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from fisher_core.metrics import FisherMonitor
from fisher_core.training import train

from ..embeddings.test_afv import EPS, _gan, _naive_grads

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_monitor_records_hand_computed_fisher_distances():
    model = _gan(dtype=torch.float32, seed=2)
    with torch.no_grad():  # spread the untrained generator's samples (well-conditioned I)
        model.gen_ema.to_img.weight.mul_(30.0)
    gen = torch.Generator().manual_seed(0)
    x_train, x_held = torch.rand(20, 1, 8, 8, generator=gen), torch.rand(7, 1, 8, 8, generator=gen)
    mon = FisherMonitor(model, x_train, x_held, every=3, n=8, seed=1)
    assert mon.train_subset.shape[0] == 8 and mon.heldout_subset.shape[0] == 7
    for step in (1, 2, 3, 4):
        mon(SimpleNamespace(kind="step", step=step))
    assert [r["step"] for r in mon.history] == [3]
    mon(SimpleNamespace(kind="end", step=4))
    mon(SimpleNamespace(kind="end", step=4))  # already recorded: no duplicate
    assert [r["step"] for r in mon.history] == [3, 4]

    rec = mon.history[-1]
    fake = model.sample(8, generator=torch.Generator().manual_seed(1))
    g_fake = _naive_grads(model, fake).double()
    mean, var = g_fake.mean(0), g_fake.var(0, unbiased=False)
    for name, subset in (("train", mon.train_subset), ("heldout", mon.heldout_subset)):
        g_real = _naive_grads(model, subset).double()
        v_real, v_fake = (g_real - mean) / (var.sqrt() + EPS), (g_fake - mean) / (var.sqrt() + EPS)
        fd = float((v_real.mean(0) - v_fake.mean(0)).norm())
        gap = (v_real.mean(0) - v_fake.mean(0)) ** 2 / (v_fake.var(0, unbiased=False) + 1e-12)
        assert rec[f"{name}_fd"] == pytest.approx(fd, rel=1e-4)
        assert rec[f"{name}_fsim"] == pytest.approx(math.exp(-10 * float(gap.mean())), rel=1e-3)
    assert mon.best["heldout_fd"] == min(r["heldout_fd"] for r in mon.history)


def test_monitor_keeps_best_weights_and_does_not_change_training():
    x = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = _gan(dtype=torch.float32, seed=3)
    watched = _gan(dtype=torch.float32, seed=3)
    mon = FisherMonitor(watched, x[:16], x[16:], every=2, n=6)
    r1 = train(plain, x[:16], epochs=2, batch_size=8, seed=0)
    r2 = train(watched, x[:16], epochs=2, batch_size=8, seed=0, callback=mon)
    assert r1.history["step_loss"] == r2.history["step_loss"]
    for (k, a), b in zip(plain.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert [r["step"] for r in mon.history] == [2, 4]
    best = mon.best
    assert best["heldout_fd"] == min(r["heldout_fd"] for r in mon.history)
    assert set(mon.best_state) == set(watched.state_dict())
    with pytest.raises(ValueError, match="every must be a positive integer"):
        FisherMonitor(watched, x, x, every=0)
