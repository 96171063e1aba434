"""Choosing images by clicking: a filterable gallery, and picks handed between pages.

A pick is a pending value (``send_pick``) that the page owning the widget applies before it
draws the widget (``take_pick``): Streamlit only lets a widget's value be set before the
widget exists in a run.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from app.widgets import md, to_display
from fisher_core.data import ImageDataset

GALLERY_ROWS = 300  # rows shown at once; filters narrow the rest down


def send_pick(target: str, index: int) -> None:
    """Hand image ``index`` to ``target``: "A" / "B" (Interpolate), "source" (Manipulate,
    appended), "query" (neighbours)."""
    if target == "source":
        picked = st.session_state.setdefault("pick_source", [])
        if int(index) not in picked:
            picked.append(int(index))
    else:
        st.session_state[f"pick_{target}"] = int(index)


def take_pick(target: str):
    """The pending pick for ``target`` (removed), or None."""
    return st.session_state.pop(f"pick_{target}", None)


def label_of(ds: ImageDataset, i: int, width: int = 18) -> str:
    """``#i · label`` (the label shortened), for captions."""
    if ds.labels is None or not ds.class_names:
        return f"#{i}"
    name = ds.class_names[int(ds.labels[i])]
    return f"#{i} · {name if len(name) <= width else name[: width - 1] + '…'}"


@st.cache_resource(show_spinner=False, max_entries=8)
def _thumbs(ds_key: str) -> dict[int, str]:
    return {}  # filled lazily: index → PNG data URL


def _thumb_urls(ds: ImageDataset, ds_key: str, index: np.ndarray) -> list[str]:
    cache = _thumbs(ds_key)
    missing = [int(i) for i in index if int(i) not in cache]
    for i, im in zip(missing, to_display(ds.images[missing], min_side=40), strict=True):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG")
        cache[i] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return [cache[int(i)] for i in index]


def gallery(ds: ImageDataset, ds_key: str, key: str, *, multi: bool = False) -> list[int]:
    """A table of thumbnails with label and attributes, filterable, sortable by any column
    (click its header); returns the dataset indices of the selected rows."""
    keep = np.ones(len(ds), dtype=bool)
    cols = st.columns(3)
    if ds.labels is not None and ds.class_names:
        labels = cols[0].multiselect("Labels", ds.class_names, key=f"{key}_labels",
                                     placeholder="any label")
        if labels:
            keep &= np.isin(ds.labels, [ds.class_names.index(x) for x in labels])
    if ds.attribute_names:
        has = cols[1].multiselect("With", ds.attribute_names, key=f"{key}_with",
                                  placeholder="any attributes")
        lacks = cols[2].multiselect("Without", ds.attribute_names, key=f"{key}_without",
                                    placeholder="none excluded")
        for a in has:
            keep &= ds.attributes[:, ds.attribute_names.index(a)]
        for a in lacks:
            keep &= ~ds.attributes[:, ds.attribute_names.index(a)]
    index = np.flatnonzero(keep)
    if index.size == 0:
        st.caption("No image matches these filters.")
        return []
    shown = index[:GALLERY_ROWS]
    table = {"image": _thumb_urls(ds, ds_key, shown), "index": shown}
    if ds.labels is not None and ds.class_names:
        table["label"] = [ds.class_names[int(ds.labels[i])] for i in shown]
    for j, a in enumerate(ds.attribute_names):
        table[a] = ds.attributes[shown, j]
    event = st.dataframe(
        pd.DataFrame(table), key=f"{key}_table", hide_index=True, height=300,
        on_select="rerun", selection_mode="multi-row" if multi else "single-row",
        column_config={"image": st.column_config.ImageColumn("image", width="small")},
    )
    more = index.size - shown.size
    st.caption(f"{index.size:,} images match" + (f"; the first {shown.size} are listed, "
               "narrow the filters to see others" if more else "") + ". Click a row to pick it.")
    rows = event.selection.rows if event and event.selection else []
    return [int(shown[r]) for r in rows]


def picked_image(ds: ImageDataset, i: int) -> None:
    """A clicked image, large, with its label and attributes."""
    c = st.columns([1, 3])
    c[0].image(to_display(ds.images[[i]], min_side=96)[0], width=96)
    attrs = [a for j, a in enumerate(ds.attribute_names) if ds.attributes[i, j]]
    c[1].markdown(f"Picked **{md(label_of(ds, i, width=60))}**  \n"
                  + (md(", ".join(attrs)) if attrs else "no attributes"))
