"""Measurements as pictures: FID vs α, attribute-edit scores, linear probes, the FV
normalisation ablation, class-to-class Fisher distances. Each takes the rows the metric
functions return (a list of dicts), so a saved table redraws the same figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

from ._style import MARGIN, QUALITATIVE

__all__ = [
    "ablation_figure",
    "ablation_setting",
    "class_distance_figure",
    "edit_scores_figure",
    "fid_alpha_figure",
    "probe_figure",
    "scaling_figure",
]

Rows = Sequence[Mapping[str, Any]]


def _columns(rows: Rows, need: Sequence[str], what: str) -> dict[str, list]:
    if not rows:
        raise ValueError(f"no {what} rows to draw.")
    missing = [c for c in need if c not in rows[0]]
    if missing:
        raise ValueError(f"{what} rows need columns {list(need)}; missing {missing}.")
    return {k: [r[k] for r in rows] for k in rows[0]}


def fid_alpha_figure(rows: Rows, *, height: int = 400) -> go.Figure:
    """FID of decoded interpolations against α, one line per space
    (:func:`fisher_core.fid_vs_alpha` / :func:`fisher_core.fid_curves` rows: space, alpha,
    fid, and optionally kind, extractor, fid_std: drawn as error bars, ± one standard
    deviation over repeated draws of pairs). Good spaces stay flat; bad ones peak at α = 0.5."""
    data = _columns(rows, ["space", "alpha", "fid"], "FID")
    extractor = data.get("extractor", [""])[0]
    spread = "fid_std" in data and any(v for v in data["fid_std"])
    return px.line(data, x="alpha", y="fid", color="space", markers=True, height=height,
                   error_y="fid_std" if spread else None,
                   labels={"fid": f"FID ({extractor})" if extractor else "FID", "alpha": "α",
                           "fid_std": "spread over draws"},
                   hover_data=["kind"] if "kind" in data else None)


def edit_scores_figure(rows: Rows, *, height: int = 360) -> go.Figure:
    """Edit success and preservation against strength, per space (mean over attributes
    and directions; :func:`fisher_core.attribute_edit_scores` rows)."""
    data = _columns(rows, ["space", "strength", "success", "preservation"], "edit-score")
    groups: dict[tuple[str, float], list[int]] = {}
    for i, key in enumerate(zip(data["space"], data["strength"], strict=True)):
        groups.setdefault(key, []).append(i)
    long = {"space": [], "strength": [], "score": [], "share": []}
    for (space, strength), idx in sorted(groups.items()):
        for score in ("success", "preservation"):
            long["space"].append(space)
            long["strength"].append(strength)
            long["score"].append(score)
            long["share"].append(float(np.mean([data[score][i] for i in idx])))
    return px.line(long, x="strength", y="share", color="space", line_dash="score",
                   markers=True, height=height, range_y=[0, 1.02],
                   labels={"share": "mean over attributes and directions"})


def probe_figure(rows: Rows, *, target: str = "label", height: int = 380) -> go.Figure:
    """Linear-probe accuracy per space with its spread over folds
    (:func:`fisher_core.probe_embeddings` rows: embedding, accuracy, std)."""
    data = _columns(rows, ["embedding", "accuracy", "std"], "probe")
    return px.bar(data, x="embedding", y="accuracy", error_y="std", range_y=[0, 1],
                  title=f"Linear-probe accuracy ({target})", height=height)


def ablation_setting(row: Mapping[str, Any]) -> str:
    """A short name of one ablation row's steps after the normalisation: "plain", "√",
    "+L2", "√+L2", "√+W64+L2" (whitened to 64 dimensions)."""
    name = (("√" if row["power"] else "") + (f"+W{row['whiten']}" if row.get("whiten") else "")
            + ("+L2" if row["l2"] else ""))
    return name or "plain"


def ablation_figure(rows: Rows, *, height: int = 400) -> go.Figure:
    """Probe accuracy for each Fisher-vector normalisation × power × (whitening) × L2
    setting (:func:`fisher_core.fisher_vector_ablation` rows)."""
    data = _columns(rows, ["normalization", "power", "l2", "accuracy", "std"], "ablation")
    data["setting"] = [ablation_setting(r) for r in rows]
    fig = px.bar(data, x="normalization", y="accuracy", color="setting", barmode="group",
                 error_y="std", height=height, title="Probe accuracy by FV normalisation")
    fig.update_yaxes(range=[max(0.0, min(data["accuracy"]) - 0.1), 1.0])
    return fig


def class_distance_figure(distances: np.ndarray, names: Sequence[str], *,
                          title: str = "Class distances") -> go.Figure:
    """Heatmap of ‖mean_a − mean_b‖ between classes
    (:func:`fisher_core.class_distance_matrix`), every class named however many."""
    d = np.asarray(distances)
    if d.shape != (len(names), len(names)):
        raise ValueError(f"distances must be ({len(names)}, {len(names)}) for "
                         f"{len(names)} names; got {d.shape}.")
    fig = px.imshow(d, x=list(names), y=list(names), color_continuous_scale="Viridis",
                    height=min(900, 360 + 22 * len(names)),
                    labels={"color": "‖mean_a − mean_b‖"}, title=title)
    fig.update_xaxes(dtick=1, tickangle=-45)
    fig.update_yaxes(dtick=1)
    fig.update_layout(margin=MARGIN)
    return fig


def scaling_figure(rows: Rows, *, title: str = "", height: int = 360) -> go.Figure:
    """Wall time and peak memory against the number of rows, log–log, one line per task.

    Parameters
    ----------
    rows : list of dict
        ``n``, ``seconds``, ``peak_mib`` and optionally ``task`` (one line each), as
        ``bench/bench_scale.py`` writes them.
    title : str, default=""
    height : int, default=360

    Returns
    -------
    plotly.graph_objects.Figure
        Two panels side by side: seconds and peak RSS (MiB) against N.
    """
    from plotly.subplots import make_subplots

    _columns(rows, ["n", "seconds", "peak_mib"], "scaling")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("wall time (s)", "peak RSS (MiB)"))
    tasks = list(dict.fromkeys(str(r.get("task", "")) for r in rows))
    for i, task in enumerate(tasks):
        mine = sorted((r for r in rows if str(r.get("task", "")) == task), key=lambda r: r["n"])
        colour = QUALITATIVE[i % len(QUALITATIVE)]
        for col, key in ((1, "seconds"), (2, "peak_mib")):
            fig.add_scatter(x=[r["n"] for r in mine], y=[r[key] for r in mine], row=1, col=col,
                            mode="lines+markers", name=task or key, legendgroup=task,
                            showlegend=col == 1 and bool(task), line_color=colour)
    fig.update_xaxes(type="log", title_text="rows N")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(title=title, height=height, margin={**MARGIN, "t": 60})
    return fig
