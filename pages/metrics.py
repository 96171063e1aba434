"""Metrics: FID-vs-α curves, attribute-edit scores, the Fisher training monitor and the
training-set-size sweep, and class-to-class Fisher distances."""

import numpy as np
import pandas as pd
import streamlit as st

from app.embeddings_ui import saved_embeddings
from app.jobs_ui import status
from app.monitor_ui import monitor_panel, sweep_panel
from app.spaces_ui import decoder_panel, embedding, pick_spaces
from app.state import current_dataset, jobs, run_in_background, session_job, workspace
from app.widgets import device_picker
from fisher_core.metrics import (
    class_distance_matrix,
    edit_operating_points,
    interpolation_ratios,
)
from fisher_core.plots import (
    class_distance_figure,
    edit_scores_figure,
    fid_alpha_figure,
)
from fisher_core.workspace import (
    EntryError,
    edit_scores,
    extractor_entry,
    extractor_name,
    fid_curves,
    train_extractor,
)

st.title("Metrics")
ds, ds_key = current_dataset()


def _saved_rows(prefix: str) -> pd.DataFrame | None:
    try:
        data, _ = workspace().load_result(f"{prefix}-{extractor_name(ds_key)}")
    except EntryError:
        return None
    return pd.DataFrame(data["rows"])


def _extractor_job(job, device: str = "cpu"):
    def callback(e):
        job.report(e.step, max(e.total_steps, 1), f"feature extractor: epoch {e.epoch}")

    return train_extractor(workspace(), ds, ds_key, callback=callback,
                           cancel=job.cancel_event, device=device)[1]


# ------------------------------------------------------------------ feature space for FID
st.subheader("Feature space for FID")
ext_entry = extractor_entry(workspace(), ds_key)  # also finds one saved under an old name
ext = ext_entry is not None
if ext:
    m = ext_entry.meta.get("metrics", {})
    acc = {k: v for k, v in m.items() if "accuracy" in k and "/" not in k}
    st.caption("No Inception weights can be downloaded here: FID uses a small CNN trained on "
               "this dataset's labels and attributes (held-out "
               + ", ".join(f"{k.replace('_', ' ')} {v:.1%}" for k, v in acc.items()) + ").")
else:
    st.info("FID needs a feature extractor for this dataset: a small CNN trained on its labels "
            "and attributes (about a minute).")
ext_job = session_job(f"extractor:{ds_key}")
ext_device = device_picker("met_device")
if st.button("Train feature extractor" if not ext else "Retrain feature extractor",
             key="met_extractor"):
    jobs().submit(ext_job, _extractor_job, ext_device)
status(ext_job)

spaces = decoder_panel(ds, ds_key)

# ------------------------------------------------------------------ FID vs alpha
st.subheader("FID of interpolations vs α")
st.caption("Random pairs, interpolated in each space at α ∈ [0, 1], decoded, and compared with "
           "real images by FID. Bad spaces peak at α = 0.5.")
if spaces and ext:
    names = pick_spaces(spaces, key="met_spaces")
    c = st.columns(4)
    n_pairs = c[0].slider("Pairs (images per FID)", 50, 1000, 200, 50, key="met_pairs")
    steps = c[1].slider("α steps", 3, 21, 11, 2, key="met_steps")
    repeats = c[2].slider("Draws", 1, 5, 3, key="met_repeats",
                          help="Independent draws of pairs: each FID is their mean, the error "
                               "bars their standard deviation.")
    method = c[3].radio("Path", ["linear", "slerp"], horizontal=True, key="met_method")
    fid_job = session_job(f"fid:{ds_key}")
    if st.button("Compute FID curves", type="primary", key="met_fid", disabled=not names):
        run_in_background(fid_job, fid_curves, workspace(), ds, ds_key, names,
                          n_pairs=n_pairs, alphas=np.linspace(0, 1, steps), method=method,
                          repeats=repeats)
    status(fid_job)
elif not ext:
    st.caption("Train the feature extractor above first.")
fid = _saved_rows("fid-alpha")
if fid is not None and len(fid):
    records = fid.to_dict("records")
    st.plotly_chart(fid_alpha_figure(records), key="met_fid_chart", width="stretch")
    ratios = pd.DataFrame(interpolation_ratios(records))
    st.dataframe(ratios, hide_index=True, key="met_fid_ratios", column_config={
        "endpoint_fid": st.column_config.NumberColumn("end-point FID", format="%.1f",
                                                      help="Mean FID at α = 0 and 1: the "
                                                      "decoder's reconstructions."),
        "peak_fid": st.column_config.NumberColumn("peak FID", format="%.1f"),
        "peak_alpha": st.column_config.NumberColumn("at α", format="%.2f"),
        "ratio": st.column_config.NumberColumn("peak / end point", format="%.2f",
                                               help="1 is a flat curve: interpolations stay "
                                               "on the data."),
        "ratio_vs_reference": st.column_config.NumberColumn(
            "ratio vs pixels", format="%.2f", help="This space's ratio over the pixel "
            "space's; below 1, its interpolations leave the data less than pixel blends "
            "(Yan, Ho & Abbeel's claim for Fisher scores).")})
    st.download_button("Download FID curves (CSV)", fid.to_csv(index=False), "fid_alpha.csv",
                       key="met_fid_csv")

# ------------------------------------------------------------------ attribute edits
st.subheader("Attribute edits")
if ds.attribute_names and spaces and ext:
    c = st.columns(3)
    attr = c[0].selectbox("Attribute", ds.attribute_names, key="met_attr")
    strengths = c[1].multiselect("Strengths", [0.5, 1.0, 2.0, 3.0, 4.0, 5.0],
                                 default=[1.0, 3.0, 5.0], key="met_strengths")
    n_src = c[2].slider("Source images", 20, 500, 200, 20, key="met_sources")
    edit_job = session_job(f"edits:{ds_key}")
    if st.button("Score edits", key="met_edit", disabled=not strengths or not names):
        run_in_background(edit_job, edit_scores, workspace(), ds, ds_key, names,
                          attribute=attr, strengths=tuple(strengths), n_sources=n_src)
    status(edit_job)
elif not ds.attribute_names:
    st.caption("This dataset has no attributes.")
edits = _saved_rows("edits")
if edits is not None and len(edits):
    cols = [c for c in ["space", "kind", "attribute", "direction", "strength", "success",
                        "preservation", "baseline", "target_prob", "n"] if c in edits]
    st.caption("Success: the edited image shows the target (attribute added or removed); "
               "preservation: the other attributes keep their label. Judged by the feature "
               "extractor's attribute heads; scoring another attribute adds to this table.")
    cells = edits.assign(cell=edits["success"].map("{:.0%}".format) + " / "
                         + edits["preservation"].map("{:.0%}".format))
    st.dataframe(cells.pivot_table(index=["attribute", "direction", "strength"],
                                   columns="space", values="cell", aggfunc="first"))
    st.plotly_chart(edit_scores_figure(edits.to_dict("records")), key="met_edit_chart",
                    width="stretch")
    st.caption("At equal success: each space at the weakest scored strength whose mean "
               "success reaches 95 %, and its preservation there (spaces whose δ is longer "
               "succeed earlier and damage more at a fixed strength); the paper's fixed "
               "strength 3 beside it.")
    pct = st.column_config.NumberColumn(format="percent")
    st.dataframe(pd.DataFrame(edit_operating_points(edits.to_dict("records"))),
                 hide_index=True, key="met_edit_points", column_config={
                     "strength": st.column_config.NumberColumn("strength at 95 % success"),
                     "success": pct, "preservation": pct, "fixed_success": pct,
                     "fixed_preservation": pct})
    with st.expander("All columns"):
        st.dataframe(edits[cols], hide_index=True)
    st.download_button("Download edit scores (CSV)", edits.to_csv(index=False),
                       "edit_scores.csv", key="met_edit_csv")

# ------------------------------------------------------------------ Fisher monitor, sweep
monitor_panel(ds_key)
sweep_panel(ds, ds_key)

# ------------------------------------------------------------------ class distances
st.subheader("Fisher distance between classes")
saved = saved_embeddings(ds_key)
if ds.labels is None or not saved:
    st.caption("Needs labels and at least one saved embedding of this dataset.")
    st.stop()
name = st.selectbox("Embedding", list(saved), format_func=saved.get, key="met_dist_emb")
classes, dist = class_distance_matrix(embedding(name).vectors, ds.labels)
labels = [ds.class_names[c] for c in classes]
st.plotly_chart(class_distance_figure(dist, labels, title=f"Class distances in {name}"),
                key="met_dist_chart", width="stretch")
st.download_button("Download distances (CSV)",
                   pd.DataFrame(dist, index=labels, columns=labels).to_csv(),
                   "class_distances.csv", key="met_dist_csv")
