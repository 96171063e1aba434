"""Training checkpoints kept in the workspace, so a run outlives the process that started it.

A run saved under ``name`` checkpoints into ``<root>/checkpoints/<name>/`` after every epoch
(:mod:`fisher_core.training.checkpoint`: weights, optimizers, RNG states, loop state), next to
``run.json``, the request that started it (family, config, training options, dataset key).
The folder is removed once the trained model is saved; a folder that is still there belongs
to a run whose process died (a killed server, a closed laptop), and
:func:`fisher_core.workspace.resume_run` continues it from its last completed epoch.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write_json, read_json
from .store import Workspace, check_name

__all__ = ["checkpoint_dir", "discard_run", "interrupted_runs"]

CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"
_CKPT_JSON = "checkpoint.json"  # written by fisher_core.training.checkpoint


def checkpoint_dir(workspace: Workspace, name: str) -> Path:
    """The checkpoint folder of run ``name`` (not created)."""
    return workspace.root / CHECKPOINTS / check_name(name)


def start_run(workspace: Workspace, name: str, request: dict[str, Any]) -> Path:
    """A fresh checkpoint folder for run ``name`` holding its ``request``; an older
    interrupted run of the same name is replaced."""
    folder = checkpoint_dir(workspace, name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    atomic_write_json(folder / RUN_FILE, request | {"started": time.time()})
    return folder


def interrupted_runs(workspace: Workspace,
                     dataset_key: str | None = None) -> list[dict[str, Any]]:
    """Runs whose checkpoints are still in the workspace, newest first.

    Each is its request (``name``, ``family``, ``config``, ``options``, ``dataset_key``, ...)
    plus ``epochs_done`` (0 when it died before its first checkpoint). A run that is training
    right now in this process is listed too; the caller knows which jobs it runs.

    Parameters
    ----------
    workspace : Workspace
    dataset_key : str or None, default=None
        Only the runs of this dataset.
    """
    base = workspace.root / CHECKPOINTS
    runs = []
    for folder in sorted(base.iterdir()) if base.is_dir() else []:
        try:
            request = read_json(folder / RUN_FILE)
        except (OSError, ValueError):
            continue  # not a run folder (or a start cut short): nothing to resume
        if dataset_key is not None and request.get("dataset_key") != dataset_key:
            continue
        try:
            done = int(read_json(folder / _CKPT_JSON)["state"]["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            done = 0
        runs.append(request | {"name": folder.name, "epochs_done": done})
    return sorted(runs, key=lambda r: -float(r.get("started", 0)))


def discard_run(workspace: Workspace, name: str) -> None:
    """Forget interrupted run ``name`` (its checkpoints are deleted)."""
    shutil.rmtree(checkpoint_dir(workspace, name), ignore_errors=True)
