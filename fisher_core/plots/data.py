"""What a dataset holds: images per class, share of images with each attribute."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..data.dataset import ImageDataset
from ._style import MARGIN, PRIMARY, SECONDARY

__all__ = ["attribute_share_figure", "class_counts_figure"]


def class_counts_figure(ds: ImageDataset, *, height: int = 320) -> go.Figure:
    """Bar chart of the number of images per class (``ds`` must have labels)."""
    if ds.labels is None:
        raise ValueError(f"dataset {ds.name!r} has no labels to count.")
    counts = np.bincount(ds.labels, minlength=len(ds.class_names))
    fig = go.Figure(go.Bar(x=ds.class_names, y=counts, marker_color=PRIMARY))
    fig.update_layout(title="Images per class", height=height, margin=MARGIN)
    return fig


def attribute_share_figure(ds: ImageDataset, *, height: int = 320) -> go.Figure:
    """Bar chart of the fraction of images with each attribute (``ds`` must have some)."""
    if ds.attributes is None:
        raise ValueError(f"dataset {ds.name!r} has no attributes.")
    fig = go.Figure(go.Bar(x=ds.attribute_names, y=ds.attributes.mean(axis=0),
                           marker_color=SECONDARY))
    fig.update_layout(title="Fraction with each attribute", height=height,
                      yaxis_range=[0, 1], margin=MARGIN)
    return fig
