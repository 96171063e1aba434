"""FisherLab's Streamlit entry point: `streamlit run app/main.py`."""

from __future__ import annotations

import sys
from pathlib import Path

# Streamlit puts only this file's folder on sys.path; the shell's helpers live in the
# `app` package next to `fisher_core`, so the repository root must be importable too.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from app.jobs_ui import jobs_panel  # noqa: E402
from app.nav import pages  # noqa: E402
from app.state import remember_in_url, sidebar_status, start_warmup  # noqa: E402

st.set_page_config(page_title="FisherLab", page_icon="🧭", layout="wide")
start_warmup()  # UMAP compiles in the background while the user looks around
navigation = st.navigation(pages())
sidebar = st.sidebar.container()
try:
    navigation.run()
finally:  # after the page, also when it stopped early: the sidebar shows what it chose
    with sidebar:
        sidebar_status()
        jobs_panel()
    remember_in_url()
