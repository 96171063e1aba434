"""Train page widgets: a hyper-parameter form built from a family's config, the live run view."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app.state import jobs, workspace
from app.widgets import montage
from fisher_core.data import ImageDataset
from fisher_core.models import MODEL_FAMILIES
from fisher_core.workspace import Job, RunLog, data_config, train_and_save

# Options of string-valued config fields (the config classes validate them again).
CHOICES = {
    "likelihood": ("categorical", "bernoulli", "gaussian"),
    "output": ("categorical", "logistic"),
}
# Epochs that give recognisable samples on the built-in data in about two CPU minutes.
DEFAULT_EPOCHS = {"pixelcnn": 4, "vae": 9, "ebgan": 10, "fvvae": 9}
SKIP = {"channels", "height", "width"}


def config_form(family: str, ds: ImageDataset) -> dict[str, Any]:
    """Widgets for every simple field of ``family``'s config; returns the values chosen.

    Fields the data decides (channels, size; levels of a quantised dataset) are not asked.
    """
    cfg_cls = MODEL_FAMILIES[family][1]
    from_data = data_config(family, ds)
    fields = [f for f in dataclasses.fields(cfg_cls)
              if f.name not in SKIP and f.name not in from_data
              and isinstance(f.default, (int, float, str)) and not isinstance(f.default, bool)]
    flags = [f for f in dataclasses.fields(cfg_cls) if isinstance(f.default, bool)]
    out: dict[str, Any] = {}
    cols = st.columns(4)
    for k, f in enumerate(fields + flags):
        col, key = cols[k % 4], f"cfg_{family}_{f.name}"
        label = f.name.replace("_", " ")
        if isinstance(f.default, bool):
            out[f.name] = col.toggle(label, f.default, key=key)
        elif isinstance(f.default, str):
            opts = CHOICES.get(f.name, (f.default,))
            out[f.name] = col.selectbox(label, opts, index=opts.index(f.default), key=key)
        elif isinstance(f.default, int):
            out[f.name] = int(col.number_input(label, 1, 4096, f.default, key=key))
        else:
            out[f.name] = float(col.number_input(label, 0.0, 1e6, float(f.default),
                                                 format="%.4g", key=key))
    return out


def _train_job(job: Job, ds: ImageDataset, family: str, config: dict, opts: dict,
               name: str, ds_key: str) -> dict[str, Any]:
    """Worker: train, publish the run log after every event, save to the workspace."""
    log = RunLog()

    def callback(event) -> None:
        msg = f"epoch {event.epoch} · step {event.step:,}/{event.total_steps:,}"
        if event.loss == event.loss:  # not NaN
            msg += f" · loss {event.loss:.4g}"
        job.report(event.step, max(event.total_steps, 1), msg)
        if event.kind != "step" or event.step % 5 == 0 or event.step == 1:
            job.publish(log=log.state())

    run = train_and_save(ds, family, config=config, workspace=workspace(), name=name,
                         dataset_key=ds_key, callback=callback, cancel=job.cancel_event,
                         log=log, **opts)
    job.publish(log=log.state())
    return {"metrics": run.metrics, "message": run.result.message,
            "stopped": run.result.stopped_reason, "name": name}


def start(name: str, ds: ImageDataset, family: str, config: dict, opts: dict,
          ds_key: str) -> None:
    """Start training as the background job ``train:<name>``."""
    jobs().submit(f"train:{name}", _train_job, ds, family, config, opts, name, ds_key)


def _monitor_panel(fig: go.Figure, monitor: list[dict[str, float]], **pos: int) -> None:
    """Fisher distance real vs generated, training and held-out images; best step marked."""
    m = pd.DataFrame(monitor)
    for col, name in [("train_fd", "training images"), ("heldout_fd", "held-out images")]:
        fig.add_trace(go.Scatter(x=m["step"], y=m[col], mode="lines+markers", name=name),
                      **pos)
    best = m.loc[m["heldout_fd"].idxmin()]
    fig.add_trace(go.Scatter(x=[best["step"]], y=[best["heldout_fd"]], mode="markers",
                             marker=dict(size=14, symbol="star", color="gold"),
                             name=f"best (step {int(best['step'])})"), **pos)
    fig.update_yaxes(title_text="Fisher distance", **pos)
    fig.update_xaxes(title_text="step", **pos)


def monitor_figure(monitor: list[dict[str, float]], title: str) -> go.Figure:
    """The training monitor of a saved GAN run on its own chart."""
    fig = go.Figure()
    _monitor_panel(fig, monitor)
    fig.update_layout(title=title, height=340, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def curves(state: dict[str, Any]) -> go.Figure:
    """Training loss per step, and validation bits/dim per epoch or (GANs) the Fisher
    distance between real and generated sets."""
    monitor = state.get("monitor") or []
    right = "real vs generated (AFV)" if monitor else "validation"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", right))
    steps = pd.DataFrame(state["steps"], columns=["step", "loss"])
    if len(steps):
        fig.add_trace(go.Scatter(x=steps["step"], y=steps["loss"], mode="lines", name="loss",
                                 showlegend=False), 1, 1)
    epochs = pd.DataFrame(state["epochs"])
    fig.update_xaxes(title_text="step", row=1, col=1)
    if monitor:
        _monitor_panel(fig, monitor, row=1, col=2)
    elif len(epochs) and epochs[["bits_per_dim", "val_nll"]].notna().any().any():
        y = "bits_per_dim" if epochs["bits_per_dim"].notna().any() else "val_nll"
        fig.add_trace(go.Scatter(x=epochs["epoch"], y=epochs[y], mode="lines+markers",
                                 name=y.replace("_", " "), showlegend=False), 1, 2)
        fig.update_yaxes(title_text=y.replace("_", " "), row=1, col=2)
        fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def draw_run(state: dict[str, Any] | None, key: str) -> None:
    """Curves and the latest sample grid of a run's log state."""
    if not state or not state["steps"]:
        st.caption("Waiting for the first training step…")
        return
    left, right = st.columns([3, 1])
    left.plotly_chart(curves(state), key=f"curves_{key}", width="stretch")
    if state["samples"] is not None:
        right.image(montage(state["samples"], columns=4, min_side=48),
                    caption=f"samples after epoch {state['epochs'][-1]['epoch']}")
    else:
        right.caption("Samples appear after the first epoch.")


@st.fragment(run_every=1.0)
def live(job_name: str) -> None:
    """Progress, cancel, curves and samples of a running job, refreshed every second."""
    job = jobs().get(job_name)
    if job is None:
        return
    snap = job.snapshot()
    if snap.finished:
        st.rerun(scope="app")
    cols = st.columns([6, 1])
    cols[0].progress(snap.fraction, text=f"{snap.message} · {snap.elapsed:.0f} s")
    if cols[1].button("Cancel", key=f"cancel_{job_name}"):
        job.cancel()
    draw_run(snap.published.get("log"), key=f"live_{job_name}")
