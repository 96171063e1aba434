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
