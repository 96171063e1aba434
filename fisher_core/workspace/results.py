"""Result tables kept in the workspace under the settings that made them.

A probe table, an ablation, any list of rows a page or a script computes is saved as a
``results`` entry named after its kind and settings, so it is shown again after a reload or a
restart, and recomputing the same settings replaces it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .names import derived_name
from .store import EntryError, Workspace

__all__ = ["load_rows", "result_key_name", "save_rows"]


def result_key_name(kind: str, key: dict[str, Any]) -> str:
    """The workspace name of a ``kind`` result made with settings ``key`` (readable where
    possible, always unique and valid; see :func:`fisher_core.workspace.names.derived_name`)."""
    readable = "-".join([kind, *(str(v) for v in key.values())])
    return derived_name(readable + "~" + json.dumps(key, sort_keys=True, default=str),
                        fallback=kind)


def save_rows(workspace: Workspace, kind: str, key: dict[str, Any],
              rows: list[dict[str, Any]]) -> str:
    """Save ``rows`` (JSON-serialisable dicts) as the ``kind`` result for settings ``key``.

    Returns
    -------
    str
        The entry's name.
    """
    name = result_key_name(kind, key)
    workspace.save_result(name, {"kind": kind, "key": key, "rows": rows,
                                 "saved": time.time()})
    return name


def load_rows(workspace: Workspace, kind: str, key: dict[str, Any]
              ) -> tuple[list[dict[str, Any]], float] | None:
    """The rows saved for ``kind`` and ``key`` and when (a Unix time), or None."""
    try:
        data, _ = workspace.load_result(result_key_name(kind, key))
    except EntryError:
        return None
    if data.get("kind") != kind or data.get("key") != json.loads(json.dumps(key, default=str)):
        return None
    return data["rows"], float(data.get("saved", 0.0))
