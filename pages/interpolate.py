"""Interpolate: walk between two images in each embedding space, decoded back to pixels."""

import numpy as np
import streamlit as st

from app.picker import gallery, label_of, send_pick, take_pick
from app.spaces_ui import Timer, decode, decoder_panel, embedding, pick_spaces, png_bytes
from app.state import current_dataset
from app.widgets import image_grid
from fisher_core.explore import interpolate

st.title("Interpolate")
ds, ds_key = current_dataset()
st.caption("Pick two images; every space interpolates between their embeddings and its "
           "decoder draws the result. Good spaces stay on the image manifold at α = 0.5 "
           "(Yan, Ho & Abbeel 2019).")
spaces = decoder_panel(ds, ds_key)
if not spaces:
    st.info("Train a decoder for at least one embedding above to interpolate.")
    st.stop()
names = pick_spaces(spaces, key="int_spaces")
if not names:
    st.stop()

n = len(ds)
for target, key in (("A", "int_a"), ("B", "int_b")):  # picks from the explorer or the gallery
    if (i := take_pick(target)) is not None:
        st.session_state[key] = i
c = st.columns([1, 1, 1, 1])
a = int(c[0].number_input("Image A (index)", 0, n - 1, 0, key="int_a"))
b = int(c[1].number_input("Image B (index)", 0, n - 1, min(n - 1, 1), key="int_b"))
method = c[2].radio("Path", ["linear", "slerp"], horizontal=True, key="int_method")
if c[3].button("Random pair", key="int_random"):
    rng = np.random.default_rng()
    st.session_state["int_a"], st.session_state["int_b"] = map(int, rng.choice(n, 2, False))
    st.rerun()
image_grid(ds.images[[a, b]], [f"A {label_of(ds, a)}", f"B {label_of(ds, b)}"], columns=8,
           width=96)
with st.expander("Pick A and B in the gallery (or click a point on the Embeddings page)"):
    chosen = gallery(ds, ds_key, "int_gallery")
    g = st.columns([1, 1, 4])
    if g[0].button("Set as A", key="int_set_a", disabled=not chosen):
        send_pick("A", chosen[0])
        st.rerun()
    if g[1].button("Set as B", key="int_set_b", disabled=not chosen):
        send_pick("B", chosen[0])
        st.rerun()


@st.fragment
def slider_view() -> None:
    """Only this part reruns when the slider moves: one decode per space."""
    alpha = st.slider("α (0 = A, 1 = B; outside extrapolates)", -0.5, 1.5, 0.5, 0.05,
                      key="int_alpha")
    with Timer() as t:
        imgs = [decode(name, interpolate(embedding(name).vectors[a], embedding(name).vectors[b],
                                         [alpha], method=method)) for name in names]
    image_grid(np.concatenate(imgs), [f"{embedding(m).kind}: {m}" for m in names],
               columns=len(names) if len(names) > 1 else 2, width=160)
    st.caption(f"decoded in {t.ms:.0f} ms")


slider_view()

st.subheader("Strip")
steps = st.slider("Steps", 3, 15, 9, key="int_steps")
alphas = np.linspace(0, 1, steps)
strips = []
for name in names:
    e = embedding(name)
    row = decode(name, interpolate(e.vectors[a], e.vectors[b], alphas, method=method))
    strips.append(row)
    st.markdown(f"**{e.kind}** · {name}")
    image_grid(row, [f"α={x:.2f}" for x in alphas], columns=steps, width=64)
st.download_button("Download strips (PNG)", png_bytes(np.concatenate(strips), columns=steps),
                   f"interpolation-{a}-{b}.png", mime="image/png", key="int_png")
