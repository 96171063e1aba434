"""Classify: linear probes on embeddings, and the Fisher-vector normalisation ablation."""

import time

import pandas as pd
import streamlit as st

from app.embeddings_ui import saved_embeddings
from app.jobs_ui import status
from app.state import current_dataset, run_in_background, session_job, workspace
from fisher_core.metrics import fisher_vector_ablation, probe_embeddings
from fisher_core.plots import ablation_figure, ablation_setting, probe_figure
from fisher_core.workspace import load_rows, save_rows

st.title("Classify")
ds, ds_key = current_dataset()
targets = (["label"] if ds.labels is not None else []) + list(ds.attribute_names)
if not targets:
    st.warning("This dataset has no labels or attributes to predict; load one that has.")
    st.stop()
target = st.selectbox("Predict", targets, key="clf_target")
y = ds.labels if target == "label" else ds.attributes[:, ds.attribute_names.index(target)]
folds = st.slider("Cross-validation folds", 2, 10, 5, key="clf_folds")

st.subheader("Linear and nearest-neighbour probes")
st.caption("Logistic regression, stratified k-fold, seeded; features used as they are (the "
           "embedding's own normalisation is what is being measured), except that steps which "
           "learn statistics from the rows (empirical standardisation, whitening) are refitted "
           "on each training fold. Beside it, on the same folds, a 10-nearest-neighbour vote "
           "under cosine similarity (Zhai et al. 2019). Raw pixels are the baseline.")
saved = saved_embeddings(ds_key)
chosen = st.multiselect("Embeddings", list(saved), default=list(saved)[:4],
                        format_func=saved.get, key="clf_embs")
probe_key = {"dataset": ds_key, "target": target, "folds": folds}
probe_job = session_job(f"probe:{ds_key}")


def _probes(progress, embs: dict) -> list[dict]:
    rows = probe_embeddings(ds.images.reshape(len(ds), -1), embs, y, cv=folds,
                            progress=progress)
    save_rows(workspace(), "probe", probe_key, rows)  # kept: shown again after a reload
    return rows


if st.button("Run probes", type="primary", key="clf_run"):
    embs = {n: workspace().load_embedding(n) for n in chosen}
    run_in_background(probe_job, lambda progress: _probes(progress, embs))
snap = status(probe_job)
saved_probe = load_rows(workspace(), "probe", probe_key)
if saved_probe is not None and (snap is None or snap.finished):
    rows, when = saved_probe
    df = pd.DataFrame(rows)
    st.caption(f"Saved {time.strftime('%Y-%m-%d %H:%M', time.localtime(when))} · "
               f"{len(df)} spaces · {folds} folds")
    st.dataframe(df.style.format({c: "{:.3f}" for c in ("accuracy", "std", "knn_accuracy",
                                                        "knn_std") if c in df}),
                 hide_index=True, column_config={"knn_accuracy": "10-NN accuracy",
                                                 "knn_std": "10-NN std"})
    st.plotly_chart(probe_figure(rows, target=target), width="stretch",
                    key="clf_probe_chart")

st.subheader("Fisher-vector normalisation ablation")
st.caption("Normalisation none / analytic / empirical × power (√) on/off × L2 on/off, each a "
           "linear probe on the same GMM Fisher vectors (Sánchez et al. 2013, Table 1); with "
           "whitening, three more rows whiten the full sample covariance (fitted per fold).")
c = st.columns(4)
k = c[0].number_input("GMM components K", 2, 128, 16, key="abl_k")
patch = c[1].number_input("Patch size", 2, 16, 3 if ds.shape[1] <= 16 else 6, key="abl_patch")
n_max = c[2].number_input("Images (subsample)", 200, len(ds), min(len(ds), 2000),
                          key="abl_n")
whiten = c[3].number_input("Whitening dims (0 = off)", 0, 4096, 0, key="abl_whiten",
                           help="PCA-whiten √-normalised vectors to this many dimensions "
                                "before L2 (at most the training rows of a fold).")
abl_key = {"dataset": ds_key, "target": target, "folds": folds, "k": int(k),
           "patch": int(patch), "images": int(n_max)} | ({"whiten": int(whiten)} if whiten
                                                        else {})
abl_job = session_job(f"ablation:{ds_key}")


def _ablation(progress) -> list[dict]:
    rows = fisher_vector_ablation(ds, y, n_components=int(k), patch=int(patch), cv=folds,
                                  max_images=int(n_max), whiten=int(whiten) or None,
                                  progress=progress)
    save_rows(workspace(), "fv-ablation", abl_key, rows)
    return rows


if st.button("Run ablation", key="abl_run"):
    run_in_background(abl_job, _ablation)
snap = status(abl_job)
saved_abl = load_rows(workspace(), "fv-ablation", abl_key)
if saved_abl is not None and (snap is None or snap.finished):
    rows, when = saved_abl
    df = pd.DataFrame(rows)
    df["setting"] = [ablation_setting(r) for r in rows]
    st.caption(f"Saved {time.strftime('%Y-%m-%d %H:%M', time.localtime(when))}")
    st.dataframe(df.style.format({c: "{:.3f}" for c in ("accuracy", "std", "knn_accuracy",
                                                        "knn_std") if c in df}),
                 hide_index=True, column_config={"knn_accuracy": "10-NN accuracy",
                                                 "knn_std": "10-NN std"})
    st.plotly_chart(ablation_figure(rows), width="stretch", key="clf_abl_chart")
    st.download_button("Download CSV", df.to_csv(index=False), "fv_ablation.csv",
                       key="abl_csv")
