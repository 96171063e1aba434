"""Embeddings: compute Fisher-score embeddings, look at them with UMAP, find neighbours."""

import streamlit as st

from app.baselines_ui import baselines_form
from app.embeddings_ui import (
    deep_form,
    deep_status,
    export_buttons,
    gmm_fv_form,
    pick_saved,
    pixels_button,
    saved_embeddings,
)
from app.explorer import explore
from app.state import current_dataset
from app.widgets import md

st.title("Embeddings")
ds, ds_key = current_dataset()
st.caption(f"Dataset **{md(ds.name)}** · {len(ds):,} images. Change it on the Data page.")

BASELINES = "Local-descriptor baselines (SIFT/ORB, VLAD, BoW)"
has_saved = bool(saved_embeddings(ds_key))
with st.expander("Compute a new embedding", expanded=not has_saved):
    method = st.radio("Method", ["GMM Fisher vectors", "Deep model", "Raw pixels (baseline)",
                                 BASELINES], horizontal=True, key="emb_method")
    if method == "GMM Fisher vectors":
        st.caption("Dense patches with their (x, y) position → diagonal GMM → improved Fisher "
                   "vector per image (Perronnin & Dance 2007; Sánchez et al. 2013).")
        gmm_fv_form(ds, ds_key)
    elif method == "Deep model":
        st.caption("Per-example gradients of a trained model's log-likelihood, randomly "
                   "projected (Yan, Ho & Abbeel 2019), or the baselines they are compared "
                   "with.")
        deep_form(ds, ds_key)
    elif method == BASELINES:
        baselines_form(ds, ds_key)
    else:
        pixels_button(ds, ds_key)
deep_status()

picked = pick_saved(ds_key, key="emb_pick")
if picked is None:
    st.info("No embedding of this dataset yet: compute one above.")
    st.stop()
emb, key = picked
st.caption(f"{emb.n:,} × {emb.dim:,} · {emb.label()}")
export_buttons(emb, ds, key)
explore(emb, ds, key)
