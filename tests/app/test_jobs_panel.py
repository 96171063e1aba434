"""AppTest: the sidebar's background-jobs panel, and its rerun when a job it showed has ended."""

from __future__ import annotations

import threading
import uuid

from streamlit.testing.v1 import AppTest


def _panel_script(names: list[str]) -> None:
    import streamlit as st

    from app.jobs_ui import jobs_panel

    st.session_state["runs"] = st.session_state.get("runs", 0) + 1
    with st.sidebar:
        jobs_panel()
    st.write(f"runs {st.session_state['runs']}")


def _live_script(ended: str) -> None:
    import streamlit as st

    from app.jobs_ui import _live_panel

    st.session_state["runs"] = st.session_state.get("runs", 0) + 1
    # What the last full run saw running: `ended` on the first run, nothing after the rerun.
    st.session_state["_jobs_running"] = {ended} if st.session_state["runs"] == 1 else set()
    _live_panel()


def _job(gate: threading.Event | None = None) -> str:
    """A job of this test in the app's registry: waits for ``gate`` (or ends at once)."""
    from app.state import jobs

    name = f"probe:{uuid.uuid4().hex[:8]}"  # the panel labels "probe:…" as linear probes
    jobs().submit(name, lambda job: gate.wait(30) if gate else None)
    return name


def test_panel_shows_a_running_job_then_its_end():
    gate = threading.Event()
    name = _job(gate)
    at = AppTest.from_function(_panel_script, args=([name],), default_timeout=30).run()
    assert not at.exception, at.exception
    label = f"linear probes · {name.split(':')[1]}"
    bars = [p for p in at.sidebar.get("progress") if label in p.proto.text]
    assert len(bars) == 1 and ":material/hourglass_top:" in bars[0].proto.text
    assert at.session_state["_jobs_running"] >= {name}
    gate.set()
    from app.state import jobs

    assert jobs().get(name).wait(10)
    at.run()
    done = [c.value for c in at.sidebar.caption if label in c.value]
    assert len(done) == 1 and done[0].startswith(":material/check_circle:"), done
    assert name not in at.session_state["_jobs_running"]


def test_live_panel_reruns_the_page_once_a_job_it_showed_has_ended():
    # The page's own watcher may lose its timer; the panel's timer must still bring the
    # result: a job seen running at the last full run has ended -> one full rerun.
    name = _job()
    from app.state import jobs

    assert jobs().get(name).wait(10)
    at = AppTest.from_function(_live_script, args=(name,), default_timeout=30).run()
    assert not at.exception, at.exception
    assert at.session_state["runs"] == 2


def test_live_panel_does_not_rerun_while_the_job_runs():
    gate = threading.Event()
    name = _job(gate)
    try:
        at = AppTest.from_function(_live_script, args=(name,), default_timeout=30).run()
        assert not at.exception, at.exception
        assert at.session_state["runs"] == 1
    finally:
        gate.set()
