"""Form for the local-descriptor baselines: dense / SIFT / ORB descriptors × Fisher vector /
VLAD / bag of words, at a chosen vocabulary size K (used by the Embeddings page)."""

from __future__ import annotations

import streamlit as st

from app.embeddings_ui import select_embedding, slug
from app.state import workspace
from app.widgets import md
from fisher_core.data import ImageDataset
from fisher_core.embeddings import default_pca, local_descriptor_embedding, local_embedding_name

DESCRIPTORS = {"SIFT keypoints": "sift", "ORB keypoints": "orb", "Dense patches": "dense"}
ENCODINGS = {"VLAD": "vlad", "Bag of visual words": "bow", "Fisher vector (GMM)": "fisher"}


def baselines_form(ds: ImageDataset, ds_key: str) -> None:
    """Compute, save and select a baseline embedding (synchronously, with a progress bar)."""
    st.caption(
        "**Descriptors.** *Dense*: small patches on a grid with their (x, y) position, as the "
        "GMM Fisher vectors use. *SIFT*: 128-D histograms of gradient orientations at "
        "scale-space extrema (Lowe 2004). *ORB*: 256 binary intensity tests at FAST corners "
        "(Rublee et al. 2011). Keypoints are detected on the image upsampled to 64 px (≈ 5–10 "
        "ms an image), PCA-reduced, and get their (x, y) appended; an image without any "
        "keypoint becomes the zero vector.")
    st.caption(
        "**Encodings.** *Fisher vector*: soft GMM assignments, first and second order "
        "(K + 2KD dims). *VLAD*: per k-means centre, the sum of residuals of the descriptors "
        "nearest to it (K·D dims; Jégou et al. 2010), intra-normalised. *Bag of visual "
        "words*: how often each of the K centres is the nearest (K dims). All: √ then L2.")
    with st.form("base_form"):
        c = st.columns(4)
        desc = c[0].selectbox("Local descriptors", list(DESCRIPTORS), key="base_desc")
        enc = c[1].selectbox("Encoding", list(ENCODINGS), key="base_enc")
        k = c[2].number_input("Vocabulary size K", 2, 256, 16, key="base_k",
                              help="GMM components or k-means centres; keep it equal across "
                                   "encodings to compare them.")
        pca = c[3].number_input("PCA dims of SIFT/ORB (0 = none)", 0, 256, 32, key="base_pca",
                                help="Dense patches are reduced to 24 dims when they have "
                                     "more (images over 16 px), as in the GMM Fisher vector "
                                     "form; on the faces that is worth 40 probe points.")
        go = st.form_submit_button("Compute baseline", type="primary", key="base_go")
    if not go:
        return
    kind, encoding = DESCRIPTORS[desc], ENCODINGS[enc]
    pca_dims = default_pca("dense", ds.shape) if kind == "dense" else int(pca) or None
    bar = st.progress(0.0, text="starting")
    try:
        emb = local_descriptor_embedding(
            ds, descriptors=kind, encoding=encoding, n_components=int(k), pca=pca_dims,
            dataset_key=ds_key, progress=lambda f, m: bar.progress(min(1.0, f), text=m))
    except ValueError as exc:
        bar.empty()
        st.error(md(exc))
        return
    name = slug(local_embedding_name(ds.name, kind, encoding, int(k), pca=pca_dims))
    workspace().save_embedding(emb, name)
    select_embedding(name)
    bar.empty()
    empty = emb.params.get("n_empty", 0)
    st.toast(f"Saved embedding {name}" + (f" ({empty:,} images had no keypoint: zero vectors)"
                                          if empty else ""))
