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
    cols[0].progress(snap.fraction, text=md(snap.describe()))
    if cancellable and cols[1].button("Cancel", key=f"cancel_{name}"):
        job.cancel()


# Material icons ship with Streamlit's own font: they draw in any browser (emoji need a font).
_ICONS = {"running": ":material/hourglass_top:", "done": ":material/check_circle:",
          "failed": ":material/error:", "cancelled": ":material/cancel:"}
# Jobs the panel does not list: the app's own warm-up and measurements.
_INTERNAL = ("umap-warmup", "step-seconds:")
_KINDS = {"train": "training", "umap": "UMAP", "probe": "linear probes",
          "ablation": "FV ablation", "decoder": "decoder", "extractor": "feature extractor",
          "fid": "FID curves", "edits": "edit scores", "emb": "embedding",
          "gmm-sweep": "choosing K"}


def _visible(name: str) -> str | None:
    """The label of a job this session should see in the panel, or None."""
    if name.startswith(_INTERNAL):
        return None
    base, _, owner = name.partition("@")
    if owner and owner != st.session_state.get("_session_id"):
        return None  # another browser session's private job
    kind, _, what = base.partition(":")
    return f"{_KINDS.get(kind, kind)} · {what.split(':')[0]}" if what else _KINDS.get(kind, kind)


def _running(shown) -> set[str]:
    return {j.name for j, _ in shown if not j.snapshot().finished}


def jobs_panel() -> None:
    """Every background job of this session (and the shared ones), running and finished,
    in the sidebar; refreshes itself while any is running."""
    shown = [(j, label) for j in jobs().all() if (label := _visible(j.name))]
    if not shown:
        return
    st.caption("**Background jobs**")
    running = _running(shown)
    st.session_state["_jobs_running"] = running
    if running:
        _live_panel()
    else:
        _draw_panel(shown)


@st.fragment(run_every=1.0)
def _live_panel() -> None:
    shown = [(j, label) for j in jobs().all() if (label := _visible(j.name))]
    # A job that was running at the last full run has ended: rerun the page so that it shows
    # the result. The page's own `watch` does the same; two timers, so that one lost timer
    # never leaves a finished job behind a progress bar.
    if st.session_state.get("_jobs_running", set()) - _running(shown):
        st.rerun(scope="app")
    _draw_panel(shown)


def _draw_panel(shown) -> None:
    for job, label in shown[-8:]:
        snap = job.snapshot()
        icon = _ICONS[snap.status]
        if snap.finished:
            st.caption(f"{icon} {md(label)} · {md(snap.describe())}")
        else:
            st.progress(snap.fraction, text=f"{icon} {md(label)} · {md(snap.describe())}")


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
