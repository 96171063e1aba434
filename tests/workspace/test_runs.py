"""Training runs saved to the workspace and loaded back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fisher_core import Workspace, load_builtin
from fisher_core.training import ProgressEvent
from fisher_core.workspace import (
    EntryError,
    RunLog,
    data_config,
    list_models,
    load_saved_model,
    saved_samples,
    train_and_save,
)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_data_config_follows_the_dataset():
    ds = load_builtin("digits").quantize(4)
    assert data_config("pixelcnn", ds) == {"channels": 1, "height": 8, "width": 8, "levels": 4}
    with pytest.raises(ValueError, match="family must be one of"):
        data_config("gpt", ds)


def test_train_save_load_round_trip(tmp_path):
    ws = Workspace(tmp_path)
    ds = load_builtin("digits").subset(np.arange(120))
    events = []
    run = train_and_save(ds, "pixelcnn", config={"hidden": 4, "n_blocks": 2}, epochs=2,
                         workspace=ws, name="px", dataset_key="builtin:digits",
                         callback=events.append, n_samples=2)
    assert run.result.epochs_completed == 2
    assert [e.kind for e in events if e.kind != "step"] == ["epoch", "epoch", "end"]
    assert run.metrics["val_bits_per_dim"] == pytest.approx(
        min(run.result.history["epoch_bits_per_dim"]))
    model, history = load_saved_model(ws, "px")
    x = torch.from_numpy(ds.images[:8])
    with torch.no_grad():
        np.testing.assert_array_equal(model.log_prob(x).numpy(),
                                      run.model.eval().log_prob(x).numpy())
    assert history["epoch_val_nll"] == run.result.history["epoch_val_nll"]
    samples = saved_samples(ws, "px")
    assert samples.shape == (2, 1, 8, 8) and 0 <= samples.min() and samples.max() <= 1
    assert [e.name for e in list_models(ws, "builtin:digits")] == ["px"]
    assert list_models(ws, "builtin:faces") == []
    with pytest.raises(EntryError, match="no model named 'missing'"):
        load_saved_model(ws, "missing")


def test_run_log_thins_steps_and_keeps_epochs():
    log = RunLog(max_points=10)
    for s in range(1, 101):
        log(ProgressEvent("step", 1, s, 100, loss=float(s)))
    log(ProgressEvent("epoch", 1, 100, 100, loss=1.0, val_nll=2.0, bits_per_dim=0.5,
                      samples=np.zeros((1, 1, 2, 2))))
    steps = [s for s, _ in log.state()["steps"]]
    assert len(steps) <= 10 and steps == sorted(steps) and steps[-1] >= 90
    assert all(loss == s for s, loss in log.state()["steps"])
    assert log.state()["epochs"][0]["bits_per_dim"] == 0.5
    assert log.state()["samples"].shape == (1, 1, 2, 2)


def test_gan_run_records_the_fisher_monitor_and_saves_the_best_checkpoint(tmp_path):
    from fisher_core.workspace import saved_monitor

    ws = Workspace(tmp_path)
    ds = load_builtin("digits").subset(np.arange(200))
    log = RunLog()
    run = train_and_save(ds, "ebgan", config={"g_width": 8, "d_width": 4, "latent_dim": 4},
                         epochs=2, batch_size=32, workspace=ws, name="gan", log=log,
                         monitor_every=3, dataset_key="d")
    mon = saved_monitor(ws, "gan")
    steps = [r["step"] for r in mon["history"]]
    assert steps[:3] == [3, 6, 9] and steps[-1] == run.result.steps
    assert log.state()["monitor"] == mon["history"]
    best = min(mon["history"], key=lambda r: r["heldout_fd"])
    assert mon["best"] == best
    # the "-best" model holds different weights from the final one unless best is the last
    best_model, _ = load_saved_model(ws, "gan-best")
    assert ws.entry("models", "gan-best").meta["metrics"]["monitor_step"] == best["step"]
    assert sorted(e.name for e in list_models(ws, "d")) == ["gan", "gan-best"]
    assert best_model.log_prob(torch.from_numpy(ds.images[:4])).shape == (4,)
