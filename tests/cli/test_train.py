"""``fisherlab train``: a model saved under the app's dataset key, config overrides, errors,
Ctrl-C and resuming."""

from __future__ import annotations

import re

import pytest
import torch

import fisher_core.cli.cmd_train as cmd_train
from fisher_core.workspace import Workspace, interrupted_runs, list_models, load_saved_model

from .conftest import TINY


def test_model_is_listed_with_its_dataset_and_config(ws):
    out = ws.json("train", "pixelcnn", "-d", "small", "--epochs", "1", "--name", "pc-b",
                  "--batch-size", "128", *TINY)
    assert out["saved"] == [{"kind": "models", "name": "pc-b"}]
    assert out["dataset"] == "workspace:small" and out["family"] == "pixelcnn"
    assert out["config"] == {"hidden": 4, "n_blocks": 2, "head_hidden": 8}
    w = Workspace(ws.root)
    assert "pc-b" in [e.name for e in list_models(w, "workspace:small")]  # as the app lists
    model, history = load_saved_model(w, "pc-b")
    assert model.config.hidden == 4 and model.config.n_blocks == 2
    assert out["metrics"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert out["metrics"]["epochs"] == 1 == len(history["epoch_train_loss"])


def test_human_summary_and_table(ws):
    result = ws("train", "pixelcnn", "-d", "small", "--epochs", "1", "--name", "pc-h", *TINY,
                json_mode=False)
    first = result.stdout.splitlines()[0]
    assert re.fullmatch(r"Saved model pc-h \(pixelcnn, [\d,]+ parameters, dataset "
                        r"workspace:small\) after 1 epoch\(s\) in \d+ s; held-out [\d.]+ "
                        r"bits/dim\. .*", first)
    assert "held-out NLL" in result.stdout and "training pixelcnn on small" in result.stderr


@pytest.mark.parametrize(("args", "line"), [
    (["--set", "hidden=x"], r"Error: --set hidden=x: expected an integer\."),
    (["--set", "hidden"], r"Error: --set hidden: write KEY=VALUE, e\.g\. --set hidden=32\."),
    (["--set", "channels=3"],
     r"Error: --set channels: channels, height and width come from the dataset\."),
    (["--set", "hidden=-3"], r"Error: PixelCNNConfig\.hidden must be .*; got -3\."),
    (["--dataset", "nope"], r"Error: no dataset named 'nope' in workspace .* \(saved: .*\); add "
                            r"one with 'fisherlab --workspace \S+ data builtin NAME' or "
                            r"'fisherlab --workspace \S+ data import FILE'\."),
    (["--name", "pc"], r"Error: models/pc already exists in the workspace; pass --overwrite to "
                       r"replace it or choose another --name\."),
])
def test_errors_before_any_training(ws, args, line):
    dataset = [] if "--dataset" in args else ["--dataset", "small"]
    got = ws.error("train", "pixelcnn", "--epochs", "1", *dataset, *args)
    assert re.fullmatch(line, got), got


def test_ebgan_objective_options_parse_and_reach_the_saved_model(ws):
    out = ws.json("train", "ebgan", "-d", "small", "--epochs", "1", "--name", "gan-ll",
                  "--set", "objective=log_loss", "--set", "g_steps=2", "--set", "real_mix=0.1",
                  "--set", "g_width=4", "--set", "d_width=3", "--set", "latent_dim=4")
    assert out["config"] == {"objective": "log_loss", "g_steps": 2, "real_mix": 0.1,
                             "g_width": 4, "d_width": 3, "latent_dim": 4}
    model, _ = load_saved_model(Workspace(ws.root), "gan-ll")
    assert (model.config.objective, model.config.g_steps, model.config.real_mix) == (
        "log_loss", 2, 0.1)
    assert model.config.entropy_weight == 0.1  # not set: the default


@pytest.mark.parametrize(("setting", "line"), [
    ("objective=hinge", r"Error: EBGANConfig\.objective must be one of 'least_squares', "
                        r"'log_loss'; got 'hinge'\."),
    ("g_steps=two", r"Error: --set g_steps=two: expected an integer\."),
    ("real_mix=1", r"Error: EBGANConfig\.real_mix must be a number in \[0\.0, 1\.0\); "
                   r"got 1\.0\."),
])
def test_ebgan_option_errors(ws, setting, line):
    got = ws.error("train", "ebgan", "-d", "small", "--epochs", "1", "--set", setting)
    assert re.fullmatch(line, got), got


def test_unknown_set_key_lists_the_valid_ones(ws):
    line = ws.error("train", "vae", "-d", "small", "--set", "nope=1")
    assert line.startswith("Error: --set nope: vae has no such setting; valid keys are hidden, ")
    assert "channels" not in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_device_without_cuda(ws):
    assert ws.error("train", "pixelcnn", "-d", "small", "--device", "cuda") == (
        "Error: --device cuda: CUDA is not available on this machine; use --device cpu (or "
        "cuda / cuda:N where CUDA is available).")


def test_ctrl_c_exits_130_and_the_run_resumes(ws, monkeypatch):
    real = cmd_train.train_and_save

    def interrupted(*args, callback, **kwargs):
        def cb(event):
            callback(event)
            if event.kind == "epoch" and event.epoch == 1:
                raise KeyboardInterrupt
        return real(*args, callback=cb, **kwargs)

    monkeypatch.setattr(cmd_train, "train_and_save", interrupted)
    line = ws.error("train", "pixelcnn", "-d", "small", "--epochs", "2", "--name", "pc-int",
                    *TINY, code=130)
    assert line == (
        f"Error: interrupted; nothing was saved as model 'pc-int', and its last completed epoch "
        f"is kept: continue with 'fisherlab --workspace {ws.root} train pixelcnn --dataset "
        f"small --name pc-int --resume'.")
    w = Workspace(ws.root)
    assert not w.exists("models", "pc-int")
    assert "pc-int" in [r["name"] for r in interrupted_runs(w)]
    monkeypatch.setattr(cmd_train, "train_and_save", real)
    out = ws.json("train", "pixelcnn", "-d", "small", "--name", "pc-int", "--resume")
    assert out["metrics"]["epochs"] == 2 and w.exists("models", "pc-int")
    assert "pc-int" not in [r["name"] for r in interrupted_runs(w)]
    assert ws.error("train", "pixelcnn", "-d", "small", "--name", "pc-int", "--resume") == (
        "Error: no interrupted run named 'pc-int' to resume (interrupted: none); train it again "
        "without --resume.")
