"""Manipulate: add or remove an attribute with δ = mean(z | has it) − mean(z | has not)."""

import numpy as np
import streamlit as st

from app.picker import gallery, label_of, take_pick
from app.spaces_ui import (
    Timer,
    decode,
    decoder_panel,
    direction,
    embedding,
    pick_spaces,
    png_bytes,
)
from app.state import current_dataset
from app.widgets import image_grid
from fisher_core.explore import apply_direction

st.title("Manipulate")
ds, ds_key = current_dataset()
st.caption("Attribute vectors: δ = mean(z | attribute) − mean(z | no attribute), added with "
           "a strength s and decoded; about 3 makes a visible change (Yan, Ho & Abbeel 2019).")
spaces = decoder_panel(ds, ds_key)
if not spaces:
    st.info("Train a decoder for at least one embedding above to edit images.")
    st.stop()
names = pick_spaces(spaces, key="man_spaces")
if not names:
    st.stop()

modes = (["Dataset attribute"] if ds.attribute_names else []) + \
        (["Two groups of labels"] if ds.labels is not None else [])
if not modes:
    st.warning("This dataset has no attributes or labels to define a direction.")
    st.stop()
mode = st.radio("Direction from", modes, horizontal=True, key="man_mode")
if mode == "Dataset attribute":
    attr = st.selectbox("Attribute", ds.attribute_names, key="man_attr")
    pos = ds.attributes[:, ds.attribute_names.index(attr)].astype(bool)
    neg, what = ~pos, attr
else:
    c = st.columns(2)
    g1 = c[0].multiselect("Towards labels", ds.class_names, default=ds.class_names[-1:],
                          key="man_g1")
    g2 = c[1].multiselect("Away from labels", ds.class_names, default=ds.class_names[:1],
                          key="man_g2")
    pos = np.isin(ds.labels, [ds.class_names.index(x) for x in g1])
    neg = np.isin(ds.labels, [ds.class_names.index(x) for x in g2])
    what = "+".join(g1) or "group"
if pos.sum() == 0 or neg.sum() == 0:
    st.error("Both groups need at least one image: choose other labels or another attribute.")
    st.stop()

without = np.flatnonzero(~pos)
default_sources = [int(i) for i in without[:4]] if without.size else [0]
st.session_state.setdefault("man_sources", default_sources)
if (extra := take_pick("source")) is not None:  # clicked on the Embeddings page or below
    current = st.session_state["man_sources"]
    st.session_state["man_sources"] = list(dict.fromkeys([*current, *extra]))[-8:]
sources = st.multiselect("Source images (indices)", list(range(len(ds))), key="man_sources",
                         max_selections=8, format_func=lambda i: label_of(ds, i))
with st.expander("Pick source images in the gallery (or click points on the Embeddings page)"):
    chosen = gallery(ds, ds_key, "man_gallery", multi=True)
    if st.button("Use as sources", key="man_use", disabled=not chosen):
        st.session_state["pick_source"] = chosen
        st.rerun()
if not sources:
    st.stop()
image_grid(ds.images[sources], [label_of(ds, i) for i in sources], columns=8, width=80)


def _delta(name: str) -> np.ndarray:
    return direction(name, pos, neg)


@st.fragment
def strength_view() -> None:
    """Reruns alone when the strength moves: one decode per space and source."""
    s = st.slider(f"Strength of “{what}”", -5.0, 5.0, 3.0, 0.25, key="man_strength")
    with Timer() as t:
        rows = {name: decode(name, apply_direction(embedding(name).vectors[sources],
                                                   _delta(name), s)) for name in names}
    for name, imgs in rows.items():
        st.markdown(f"**{embedding(name).kind}** · {name}")
        image_grid(imgs, [f"#{i}" for i in sources], columns=8, width=80)
    st.caption(f"decoded in {t.ms:.0f} ms")


strength_view()

st.subheader("Grid over strengths")
grid_s = np.array([-5, -3, -1, 0, 1, 3, 5], dtype=float)
src = st.selectbox("Source", sources, key="man_grid_src")
rows = []
for name in names:
    e = embedding(name)
    imgs = decode(name, apply_direction(e.vectors[src], _delta(name), grid_s))  # (S, C, H, W)
    rows.append(imgs)
    st.markdown(f"**{e.kind}** · {name}")
    image_grid(imgs, [f"s={v:+.0f}" for v in grid_s], columns=len(grid_s), width=64)
st.download_button("Download grid (PNG)", png_bytes(np.concatenate(rows), len(grid_s)),
                   f"edit-{what}-{src}.png", mime="image/png", key="man_png")
