"""Training: loss and validation curves of a run, the GAN's Fisher monitor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import MARGIN

__all__ = ["monitor_figure", "training_curves"]


def _monitor_panel(fig: go.Figure, monitor: Sequence[Mapping[str, float]], **pos: int) -> None:
    """Fisher distance real vs generated, training and held-out images; best step starred."""
    steps = [r["step"] for r in monitor]
    for col, name in [("train_fd", "training images"), ("heldout_fd", "held-out images")]:
        fig.add_trace(go.Scatter(x=steps, y=[r[col] for r in monitor], mode="lines+markers",
                                 name=name), **pos)
    best = min(monitor, key=lambda r: r["heldout_fd"])
    fig.add_trace(go.Scatter(x=[best["step"]], y=[best["heldout_fd"]], mode="markers",
                             marker=dict(size=14, symbol="star", color="gold"),
                             name=f"best (step {int(best['step'])})"), **pos)
    fig.update_yaxes(title_text="Fisher distance", **pos)
    fig.update_xaxes(title_text="step", **pos)


def monitor_figure(history: Sequence[Mapping[str, float]], title: str = "") -> go.Figure:
    """The EBM-GAN's Fisher monitor (:class:`fisher_core.FisherMonitor` ``history``):
    distance between real and generated sets on training and held-out images per step."""
    if not history:
        raise ValueError("the monitor history is empty; it fills during training.")
    fig = go.Figure()
    _monitor_panel(fig, history)
    fig.update_layout(title=title, height=340, margin=MARGIN)
    return fig


def training_curves(state: Mapping[str, Any]) -> go.Figure:
    """Training loss per step and, per epoch, validation bits/dim (or NLL), or for a GAN the
    Fisher monitor; ``state`` is :meth:`fisher_core.workspace.RunLog.state`."""
    monitor = state.get("monitor") or []
    right = "real vs generated (AFV)" if monitor else "validation"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", right))
    steps = list(state.get("steps") or [])
    if steps:
        fig.add_trace(go.Scatter(x=[s for s, _ in steps], y=[v for _, v in steps],
                                 mode="lines", name="loss", showlegend=False), 1, 1)
    fig.update_xaxes(title_text="step", row=1, col=1)
    epochs = list(state.get("epochs") or [])
    if monitor:
        _monitor_panel(fig, monitor, row=1, col=2)
    else:
        for key in ("bits_per_dim", "val_nll"):
            pts = [(e["epoch"], e[key]) for e in epochs if e.get(key) is not None]
            if pts:
                fig.add_trace(go.Scatter(x=[p for p, _ in pts], y=[v for _, v in pts],
                                         mode="lines+markers", name=key.replace("_", " "),
                                         showlegend=False), 1, 2)
                fig.update_yaxes(title_text=key.replace("_", " "), row=1, col=2)
                fig.update_xaxes(title_text="epoch", row=1, col=2)
                break
    fig.update_layout(height=340, margin=MARGIN, legend=dict(orientation="h", y=-0.25))
    return fig


def gmm_selection_figure(rows: Sequence[Mapping[str, float]], title: str = "") -> go.Figure:
    """Held-out log-likelihood and BIC of a patch GMM against K (:func:`sweep_components`).

    Left: mean log-likelihood per descriptor on training and held-out images (higher is
    better; a widening gap is over-fitting). Right: BIC of the training descriptors (lower is
    better). The best K of each criterion is starred.
    """
    ks = [r["n_components"] for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "log-likelihood per descriptor (↑ better)", "BIC (↓ better)"))
    fig.add_scatter(x=ks, y=[r["train_ll"] for r in rows], name="training", mode="lines+markers",
                    row=1, col=1)
    fig.add_scatter(x=ks, y=[r["val_ll"] for r in rows], name="held out", mode="lines+markers",
                    row=1, col=1)
    fig.add_scatter(x=ks, y=[r["bic"] for r in rows], name="BIC", mode="lines+markers",
                    row=1, col=2)
    best_val = max(rows, key=lambda r: r["val_ll"])
    best_bic = min(rows, key=lambda r: r["bic"])
    fig.add_scatter(x=[best_val["n_components"]], y=[best_val["val_ll"]], mode="markers",
                    marker={"symbol": "star", "size": 16}, name=f"best held out: K = "
                    f"{best_val['n_components']}", row=1, col=1)
    fig.add_scatter(x=[best_bic["n_components"]], y=[best_bic["bic"]], mode="markers",
                    marker={"symbol": "star", "size": 16}, name=f"best BIC: K = "
                    f"{best_bic['n_components']}", row=1, col=2)
    for col in (1, 2):  # log axis, ticks at the K values tried only
        fig.update_xaxes(title_text="components K", type="log", tickvals=ks,
                         ticktext=[str(k) for k in ks], row=1, col=col)
    fig.update_layout(title=title or None, margin=MARGIN, height=360)
    return fig
