"""Images as pictures: display conversion, a montage (one array), grids and interpolation
strips (plotly figures, for notebooks and exports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import MARGIN

__all__ = ["image_grid_figure", "interpolation_strips_figure", "montage", "to_display"]


def to_display(images: np.ndarray, min_side: int = 64) -> list[np.ndarray]:
    """(N, C, H, W) floats in [0, 1] → list of (H', W'[, 3]) uint8, upscaled (nearest) so
    that tiny images (8×8 digits) stay visible."""
    x = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    factor = max(1, int(np.ceil(min_side / max(x.shape[2], 1))))
    x = x.repeat(factor, axis=2).repeat(factor, axis=3)  # (N, C, H·f, W·f)
    x = (x * 255.0 + 0.5).astype(np.uint8)
    return [im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0) for im in x]


def montage(images: np.ndarray, columns: int = 8, min_side: int = 64, pad: int = 2
            ) -> np.ndarray:
    """One uint8 image tiling ``images`` (N, C, H, W) in rows of ``columns`` (white gaps)."""
    tiles = to_display(images, min_side=min_side)
    h, w = tiles[0].shape[:2]
    rgb = tiles[0].ndim == 3
    rows = int(np.ceil(len(tiles) / columns))
    shape = (rows * (h + pad) + pad, columns * (w + pad) + pad) + ((3,) if rgb else ())
    out = np.full(shape, 255, dtype=np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, columns)
        out[pad + r * (h + pad): pad + r * (h + pad) + h,
            pad + c * (w + pad): pad + c * (w + pad) + w] = t
    return out


def _rgb(tile: np.ndarray) -> np.ndarray:
    return np.repeat(tile[..., None], 3, axis=2) if tile.ndim == 2 else tile


def image_grid_figure(images: np.ndarray, captions: Sequence[str] | None = None, *,
                      columns: int = 8, title: str = "", tile: int = 96) -> go.Figure:
    """Images (N, C, H, W) in [0, 1] in rows of ``columns``, each titled by its caption."""
    n = len(images)
    rows = max(1, int(np.ceil(n / columns)))
    captions = list(captions) if captions is not None else [""] * n
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=captions + [""] * (
        rows * columns - n), horizontal_spacing=0.01, vertical_spacing=0.06 / rows)
    for k, im in enumerate(to_display(images, min_side=tile)):
        fig.add_trace(go.Image(z=_rgb(im), hoverinfo="skip"), row=k // columns + 1,
                      col=k % columns + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, height=rows * (tile + 30) + 60,
                      width=columns * (tile + 10) + 20, margin=MARGIN)
    return fig


def interpolation_strips_figure(strips: Mapping[str, np.ndarray], alphas: Sequence[float],
                                *, title: str = "Interpolations", tile: int = 80) -> go.Figure:
    """One row per space: the decoded images (T, C, H, W) at each α, spaces named on the
    left, α on top (the figure of Yan, Ho & Abbeel 2019)."""
    names = list(strips)
    if not names:
        raise ValueError("strips is empty; give {space name: images at each alpha}.")
    t = len(alphas)
    bad = [k for k, v in strips.items() if len(v) != t]
    if bad:
        raise ValueError(f"every strip needs {t} images (one per alpha); {bad[0]!r} has "
                         f"{len(strips[bad[0]])}.")
    fig = make_subplots(rows=len(names), cols=t, horizontal_spacing=0.005,
                        vertical_spacing=0.02, row_titles=names,
                        column_titles=[f"α={a:.2f}" for a in alphas])
    for r, name in enumerate(names):
        for c, im in enumerate(to_display(strips[name], min_side=tile)):
            fig.add_trace(go.Image(z=_rgb(im), hoverinfo="skip"), row=r + 1, col=c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, height=len(names) * (tile + 12) + 90,
                      width=t * (tile + 4) + 220, margin=dict(MARGIN, r=200))
    return fig
