"""Train page, patch GMM: choose K from held-out log-likelihood and BIC (a background job)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app.jobs_ui import status
from app.state import jobs, results_cache
from fisher_core.data import ImageDataset
from fisher_core.plots import gmm_selection_figure
from fisher_core.training import sweep_components
from fisher_core.workspace import Job

K_CHOICES = (2, 4, 8, 16, 32, 64, 128, 256)
EM_NOTE = ("A patch GMM is fitted by EM, not by gradient steps: k-means (run to convergence) "
           "starts it, then EM runs until the likelihood stops improving, in seconds; there "
           "are no epochs, batches or learning rate. Its Fisher vectors are on the "
           "Embeddings page under this model.")
RECIPE = ("patch", "stride", "pca", "spatial", "max_descriptors")


def _sweep_job(job: Job, ds: ImageDataset, ks: tuple[int, ...], recipe: dict[str, Any],
               seed: int) -> list[dict[str, float]]:
    return sweep_components(ds.images, ks, seed=seed, progress=lambda f, m: job.report(f, 1, m),
                            **recipe)


def sweep_panel(ds: ImageDataset, ds_key: str, config: dict[str, Any], seed: int) -> None:
    """Fit a GMM for each chosen K on this descriptor recipe; plot held-out LL and BIC."""
    # Its open state lives in the session (key + on_change): the reruns that follow a sweep
    # never fold it shut over the result.
    with st.expander("Choose K: held-out log-likelihood and BIC over a range of K",
                     expanded=False, key="gmm_sweep_panel", on_change="rerun"):
        st.caption("Each K is fitted on the same descriptors of 80 % of the images and scored "
                   "on the other 20 %. Pick the K where the held-out curve flattens; BIC "
                   "penalises the parameters more.")
        ks = st.multiselect("K values", K_CHOICES, default=[4, 8, 16, 32, 64], key="gmm_ks")
        recipe = {k: v for k, v in config.items() if k in RECIPE}
        key = f"gmm-sweep:{ds_key}:{sorted(ks)}:{sorted(recipe.items())}:{seed}"
        if st.button("Run the sweep", key="gmm_sweep_go", disabled=not ks):
            jobs().submit(key, _sweep_job, ds, tuple(sorted(ks)), recipe, seed)
            st.session_state["gmm_sweep_job"] = key
        job_key = st.session_state.get("gmm_sweep_job")
        rows = results_cache().get(job_key) if job_key else None
        if job_key and rows is None:
            snap = status(job_key)  # progress while it runs
            if snap is not None and snap.status == "done":
                rows = jobs().get(job_key).result
                results_cache().put(job_key, rows)
        if rows:
            st.plotly_chart(gmm_selection_figure(rows), key="gmm_sweep_fig", width="stretch")
            best_val = max(rows, key=lambda r: r["val_ll"])["n_components"]
            best_bic = min(rows, key=lambda r: r["bic"])["n_components"]
            st.caption(f"Best K: **{best_val}** by held-out log-likelihood, **{best_bic}** by "
                       "BIC. Set “GMM components K” above and train.")
