"""Show a background job's progress without blocking the page."""

from __future__ import annotations

import streamlit as st

from app.state import jobs
from app.widgets import md
from fisher_core.workspace import JobSnapshot


@st.fragment(run_every=0.5)
def watch(name: str, cancellable: bool = True) -> None:
    """Progress bar of job ``name``, refreshed twice a second; reruns the page when it ends."""
    job = jobs().get(name)
    if job is None:
        return
    snap = job.snapshot()
    if snap.finished:
        st.rerun(scope="app")
    cols = st.columns([5, 1])
    cols[0].progress(snap.fraction, text=f"{snap.message} · {snap.elapsed:.0f} s")
    if cancellable and cols[1].button("Cancel", key=f"cancel_{name}"):
        job.cancel()


def status(name: str) -> JobSnapshot | None:
    """Snapshot of job ``name`` or None; shows the watcher while it runs and errors after."""
    job = jobs().get(name)
    if job is None:
        return None
    snap = job.snapshot()
    if not snap.finished:
        watch(name)
    elif snap.status == "failed":
        st.error(f"{name} failed: {md(snap.error)}")
    elif snap.status == "cancelled":
        st.warning(f"{name} was cancelled.")
    return snap
