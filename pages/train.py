"""Train: fit a generative model on the current dataset, watch it learn, keep it."""

import pandas as pd
import streamlit as st

from app.embeddings_ui import slug
from app.gmm_ui import EM_NOTE, sweep_panel
from app.state import current_dataset, jobs, workspace
from app.train_ui import (
    PRESETS,
    TRAIN_HELP,
    config_form,
    draw_run,
    fitted_by_em,
    interrupted_panel,
    live,
    preset_epochs,
    show_estimate,
    start,
)
from app.widgets import confirm_replace, device_picker, md, montage
from fisher_core.models import MODEL_FAMILIES
from fisher_core.plots import monitor_figure
from fisher_core.workspace import list_models, saved_monitor, saved_samples

st.title("Train")
ds, ds_key = current_dataset()
st.caption(f"Dataset **{md(ds.name)}** · {len(ds):,} images · {'×'.join(map(str, ds.shape))}. "
           "Training runs in the background: you can leave this page and come back.")

families = sorted(MODEL_FAMILIES)
family = st.selectbox("Model family", families, index=families.index("pixelcnn"),
                      key="train_family")
model_cls = MODEL_FAMILIES[family][0]
defaults = getattr(model_cls, "training_defaults", {})
# Switching the family or the dataset starts the form again from that family's defaults and
# a name derived from the current dataset, never from the previous choice.
fk = f"{family}_{ds_key}"
if st.session_state.get("train_form_for") != fk:
    # set, not dropped: a dropped key would leave the browser showing the old values
    st.session_state["train_form_for"] = fk
    st.session_state.update({
        "train_preset": "balanced", "train_epochs": preset_epochs(family, "balanced"),
        "train_batch": int(defaults.get("batch_size", 64)),
        "train_lr": float(defaults.get("lr", 1e-3)), "train_seed": 0, "train_minutes": 10.0,
        "train_name": slug(f"{ds.name}-{family}")})
epochs_key = "train_epochs"


def _apply_preset() -> None:
    st.session_state[epochs_key] = preset_epochs(
        family, st.session_state.get("train_preset") or "balanced")


em = fitted_by_em(family)
if em:
    st.caption(EM_NOTE)
else:
    st.segmented_control("Preset", list(PRESETS), key="train_preset",
                         on_change=_apply_preset, help="Sets the number of epochs; the "
                         "estimates below are measured on this machine for the current "
                         "settings.")
with st.form(f"train_form_{fk}"):
    st.markdown("**Model**")
    config = config_form(family, ds)
    st.markdown("**Fitting**" if em else "**Training**")
    c = st.columns(5)
    epochs, batch, lr = 1, int(defaults.get("batch_size", 64)), float(defaults.get("lr", 1e-3))
    if not em:
        epochs = c[0].number_input("Epochs", 1, 500, key=epochs_key, help=TRAIN_HELP["epochs"])
        batch = c[1].number_input("Batch size", 1, 4096, key="train_batch",
                                  help=TRAIN_HELP["batch_size"])
        lr = c[2].number_input("Learning rate", 1e-6, 1.0, format="%.0e", key="train_lr",
                               help=TRAIN_HELP["lr"])
    seed = c[3].number_input("Seed", 0, 2**31 - 1, key="train_seed", help=TRAIN_HELP["seed"])
    minutes = c[4].number_input("Time limit (min)", 0.5, 600.0, step=0.5, key="train_minutes",
                                help=TRAIN_HELP["minutes"])
    name = st.text_input("Save as", key="train_name")
    device = "cpu" if em else device_picker("train_device")
    go = st.form_submit_button("Fit" if em else "Train", type="primary")

if em:
    sweep_panel(ds, ds_key, config, int(seed))
else:
    show_estimate(ds, ds_key, family, config, int(batch), int(epochs))

if go:
    if not slug(name) or slug(name) != name:
        st.error(f"Use letters, digits, '.', '_' or '-' in the name, e.g. {slug(name)!r}.")
    else:
        opts = dict(epochs=int(epochs), batch_size=int(batch), lr=float(lr), seed=int(seed),
                    max_seconds=float(minutes) * 60) | ({"device": device} if not em else {})
        st.session_state["train_request"] = (name, family, config, opts)

request = st.session_state.get("train_request")
if request is not None:
    name = request[0]
    if confirm_replace(workspace(), "models", name, request="train_request"):
        del st.session_state["train_request"]
        start(name, ds, request[1], request[2], request[3], ds_key)
        st.session_state["train_job"] = f"train:{name}"

interrupted_panel(ds, ds_key)

job_name = st.session_state.get("train_job")
job = jobs().get(job_name) if job_name else None
if job is not None:
    snap = job.snapshot()
    st.subheader(f"Run {job_name.removeprefix('train:')}")
    if not snap.finished:
        live(job_name)
    else:
        if snap.status == "done":
            r = job.result
            st.success(f"Saved model **{r['name']}** · {r['message']}")
        elif snap.status == "failed":
            st.error(f"Training failed: {md(snap.error)}. Your other models are untouched; "
                     "try a smaller learning rate or fewer blocks.")
        else:
            st.warning("Training was cancelled; nothing was saved.")
        draw_run(snap.published.get("log"), key=f"final_{job_name}")

st.subheader("Saved models of this dataset")
saved = list_models(workspace(), ds_key)
if not saved:
    st.info("No model trained on this dataset yet.")
    st.stop()
rows = []
for e in saved:
    m = e.meta.get("metrics", {})
    bpd = m.get("val_bits_per_dim")  # none for an energy model: it has no likelihood
    rows.append({"model": e.name, "family": e.meta.get("family"),
                 "bits/dim (val)": float("nan") if bpd is None else bpd,
                 "epochs": m.get("epochs"),
                 "parameters": m.get("parameters"), "seconds": m.get("seconds"),
                 "stopped": m.get("stopped"), "BIC": m.get("bic"),
                 "best held-out step": m.get("monitor_step")})
st.dataframe(pd.DataFrame(rows), hide_index=True,
             column_config={"bits/dim (val)": st.column_config.NumberColumn(
                 format="%.3f", help="Held-out bits per dimension; empty for an EBM-GAN, "
                 "which has no likelihood (its Fisher monitor judges it instead).")})
pick = st.selectbox("Samples of", [e.name for e in saved], key="train_samples_of")
grid = saved_samples(workspace(), pick)
if grid is not None:
    st.image(montage(grid, columns=8, min_side=48), caption=f"{pick}: samples at its last epoch")
mon = saved_monitor(workspace(), pick)
if mon and mon.get("history"):
    energy = mon.get("energy", True)  # monitors saved before issue 18 were GANs'
    st.plotly_chart(monitor_figure(mon["history"], f"{pick}: Fisher monitor, real images vs "
                                   "the model's samples", mark_best=energy),
                    key="train_monitor", width="stretch")
    st.caption("Distances between the model's normalised Fisher scores of real images and of "
               "its own samples (Zhai et al. 2019): a widening gap between training and "
               "held-out images is over-fitting."
               + (" Models ending in “-best” hold the weights at the step with the lowest "
                  "held-out Fisher distance (the star); pick them like any other model."
                  if energy else ""))
