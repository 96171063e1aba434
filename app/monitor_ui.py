"""Metrics page panels: the Fisher training monitor of every saved run, and the
training-set-size sweep (train on growing subsets, watch training and held-out images part)."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from app.jobs_ui import status
from app.state import run_in_background, session_job, workspace
from fisher_core.data import ImageDataset
from fisher_core.models import MODEL_FAMILIES
from fisher_core.plots import monitor_figure, size_sweep_figure
from fisher_core.workspace import (
    MONITOR_COLUMNS,
    SWEEP_CONFIGS,
    list_models,
    load_rows,
    save_rows,
    saved_monitor,
    sweep_key,
    training_size_sweep,
)

SWEEP_ORDER = ("n_train", *MONITOR_COLUMNS, "val_nll", "epochs", "steps", "seconds")
SWEEP_SIZES = (50, 100, 200, 400, 800, 1600)


def monitor_panel(ds_key: str) -> None:
    """The Fisher monitor of a saved run of this dataset (any family)."""
    runs = {e.name: saved_monitor(workspace(), e.name) for e in list_models(workspace(), ds_key)}
    runs = {k: v for k, v in runs.items() if v and v.get("history")}
    st.subheader("Fisher training monitor")
    if not runs:
        st.caption("Train a model on the Train page: its Fisher monitor (real images against "
                   "the model's own samples, training and held out) shows here.")
        return
    run = st.selectbox("Run", list(runs), key="met_run")
    energy = runs[run].get("energy", True)
    st.plotly_chart(monitor_figure(runs[run]["history"], f"{run}: real vs the model's samples",
                                   mark_best=energy), key="met_monitor", width="stretch")


def sweep_panel(ds: ImageDataset, ds_key: str) -> None:
    """Train one family on growing subsets; the monitor at the end of each run, as a curve."""
    st.subheader("Training-set-size sweep")
    st.caption("Trains the same model on growing subsets (the same number of steps each, the "
               "last weights kept) and measures, at the end, the Fisher distance between its "
               "samples and its training or held-out images (Zhai et al. 2019). A model that "
               "memorises a small training set parts the two curves.")
    c = st.columns(3)
    family = c[0].selectbox("Model family", list(MODEL_FAMILIES), key="sweep_family")
    limit = int(len(ds) * 0.8)
    offered = [n for n in SWEEP_SIZES if n <= limit] or [limit]
    sizes = c[1].multiselect("Training images", offered, default=offered[:4],
                             key="sweep_sizes")
    steps = c[2].number_input("Steps per run", 20, 20_000, 300, step=50, key="sweep_steps",
                              disabled=MODEL_FAMILIES[family][0].fitted_by_em,
                              help="The same for every size; EM runs to convergence.")
    key = sweep_key(ds_key, family, sizes, int(steps), SWEEP_CONFIGS.get(family, {}))
    job = session_job(f"sweep:{ds_key}")
    if st.button("Run sweep", key="sweep_go", disabled=len(sizes) < 2,
                 help="Pick at least two sizes."):
        run_in_background(job, _sweep, ds, family, key)
    snap = status(job)
    saved = load_rows(workspace(), "size-sweep", key)
    if saved is None or (snap is not None and not snap.finished):
        return
    rows, when = saved
    st.plotly_chart(size_sweep_figure(rows, f"{family} on {ds.name}"), key="sweep_chart",
                    width="stretch")
    df = pd.DataFrame(rows)
    df = df[[c for c in SWEEP_ORDER if c in df] + [c for c in df if c not in SWEEP_ORDER]]
    st.caption(f"Saved {time.strftime('%Y-%m-%d %H:%M', time.localtime(when))}")
    st.dataframe(df.style.format({c: "{:.3f}" for c in df.columns if c.endswith(("fd", "fsim"))}),
                 hide_index=True)


def _sweep(ds: ImageDataset, family: str, key: dict, progress) -> list[dict]:
    rows = training_size_sweep(ds, family, key["sizes"], config=key["config"],
                               steps=key["steps"], progress=progress)
    save_rows(workspace(), "size-sweep", key, rows)
    return rows
