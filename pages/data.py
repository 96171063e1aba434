"""Data: pick a built-in dataset or upload one, preview it, convert it, save it."""

import streamlit as st

from app.state import (
    builtin_dataset,
    builtin_key,
    content_key,
    current_dataset,
    set_dataset,
    workspace,
)
from app.widgets import confirm_replace, image_grid, md
from fisher_core.data import SUPPORTED_FORMATS, DatasetError, load_file
from fisher_core.plots import attribute_share_figure, class_counts_figure
from fisher_core.workspace import EntryError

st.title("Data")
ws = workspace()
source = st.radio("Source", ["Built-in", "Upload", "Workspace"], horizontal=True,
                  key="data_source")

if source == "Built-in":
    # The choice reruns the page at once, so the options shown always belong to it.
    name = st.selectbox("Dataset", ["faces", "digits"], key="data_builtin")
    with st.form("builtin_form", border=False):
        opts = ()
        if name == "faces":
            with st.expander("Faces options"):
                n = st.number_input("Images", 100, 20000, 3000, step=500, key="faces_n")
                size = st.select_slider("Size", [16, 32, 48, 64], 32, key="faces_size")
                seed = st.number_input("Seed", 0, 10**6, 0, key="faces_seed")
            if (n, size, seed) != (3000, 32, 0):
                opts = (("n", int(n)), ("size", int(size)), ("seed", int(seed)))
        else:
            st.caption("scikit-learn's 8×8 handwritten digits: 1,797 images, 10 classes.")
        if st.form_submit_button("Load", type="primary"):
            set_dataset(builtin_dataset(name, opts), builtin_key(name, opts))
elif source == "Upload":
    st.caption("Formats: " + ", ".join(SUPPORTED_FORMATS)
               + ". Zip: flat, or one sub-folder per class; optional attributes.csv.")
    resize = st.checkbox("Resize all images to a common size", key="upload_resize")
    side = st.number_input("Size (pixels)", 8, 256, 32, key="upload_side", disabled=not resize)
    up = st.file_uploader("Dataset file", key="upload_file")
    if up is not None:
        data = up.getvalue()
        key = content_key(f"upload:{up.name}:{side if resize else 0}", data)
        if st.session_state.get("upload_seen") != key:
            st.session_state["upload_seen"] = key
            try:
                ds = load_file(data, filename=up.name, size=int(side) if resize else None)
            except DatasetError as exc:
                st.session_state["upload_error"] = str(exc)
            else:
                st.session_state.pop("upload_error", None)
                set_dataset(ds, key)
        if "upload_error" in st.session_state:
            st.error(f"Could not load **{md(up.name)}**: {md(st.session_state['upload_error'])}  \n"
                     "The previous dataset is still loaded.", icon=":material/error:")
else:
    for _bad, msg in ws.problems("datasets"):
        st.warning(f"Skipped a damaged workspace entry: {md(msg)}")
    saved = ws.names("datasets")
    if not saved:
        st.info("Nothing saved yet: load a dataset, then save it below.")
    else:
        pick = st.selectbox("Saved dataset", saved, key="data_saved")
        if st.button("Load", key="data_load_saved", type="primary"):
            try:
                set_dataset(ws.load_dataset(pick), f"workspace:{pick}")
            except EntryError as exc:
                st.error(md(exc))

ds, ds_key = current_dataset()
st.divider()
st.subheader(f"Current dataset: {md(ds.name)}")
c, h, w = ds.shape
cols = st.columns(4)
cols[0].metric("Images", f"{len(ds):,}")
cols[1].metric("Shape", f"{c}×{h}×{w}")
cols[2].metric("Classes", len(ds.class_names) if ds.class_names else "–")
cols[3].metric("Attributes", len(ds.attribute_names) or "–")

with st.expander("Convert (grey/RGB, resize, quantise)"):
    with st.form("convert_form", border=False):
        ch = st.radio("Channels", ["keep", "grey", "RGB"], horizontal=True, key="conv_ch")
        new_side = st.number_input("Resize to (0 = keep)", 0, 256, 0, key="conv_side")
        levels = st.number_input("Quantise to L grey levels (0 = keep)", 0, 256, 0,
                                 key="conv_levels", help="Discrete models need L levels.")
        if st.form_submit_button("Apply"):
            try:
                out = ds.convert(
                    channels={"keep": None, "grey": 1, "RGB": 3}[ch],
                    size=int(new_side) or None, levels=int(levels) or None,
                )
            except (ValueError, DatasetError) as exc:
                st.error(md(exc))
            else:
                set_dataset(out, f"{ds_key}|{ch}|{new_side}|{levels}")
                st.rerun()

ds, ds_key = current_dataset()
preview = st.slider("Preview images", 10, 100, 30, step=10, key="data_preview")
captions = None
if ds.labels is not None:
    captions = [ds.class_names[i] for i in ds.labels[:preview]]
image_grid(ds.images[:preview], captions, columns=10)

charts = st.columns(2)
if ds.labels is not None:
    charts[0].plotly_chart(class_counts_figure(ds), width="stretch", key="data_class_chart")
if ds.attributes is not None:
    charts[1].plotly_chart(attribute_share_figure(ds), width="stretch",
                           key="data_attr_chart")

st.subheader("Save to the workspace")
save_cols = st.columns([3, 1])
if st.session_state.get("data_save_for") != ds_key:  # another dataset: offer its own name
    st.session_state["data_save_for"] = ds_key
    st.session_state["data_save_name"] = ds.name  # set, not dropped: the browser shows it
save_name = save_cols[0].text_input("Name", key="data_save_name",
                                    label_visibility="collapsed")
if save_cols[1].button("Save", key="data_save", width="stretch"):
    st.session_state["data_save_request"] = save_name
request = st.session_state.get("data_save_request")
if request is not None and confirm_replace(ws, "datasets", request,
                                           request="data_save_request"):
    del st.session_state["data_save_request"]
    try:
        ws.save_dataset(ds, request)
    except EntryError as exc:
        st.error(md(exc))
    else:
        st.success(f"Saved as **{md(request)}** in {md(ws.root)}.")
