"""The Fisher monitor for every family (issue 18): a likelihood model's scores ∇θ log p(x)
against naive per-example ``.backward()`` loops, the patch GMM's against its closed-form
Fisher vectors, and the training-set-size sweep parting training from held-out images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fisher_core.data import load_builtin
from fisher_core.embeddings.afv import generator_samples
from fisher_core.fisher import fisher_vector
from fisher_core.metrics import FisherMonitor
from fisher_core.models import build_model
from fisher_core.workspace import (
    RunLog,
    Workspace,
    list_models,
    saved_monitor,
    train_and_save,
    training_size_sweep,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _naive(model, x):
    rows = []
    for xi in x:
        model.zero_grad()
        model.log_prob(xi[None]).sum().backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double())
    return torch.stack(rows)


def test_likelihood_model_scores_against_a_naive_loop():
    torch.manual_seed(0)
    model = build_model("pixelcnn", channels=1, height=4, width=4, levels=4, hidden=4,
                        n_blocks=1, head_hidden=4).double()
    x = torch.randint(0, 4, (30, 1, 4, 4), generator=torch.Generator().manual_seed(1)) / 3.0
    mon = FisherMonitor(model, x[:20].double(), x[20:].double(), n=8, seed=3,
                        projection=None)
    assert not mon.energy and not mon.keep_best
    rec = mon.evaluate(5)
    model.eval()
    fake = generator_samples(model, 8, seed=3, batch_size=64).double()
    g_fake = _naive(model, fake)
    mean, sd = g_fake.mean(0), g_fake.var(0, unbiased=False).sqrt()
    v_fake = (g_fake - mean) / (sd + 1e-6)
    v = {k: (_naive(model, s) - mean) / (sd + 1e-6)
         for k, s in (("train", mon.train_subset), ("heldout", mon.heldout_subset))}
    for k in ("train", "heldout"):
        ref = float((v[k].mean(0) - v_fake.mean(0)).norm())
        assert rec[f"{k}_fd"] == pytest.approx(ref, rel=1e-4)
    assert rec["train_heldout_fd"] == pytest.approx(
        float((v["train"].mean(0) - v["heldout"].mean(0)).norm()), rel=1e-4)
    assert mon.best_state is None  # a likelihood model keeps its best validation epoch


def test_patch_gmm_scores_are_closed_form_fisher_vectors():
    ds = load_builtin("digits").subset(np.arange(300))
    run = train_and_save(ds, "gmm", config={"n_components": 4}, monitor=False)
    model = run.model
    mon = FisherMonitor(model, ds.images[:100], ds.images[200:], n=16, seed=2)
    rec = mon.evaluate(1)
    fake = generator_samples(model, 16, seed=2, batch_size=64).numpy()

    def v(images):
        desc = model.descriptor().transform(np.asarray(images))
        return np.sqrt(desc.shape[1]) * fisher_vector(desc, model.mixture(), power=None,
                                                      l2=False, dtype="float64")

    mean = v(fake).mean(0)
    ref = np.linalg.norm(v(mon.train_subset.numpy()).mean(0) - mean)
    assert rec["train_fd"] == pytest.approx(ref, rel=1e-6)


def test_every_family_saves_its_monitor(tmp_path):
    ws = Workspace(tmp_path)
    ds = load_builtin("digits").subset(np.arange(200))
    log = RunLog()
    train_and_save(ds, "pixelcnn", config={"hidden": 4, "n_blocks": 2, "head_hidden": 4},
                   epochs=2, batch_size=32, workspace=ws, name="px", dataset_key="d", log=log)
    mon = saved_monitor(ws, "px")
    assert mon["energy"] is False and mon["best"] is None
    assert len(mon["history"]) >= 2 and mon["history"] == log.state()["monitor"]
    assert [e.name for e in list_models(ws, "d")] == ["px"]  # no "-best" copy
    train_and_save(ds, "gmm", config={"n_components": 3}, workspace=ws, name="g",
                   dataset_key="d")
    assert saved_monitor(ws, "g")["history"][-1]["train_fd"] > 0
    train_and_save(ds, "pixelcnn", config={"hidden": 4, "n_blocks": 2, "head_hidden": 4},
                   epochs=1, workspace=ws, name="quiet", dataset_key="d", monitor=False)
    assert saved_monitor(ws, "quiet") is None


def test_size_sweep_parts_training_and_heldout_images_when_data_is_scarce():
    """Over-fitting made visible (Zhai et al. 2019): trained for the same steps on 30 images,
    the PixelCNN's scores put its training images much closer to its own samples than the
    held-out ones; on 600 images the two distances are close."""
    ds = load_builtin("digits")
    seen = []
    rows = training_size_sweep(ds, "pixelcnn", [600, 30], steps=200,
                               progress=lambda f, m: seen.append((f, m)))
    assert [r["n_train"] for r in rows] == [30, 600]
    assert rows[0]["steps"] == 200 and 200 <= rows[1]["steps"] < 200 + 19  # whole epochs
    small, large = (r["heldout_fd"] / r["train_fd"] for r in rows)
    # measured (seeds 0, 1): 12.7, 15.3 on 30 images; 0.94, 0.82 on 600
    assert small > 4.0 and small > 4.0 * large, (small, large)
    assert rows[0]["val_nll"] > rows[1]["val_nll"]  # the small run generalises worse
    assert seen[-1] == (1.0, "done")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"family": "nope", "sizes": [10, 20]}, "unknown family 'nope'; choose one of"),
    ({"family": "gmm", "sizes": []}, "sizes is empty"),
    ({"family": "gmm", "sizes": [10, 5000]}, r"between 2 and 1,438 .*got \[5000\]"),
    ({"family": "gmm", "sizes": [10, 20], "heldout_fraction": 0.9},
     r"heldout_fraction must be in \[0.05, 0.5\]"),
])
def test_sweep_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training_size_sweep(load_builtin("digits"), **kwargs)
