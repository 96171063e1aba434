"""Session state and caches shared by the pages (no maths here)."""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

import streamlit as st

from app.widgets import md
from fisher_core.data import ImageDataset, load_builtin
from fisher_core.explore import warmup_umap
from fisher_core.workspace import Job, JobRegistry, Workspace, default_root

DEFAULT_BUILTIN = ("faces", ())


@st.cache_resource(show_spinner=False)
def _workspace(root: str) -> Workspace:
    return Workspace(root)


def workspace() -> Workspace:
    """The workspace under ``$FISHERLAB_HOME`` (one object per root, shared by sessions)."""
    return _workspace(str(default_root()))


class _Builtins:
    """Built-in datasets generated once per process (by a page or the start-up thread)."""

    def __init__(self) -> None:
        self._d: dict[tuple, ImageDataset] = {}
        self._lock = threading.Lock()  # one generation at a time; others wait for it

    def get(self, name: str, options: tuple[tuple[str, Any], ...]) -> ImageDataset:
        with self._lock:
            if (name, options) not in self._d:
                self._d[name, options] = load_builtin(name, **dict(options))
            return self._d[name, options]

    def ready(self, name: str, options: tuple[tuple[str, Any], ...] = ()) -> bool:
        return (name, options) in self._d


@st.cache_resource(show_spinner=False)
def _builtins() -> _Builtins:
    return _Builtins()


def builtin_dataset(name: str, options: tuple[tuple[str, Any], ...] = ()) -> ImageDataset:
    """A built-in dataset, generated once per (name, options) and shared read-only."""
    store = _builtins()
    if store.ready(name, options):
        return store.get(name, options)
    with st.spinner("Generating the built-in dataset…"):
        return store.get(name, options)


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
    """The current dataset and its key.

    A new session (a reload, a restarted server) starts from the dataset named in the URL
    (``?dataset=builtin:faces`` or ``?dataset=workspace:<name>``, kept there by
    :func:`remember_in_url`), else from the built-in faces.
    """
    if "dataset" not in st.session_state:
        key = st.query_params.get("dataset")
        restored = _restore(key) if key else None
        if restored is None:
            name, options = DEFAULT_BUILTIN
            restored = builtin_dataset(name, options), builtin_key(name, options)
        set_dataset(*restored)
    return st.session_state["dataset"], st.session_state["dataset_key"]


_BUILTIN = re.compile(r"builtin:(\w+)(?:\(((?:\w+=\d+,?)*)\))?")


def _restore(key: str) -> tuple[ImageDataset, str] | None:
    """The dataset a URL key names, or None (with a note for the page) when it is gone."""
    try:
        m = _BUILTIN.fullmatch(key)
        if m:
            opts = tuple((k, int(v)) for k, v in
                         (kv.split("=") for kv in (m.group(2) or "").split(",") if kv))
            return builtin_dataset(m.group(1), opts), builtin_key(m.group(1), opts)
        if key.startswith("workspace:"):
            name = key.removeprefix("workspace:")
            return workspace().load_dataset(name), key
    except (ValueError, TypeError) as exc:  # DatasetError and EntryError are ValueErrors
        st.session_state["restore_note"] = f"Could not reopen {key}: {exc}"
        return None
    st.session_state["restore_note"] = (
        "The dataset of your last visit was an upload that was not saved; the built-in "
        "faces are loaded instead. Save an upload on the Data page to keep it.")
    return None


def remember_in_url() -> None:
    """Keep the current dataset in the URL, so a reload or a restart reopens it."""
    key = st.session_state.get("dataset_key", "")
    if key.startswith(("builtin:", "workspace:", "upload:")):
        if st.query_params.get("dataset") != key:
            st.query_params["dataset"] = key
    elif "dataset" in st.query_params:
        del st.query_params["dataset"]


def sidebar_status() -> None:
    """A reminder of the current dataset in the sidebar (drawn after the page ran, so it
    shows what the page just chose; a page that needs no dataset does not make one)."""
    if "dataset" not in st.session_state and "dataset" not in st.query_params:
        st.sidebar.caption(f"Dataset: **{DEFAULT_BUILTIN[0]}** (default)")
    else:
        ds, _ = current_dataset()
        c, h, w = ds.shape
        st.sidebar.caption(f"Dataset: **{md(ds.name)}** · {len(ds)} images · {c}×{h}×{w}")
    st.sidebar.caption(f"Workspace: {md(workspace().root)}")
    note = st.session_state.pop("restore_note", None)
    if note:
        st.sidebar.info(md(note))


# ---------------------------------------------------------------------- background work
@st.cache_resource(show_spinner=False)
def jobs() -> JobRegistry:
    """The process-wide registry of background jobs (thread-safe)."""
    return JobRegistry()


@st.cache_resource(show_spinner=False)
def start_warmup() -> Job:
    """Once per server process: one torch thread per task; the default dataset generated and
    UMAP compiled in the background, after the first page has had time to render.

    The app runs training, embedding and UMAP jobs in threads next to the page's own work
    (decoding on every slider move). With torch's default of one intra-op thread per core,
    these oversubscribe a small CPU: measured on 2 cores under load, decoding 16 images took
    40 ms median / 564 ms p95 with 2 threads against 3.3 / 9 ms with 1 thread. One thread per
    task keeps the sliders responsive; concurrent jobs still use all cores.
    """
    import torch

    torch.set_num_threads(1)
    builtins = _builtins()

    def warm(job: Job) -> None:
        time.sleep(3.0)  # let the first page render before competing for the CPU
        builtins.get(*DEFAULT_BUILTIN)  # most pages start from it
        warmup_umap()

    return jobs().submit("umap-warmup", warm)


class _LRU:
    """A small thread-safe LRU map for results computed by background jobs."""

    def __init__(self, size: int) -> None:
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
            return None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)


@st.cache_resource(show_spinner=False)
def results_cache() -> _LRU:
    """Process-wide cache of UMAP layouts and other job results, keyed explicitly."""
    return _LRU(64)


def session_job(name: str) -> str:
    """A job name private to this browser session (results one user asked for stay theirs)."""
    if "_session_id" not in st.session_state:
        st.session_state["_session_id"] = uuid.uuid4().hex[:12]
    return f"{name}@{st.session_state['_session_id']}"


def run_in_background(name: str, fn, *args: Any, **kwargs: Any) -> Job:
    """Run library function ``fn(*args, progress=..., **kwargs)`` as job ``name``.

    The library reports ``progress(fraction, message)``; the job turns that into its state.
    """

    def work(job: Job) -> Any:
        return fn(*args, progress=lambda f, m: job.report(f, 1.0, m), **kwargs)

    return jobs().submit(name, work)
