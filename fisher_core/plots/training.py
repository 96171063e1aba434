"""Training: loss and validation curves of a run, the Fisher monitor of every family."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import MARGIN

__all__ = ["gmm_selection_figure", "monitor_figure", "size_sweep_figure", "training_curves"]


def _monitor_panel(fig: go.Figure, monitor: Sequence[Mapping[str, float]], *,
                   mark_best: bool = True, legend: bool = True, **pos: int) -> None:
    """Fisher distance real vs the model's samples, training and held-out images (and the
    two real sets against each other); for a GAN the best step starred."""
    steps = [r["step"] for r in monitor]
    for col, name, dash in [("train_fd", "training images", None),
                            ("heldout_fd", "held-out images", None),
                            ("train_heldout_fd", "training vs held-out", "dot")]:
        if all(col in r for r in monitor):
            fig.add_trace(go.Scatter(x=steps, y=[r[col] for r in monitor],
                                     mode="lines+markers", name=name, legendgroup=name,
                                     showlegend=legend, line=dict(dash=dash, color=_COLOURS[col])),
                          **pos)
    if mark_best:
        best = min(monitor, key=lambda r: r["heldout_fd"])
        fig.add_trace(go.Scatter(x=[best["step"]], y=[best["heldout_fd"]], mode="markers",
                                 marker=dict(size=14, symbol="star", color="gold"),
                                 name=f"best (step {int(best['step'])})"), **pos)
    fig.update_yaxes(title_text="Fisher distance", **pos)
    fig.update_xaxes(title_text="step", **pos)


_COLOURS = {"train_fd": "#1f77b4", "heldout_fd": "#ff7f0e", "train_heldout_fd": "#7f7f7f"}


def monitor_figure(history: Sequence[Mapping[str, float]], title: str = "", *,
                   mark_best: bool = True) -> go.Figure:
    """The Fisher monitor (:class:`fisher_core.FisherMonitor` ``history``): left, the Fisher
    distance between real images (training, held-out) and the model's samples, and between
    the two real sets; right, the Fisher similarity of the paper (1 = the model's scores
    cannot tell real from sampled). A widening train / held-out gap is over-fitting.

    Parameters
    ----------
    history : sequence of dict
        Records with ``step``, ``train_fd``, ``heldout_fd`` and optionally ``train_fsim``,
        ``heldout_fsim``, ``train_heldout_fd``.
    title : str, default=""
    mark_best : bool, default=True
        Star the step with the lowest held-out distance (what a GAN run keeps as
        ``<name>-best``); off for likelihood models, which keep their best validation epoch.
    """
    if not history:
        raise ValueError("the monitor history is empty; it fills during training.")
    sim = all("train_fsim" in r for r in history)
    fig = make_subplots(rows=1, cols=2 if sim else 1, subplot_titles=(
        ("Fisher distance (↓ closer)", "Fisher similarity (↑ closer)") if sim else None))
    _monitor_panel(fig, history, mark_best=mark_best, row=1, col=1)
    if sim:
        steps = [r["step"] for r in history]
        for col, name in [("train_fsim", "training images"), ("heldout_fsim", "held-out images")]:
            fig.add_trace(go.Scatter(
                x=steps, y=[r[col] for r in history], mode="lines+markers", name=name,
                legendgroup=name, showlegend=False,
                line=dict(color=_COLOURS[col.replace("fsim", "fd")])), row=1, col=2)
        fig.update_yaxes(title_text="exp(−10 · mean Δ² / var)", range=[0, 1.05], row=1, col=2)
        fig.update_xaxes(title_text="step", row=1, col=2)
    fig.update_layout(title=title or None, height=380 if title else 360,
                      margin={**MARGIN, "t": 90} if title else MARGIN,
                      legend=dict(orientation="h", y=-0.25))
    return fig


def training_curves(state: Mapping[str, Any]) -> go.Figure:
    """Training loss per step and, per epoch, validation bits/dim (or NLL), or for a GAN the
    Fisher monitor; ``state`` is :meth:`fisher_core.workspace.RunLog.state`."""
    # an energy model has no likelihood: its monitor is the right panel; a likelihood model
    # shows its validation curve there (its monitor has a figure of its own)
    monitor = (state.get("monitor") or []) if state.get("energy", True) else []
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


def size_sweep_figure(rows: Sequence[Mapping[str, Any]], title: str = "") -> go.Figure:
    """The training-set-size sweep (:func:`fisher_core.workspace.training_size_sweep` rows):
    Fisher distance (left) and similarity (right) between the model's samples and its
    training or held-out images, against the training-set size (log axis). Where the model
    memorises its few training images the two curves part; they meet as data grows."""
    if not rows:
        raise ValueError("no sweep rows to draw; run the sweep first.")
    sizes = [r["n_train"] for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "Fisher distance to the model's samples (↓)", "Fisher similarity (↑)"))
    for col, name in [("train_fd", "training images"), ("heldout_fd", "held-out images")]:
        fig.add_trace(go.Scatter(x=sizes, y=[r[col] for r in rows], mode="lines+markers",
                                 name=name, legendgroup=name, line=dict(color=_COLOURS[col])),
                      row=1, col=1)
        sim = col.replace("fd", "fsim")
        fig.add_trace(go.Scatter(x=sizes, y=[r[sim] for r in rows], mode="lines+markers",
                                 name=name, legendgroup=name, showlegend=False,
                                 line=dict(color=_COLOURS[col])), row=1, col=2)
    for c in (1, 2):
        fig.update_xaxes(title_text="training images", type="log", tickvals=sizes,
                         ticktext=[f"{n:,}" for n in sizes], row=1, col=c)
    fig.update_yaxes(title_text="Fisher distance", row=1, col=1)
    fig.update_yaxes(title_text="Fisher similarity", range=[0, 1.05], row=1, col=2)
    fig.update_layout(title=title or None, height=380 if title else 360,
                      margin={**MARGIN, "t": 90} if title else MARGIN,
                      legend=dict(orientation="h", y=-0.25))
    return fig
