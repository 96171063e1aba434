"""Figures: every picture the app shows, built here once (plotly only, no streamlit) so a
notebook calling the same function gets the same figure. Inputs are plain results (arrays,
rows, histories); nothing here computes a metric or touches the workspace.
"""

from .data import attribute_share_figure, class_counts_figure
from .embedding import embedding_scatter
from .images import image_grid_figure, interpolation_strips_figure, montage, to_display
from .results import (
    ablation_figure,
    ablation_setting,
    class_distance_figure,
    edit_scores_figure,
    fid_alpha_figure,
    probe_figure,
    scaling_figure,
)
from .training import gmm_selection_figure, monitor_figure, size_sweep_figure, training_curves

__all__ = [
    "ablation_figure",
    "ablation_setting",
    "attribute_share_figure",
    "class_counts_figure",
    "class_distance_figure",
    "edit_scores_figure",
    "embedding_scatter",
    "fid_alpha_figure",
    "gmm_selection_figure",
    "image_grid_figure",
    "interpolation_strips_figure",
    "monitor_figure",
    "size_sweep_figure",
    "montage",
    "probe_figure",
    "scaling_figure",
    "to_display",
    "training_curves",
]
