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


class _Killed(Exception):
    """Stands for the process dying mid-run (the server killed)."""


def test_a_run_killed_mid_training_resumes_to_the_uninterrupted_weights(tmp_path):
    """Issue 15: a killed server lost the running job (checkpoints lived in a temporary
    folder). Now they live in the workspace and the run resumes from its last epoch."""
    from fisher_core.workspace import discard_run, interrupted_runs, resume_run

    ds = load_builtin("digits").subset(np.arange(150))
    cfg = dict(hidden=4, n_blocks=2, head_hidden=4)
    ref_ws = Workspace(tmp_path / "ref")
    ref = train_and_save(ds, "pixelcnn", config=cfg, epochs=3, batch_size=32, seed=1,
                         workspace=ref_ws, name="px", dataset_key="d")

    ws = Workspace(tmp_path / "ws")

    def die_in_epoch_3(event):
        if event.kind == "step" and event.epoch == 3:
            raise _Killed

    with pytest.raises(_Killed):
        train_and_save(ds, "pixelcnn", config=cfg, epochs=3, batch_size=32, seed=1,
                       workspace=ws, name="px", dataset_key="d", callback=die_in_epoch_3)
    assert not ws.exists("models", "px")
    (run,) = interrupted_runs(ws, dataset_key="d")
    assert (run["name"], run["family"], run["epochs_done"]) == ("px", "pixelcnn", 2)
    assert interrupted_runs(ws, dataset_key="other") == []

    again = resume_run(ws, "px", ds)
    assert again.result.epochs_completed == 3 and interrupted_runs(ws) == []
    for (k, a), b in zip(ref.model.state_dict().items(), again.model.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    saved, _ = load_saved_model(ws, "px")
    assert torch.equal(next(iter(saved.state_dict().values())),
                       next(iter(ref.model.state_dict().values())))
    with pytest.raises(EntryError, match="no interrupted run named 'px'"):
        resume_run(ws, "px", ds)
    discard_run(ws, "px")  # forgetting a run that is not there is fine


def test_an_energy_model_is_not_early_stopped_on_its_unnormalised_nll(tmp_path):
    """Issue 15: an EBM-GAN run ended with "validation NLL did not improve"; −D(x) is not a
    likelihood, so only the Fisher monitor judges it."""
    ds = load_builtin("digits").subset(np.arange(200))
    run = train_and_save(ds, "ebgan", config=dict(g_width=4, d_width=4, latent_dim=4),
                         epochs=4, batch_size=32, early_stopping_patience=1, seed=0,
                         monitor_every=1000)
    assert run.result.stopped_reason == "completed" and run.result.epochs_completed == 4
