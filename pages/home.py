"""Home: what FisherLab is, and a one-click path into the faces demo."""

import streamlit as st

from app.nav import page_path
from app.state import builtin_dataset, builtin_key, set_dataset
from app.widgets import montage

st.title("FisherLab")
st.markdown(
    """
**Explore what a generative model knows about your data through its Fisher scores.**

A model's Fisher score *U(x) = ∇θ log pθ(x)* maps every example to a point in the model's
parameter space. FisherLab trains small models on your CPU (GMM, VAE, PixelCNN, an
energy-based GAN), embeds a dataset with their Fisher scores, and lets you look at the
embedding, walk through it and measure it.
"""
)

left, right = st.columns([3, 2], gap="large")
with left:
    st.graphviz_chart(
        """
        digraph {
          rankdir=LR; node [shape=box, style="rounded,filled", fillcolor="#eef3fb",
                            fontname="Helvetica", fontsize=11, color="#4a6fa5"];
          data [label="Dataset\\n(built-in or yours)"];
          model [label="Model\\nGMM · VAE · PixelCNN · EBM-GAN"];
          fisher [label="Fisher scores\\n∇θ log pθ(x)"];
          use [label="UMAP · decode · edit\\nFID · linear probes"];
          data -> model -> fisher -> use;
        }
        """,
        width="stretch",
    )
    st.markdown(
        """
1. **Data**: pick the built-in *faces* (with smile / eyeglasses / eyes-open / hat
   attributes) or *digits*, or upload `.npz`, `.npy`, a zip of images, or MNIST IDX files.
2. Everything you make is kept in the workspace on disk, so a restart loses nothing.
"""
    )
    if st.button("Open the faces demo", type="primary", key="home_demo"):
        set_dataset(builtin_dataset("faces"), builtin_key("faces"))
        st.switch_page(page_path("data.py"))
with right:
    faces = builtin_dataset("faces", (("n", 24),))  # a glance: the full set is made later
    st.image(montage(faces.images, columns=6, min_side=64),
             caption="The built-in procedural faces (32×32, four attributes)")
