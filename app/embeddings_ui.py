"""Widgets to compute embeddings and to pick saved ones (used by several pages)."""

from __future__ import annotations

import re

import streamlit as st

from app.state import workspace
from fisher_core.data import ImageDataset
from fisher_core.embed import fisher_vector_embedding, pixel_embedding
from fisher_core.embedding import Embedding
from fisher_core.store import EntryError


def slug(text: str) -> str:
    """A workspace-safe name from free text."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", text).strip("-.")[:80] or "embedding"


def saved_embeddings(ds_key: str) -> dict[str, str]:
    """{workspace name: label} of saved embeddings computed on dataset ``ds_key``."""
    out = {}
    for e in workspace().list("embeddings"):
        meta = e.meta.get("embedding", {})
        if meta.get("dataset") == ds_key:
            kind = meta.get("kind", "?")
            shape = meta.get("shape", ["?", "?"])
            out[e.name] = f"{e.name}  ({kind}, {shape[1]} dims)"
    return out


def embedding_key(name: str) -> str:
    """A cache key that changes whenever the saved embedding is overwritten."""
    e = workspace().entry("embeddings", name)
    return f"{name}@{e.path.name}"


def pick_saved(ds_key: str, key: str) -> tuple[Embedding, str] | None:
    """Select box over saved embeddings of the current dataset; returns (embedding, key)."""
    saved = saved_embeddings(ds_key)
    if not saved:
        return None
    names = list(saved)
    current = st.session_state.get("embedding_name")
    index = names.index(current) if current in names else 0
    name = st.selectbox("Embedding", names, index=index, format_func=saved.get, key=key)
    st.session_state["embedding_name"] = name
    try:
        return workspace().load_embedding(name), embedding_key(name)
    except EntryError as exc:
        st.error(str(exc))
        return None


def gmm_fv_form(ds: ImageDataset, ds_key: str) -> None:
    """Form for classical GMM Fisher vectors; computes, saves and selects the embedding."""
    small = ds.shape[1] <= 16
    with st.form("fv_form"):
        c = st.columns(4)
        k = c[0].number_input("GMM components K", 2, 256, 16 if small else 32, key="fv_k")
        patch = c[1].number_input("Patch size", 2, 16, 3 if small else 6, key="fv_patch")
        stride = c[2].number_input("Stride", 1, 16, 1 if small else 2, key="fv_stride")
        pca = c[3].number_input("PCA dims of patches (0 = none)", 0, 256, 0 if small else 24,
                                key="fv_pca")
        c = st.columns(3)
        norm = c[0].selectbox("Normalisation", ["analytic", "empirical", "none"], key="fv_norm")
        power = c[1].toggle("Power normalisation (√)", True, key="fv_power")
        l2 = c[2].toggle("L2 normalisation", True, key="fv_l2")
        go = st.form_submit_button("Compute Fisher vectors", type="primary")
    if not go:
        return
    bar = st.progress(0.0, text="starting")
    emb, _ = fisher_vector_embedding(
        ds, n_components=int(k), patch=int(patch), stride=int(stride), pca=int(pca) or None,
        normalization=norm, power=0.5 if power else None, l2=l2, dataset_key=ds_key,
        progress=lambda f, m: bar.progress(min(1.0, f), text=m),
    )
    name = slug(f"{ds.name}-fv-k{k}-p{patch}-{norm}{'-pow' if power else ''}{'-l2' if l2 else ''}")
    workspace().save_embedding(emb, name)
    st.session_state["embedding_name"] = name
    bar.empty()
    st.toast(f"Saved embedding {name}")


def pixels_button(ds: ImageDataset, ds_key: str) -> None:
    """Save the raw-pixel baseline embedding."""
    if st.button("Use raw pixels", key="emb_pixels"):
        name = slug(f"{ds.name}-pixels")
        workspace().save_embedding(pixel_embedding(ds, dataset_key=ds_key), name)
        st.session_state["embedding_name"] = name
