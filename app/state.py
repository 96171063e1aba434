"""Session state and caches shared by the pages (no maths here)."""

from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from fisher_core.data import ImageDataset, load_builtin
from fisher_core.store import Workspace, default_root

DEFAULT_BUILTIN = ("faces", ())


@st.cache_resource(show_spinner=False)
def _workspace(root: str) -> Workspace:
    return Workspace(root)


def workspace() -> Workspace:
    """The workspace under ``$FISHERLAB_HOME`` (one object per root, shared by sessions)."""
    return _workspace(str(default_root()))


@st.cache_resource(show_spinner="Generating the built-in dataset…", max_entries=16)
def builtin_dataset(name: str, options: tuple[tuple[str, Any], ...] = ()) -> ImageDataset:
    """A built-in dataset, generated once per (name, options) and shared read-only."""
    return load_builtin(name, **dict(options))


def builtin_key(name: str, options: tuple[tuple[str, Any], ...] = ()) -> str:
    """A stable cache key for a built-in dataset."""
    opts = ",".join(f"{k}={v}" for k, v in options)
    return f"builtin:{name}" + (f"({opts})" if opts else "")


def content_key(prefix: str, data: bytes) -> str:
    """A cache key from the bytes of an upload."""
    return f"{prefix}:{hashlib.sha1(data).hexdigest()[:16]}"


def set_dataset(ds: ImageDataset, key: str) -> None:
    """Make ``ds`` the current dataset; ``key`` identifies it for downstream caches."""
    st.session_state["dataset"] = ds
    st.session_state["dataset_key"] = key


def current_dataset() -> tuple[ImageDataset, str]:
    """The current dataset and its key; the built-in faces until the user picks another."""
    if "dataset" not in st.session_state:
        name, options = DEFAULT_BUILTIN
        set_dataset(builtin_dataset(name, options), builtin_key(name, options))
    return st.session_state["dataset"], st.session_state["dataset_key"]


def sidebar_status() -> None:
    """A one-line reminder of the current dataset in the sidebar."""
    ds, _ = current_dataset()
    c, h, w = ds.shape
    st.sidebar.caption(f"Dataset: **{ds.name}** · {len(ds)} images · {c}×{h}×{w}")
    st.sidebar.caption(f"Workspace: `{workspace().root}`")
