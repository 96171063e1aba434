"""Training: one loop for every model family (and for decoders and feature extractors), its
mini-batches and seeded splits, and atomic resumable checkpoints. Which models exist is
:mod:`fisher_core.models`; saving trained runs to the workspace is :mod:`fisher_core.workspace`.
"""

from .batches import split_indices
from .checkpoint import CheckpointError
from .em import fit_patch_gmm, sweep_components
from .events import ProgressEvent, TrainResult
from .loop import step_seconds, train

__all__ = ["CheckpointError", "ProgressEvent", "TrainResult", "fit_patch_gmm", "split_indices",
           "step_seconds", "sweep_components", "train"]
