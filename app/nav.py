"""The list of pages, in one place (paths are relative to app/main.py)."""

from __future__ import annotations

import streamlit as st

# (file under pages/, title, icon). Only pages that work are listed.
PAGE_SPECS: list[tuple[str, str, str]] = [
    ("home.py", "Home", ":material/home:"),
    ("data.py", "Data", ":material/dataset:"),
    ("train.py", "Train", ":material/model_training:"),
    ("embeddings.py", "Embeddings", ":material/scatter_plot:"),
    ("interpolate.py", "Interpolate", ":material/linear_scale:"),
    ("manipulate.py", "Manipulate", ":material/tune:"),
    ("classify.py", "Classify", ":material/table_chart:"),
    ("metrics.py", "Metrics", ":material/monitoring:"),
]


def page_path(filename: str) -> str:
    """Path of a page relative to the entry file, as st.switch_page wants it."""
    return f"../pages/{filename}"


def pages() -> list[st.Page]:
    """st.Page objects for st.navigation, Home first (the default page)."""
    return [
        st.Page(page_path(f), title=t, icon=i, default=(k == 0))
        for k, (f, t, i) in enumerate(PAGE_SPECS)
    ]
