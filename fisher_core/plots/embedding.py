"""The 2-D / 3-D map of an embedding (UMAP or PCA coordinates), coloured by what the data
says about each point."""

from __future__ import annotations

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

from ..data.dataset import ImageDataset
from ._style import MARGIN, QUALITATIVE

__all__ = ["embedding_scatter", "marker_style"]

SVG_POINTS = 5000  # up to here each point is an SVG element: clickable, exactly hit-tested


def _colours(ds: ImageDataset, by: str) -> tuple[list[str] | None, str | None]:
    if by == "label" and ds.labels is not None:
        return [ds.class_names[i] for i in ds.labels], "label"
    if by in ds.attribute_names:
        j = ds.attribute_names.index(by)
        return list(np.where(ds.attributes[:, j], "yes", "no")), by
    return None, None


def marker_style(n: int) -> dict:
    """Marker size and opacity for ``n`` points: 5 px at 0.8 up to 5,000 points, then
    shrinking as 1/√n (at least 1.5 px, 0.15), so that 100k points still show their
    density and every colour rather than one opaque blob in the colour drawn last."""
    shrink = min(1.0, (SVG_POINTS / max(n, 1)) ** 0.5)
    return {"size": round(max(1.5, 5 * shrink), 2), "opacity": round(max(0.15, 0.8 * shrink), 3)}


def embedding_scatter(xy: np.ndarray, ds: ImageDataset, *, colour_by: str = "label",
                      title: str = "", height: int = 560) -> go.Figure:
    """Scatter of a 2-D or 3-D layout, one point per image of ``ds``.

    Parameters
    ----------
    xy : ndarray of shape (N, 2) or (N, 3)
        Coordinates (:func:`fisher_core.umap_embed`, :func:`fisher_core.pca_embed`).
    ds : ImageDataset
        The N images the rows belong to (for colours and hover text).
    colour_by : str, default="label"
        ``"label"``, an attribute name, or anything else for one colour.
    title : str, default=""
    height : int, default=560

    Returns
    -------
    go.Figure
        Each point carries its dataset index as ``customdata`` (what a selection returns).
    """
    xy = np.asarray(xy)
    if xy.ndim != 2 or xy.shape[1] not in (2, 3) or xy.shape[0] != len(ds):
        raise ValueError(f"xy must be ({len(ds)}, 2) or ({len(ds)}, 3) for dataset "
                         f"{ds.name!r}; got shape {xy.shape}.")
    colours, name = _colours(ds, colour_by)
    data = {"x": xy[:, 0], "y": xy[:, 1], "index": np.arange(len(xy))}
    if xy.shape[1] == 3:
        data["z"] = xy[:, 2]
    if colours is not None:
        data[name] = colours
    kw = dict(color=name, custom_data=["index"], hover_data={"index": True}, title=title,
              height=height, color_discrete_sequence=QUALITATIVE)
    if xy.shape[1] == 3:
        fig = px.scatter_3d(data, x="x", y="y", z="z", **kw)
        fig.update_traces(marker_size=2.5)
    else:
        fig = px.scatter(data, x="x", y="y",
                         render_mode="svg" if len(xy) <= SVG_POINTS else "webgl", **kw)
        fig.update_traces(marker=marker_style(len(xy)))
    # No dragmode: Streamlit then pans on drag and selects on click (plotly ignores clicks in
    # lasso mode); lasso and box stay one click away in the chart's toolbar.
    fig.update_layout(margin=dict(MARGIN, l=0, r=0, b=0), legend_title_text=name or "",
                      legend_itemsizing="constant")  # legible next to small markers
    return fig
