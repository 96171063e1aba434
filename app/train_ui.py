"""Train page widgets: a hyper-parameter form built from a family's config, the live run view."""

from __future__ import annotations

import dataclasses
from typing import Any

import streamlit as st

from app.state import jobs, results_cache, workspace
from app.widgets import md, montage
from fisher_core.data import ImageDataset
from fisher_core.models import MODEL_FAMILIES, build_model, config_help
from fisher_core.plots import training_curves
from fisher_core.training import step_seconds
from fisher_core.workspace import (
    Job,
    RunLog,
    data_config,
    discard_run,
    interrupted_runs,
    resume_run,
    train_and_save,
)

# Options of string-valued config fields (the config classes validate them again).
CHOICES = {
    "likelihood": ("categorical", "bernoulli", "gaussian"),
    "output": ("categorical", "logistic"),
    "objective": ("least_squares", "log_loss"),
}
# Epochs that give recognisable samples on the built-in data in about two CPU minutes.
DEFAULT_EPOCHS = {"pixelcnn": 4, "vae": 9, "ebgan": 10, "fvvae": 30}
# Presets scale the number of epochs; their time is measured on this machine (see estimate).
PRESETS = {"quick": 0.25, "balanced": 1.0, "best": 3.0}
SKIP = {"channels", "height", "width"}
LABELS = {
    "n_mix": "logistic mixture components", "hidden": "feature maps",
    "n_blocks": "gated blocks", "kernel_size": "kernel size", "head_hidden": "output head width",
    "latent_dim": "latent dimension", "n_components": "GMM components K",
    "g_width": "generator width", "d_width": "discriminator width",
    "gamma": "generator MCMC weight γ", "noise_std": "MCMC noise s", "ema_decay": "EMA decay of G",
    "d_lr_ratio": "D / G learning-rate ratio", "beta1": "Adam β₁", "beta2": "Adam β₂",
    "sigmoid": "sigmoid on D", "sigma": "Gaussian σ", "learn_sigma": "learn σ",
    "levels": "levels L", "output": "output distribution", "spatial": "model positions",
    "fv_normalization": "FV normalisation", "fv_l2": "FV L2 norm",
    "patch": "patch side (0 = auto)", "stride": "stride (0 = auto)",
    "pca": "PCA dims (0 = none)", "max_descriptors": "descriptors fitted",
    "max_iter": "EM iterations at most", "tol": "EM tolerance",
    "objective": "GAN objective", "entropy_weight": "generator entropy weight λ",
    "g_steps": "G updates per D update", "real_mix": "real-mix probability p",
}
# Integer fields whose range is not the default 1..4096.
BOUNDS = {"patch": (0, 64), "stride": (0, 64), "pca": (0, 4096),
          "max_descriptors": (1_000, 10_000_000), "max_iter": (1, 10_000)}
TRAIN_HELP = {
    "epochs": "Passes over the training images (90 %; 10 % are held out for validation).",
    "batch_size": "Images per optimisation step; the family's default suits a CPU.",
    "lr": "Adam learning rate; lower it if the loss turns NaN or jumps.",
    "seed": "Fixes the initial weights, the shuffling and the held-out split.",
    "minutes": "Training stops here even if epochs remain; the best epoch so far is kept.",
}


def fitted_by_em(family: str) -> bool:
    """True for a family fitted by EM (the patch GMM): no epochs, batches or learning rate."""
    return MODEL_FAMILIES[family][0].fitted_by_em


def preset_epochs(family: str, preset: str) -> int:
    """Epochs of a preset: the family's default scaled, at least one."""
    return max(1, round(DEFAULT_EPOCHS.get(family, 5) * PRESETS[preset]))


def _estimate_job(job: Job, ds: ImageDataset, family: str, config: dict, batch: int) -> float:
    from_data = data_config(family, ds)
    model = build_model(family, **(from_data | config))
    images = ds.quantize(model.config.levels).images if "levels" in from_data else ds.images
    return step_seconds(model, images, batch_size=batch)


def step_estimate(ds: ImageDataset, ds_key: str, family: str, config: dict,
                  batch: int) -> float | None:
    """Measured seconds per step for this set-up (a background job; None until known)."""
    key = f"step-seconds:{ds_key}:{family}:{sorted(config.items())}:{batch}"
    cached = results_cache().get(key)
    if cached is not None:
        return cached
    job = jobs().get(key)
    if job is None:
        jobs().submit(key, _estimate_job, ds, family, config, batch)
    elif job.snapshot().status == "done":
        results_cache().put(key, job.result)
        return job.result
    return None


def duration(seconds: float) -> str:
    """"40 s", "2.5 min", "1.2 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


@st.fragment(run_every=1.0)
def show_estimate(ds: ImageDataset, ds_key: str, family: str, config: dict, batch: int,
                  epochs: int) -> None:
    """How long each preset and the chosen number of epochs take, measured on this machine
    (refreshes itself until the measurement is in)."""
    per_step = step_estimate(ds, ds_key, family, config, batch)
    if per_step is None:
        st.caption("Measuring how long a training step takes here…")
        return
    steps = -(-int(0.9 * len(ds)) // batch)  # per epoch; +10 % below for validation
    est = " · ".join(f"{p} ({preset_epochs(family, p)} ep.) ≈ "
                     f"{duration(per_step * steps * preset_epochs(family, p) * 1.1)}"
                     for p in PRESETS)
    st.caption(f"Estimated on this machine: {est}; {epochs} epochs ≈ "
               f"{duration(per_step * steps * epochs * 1.1)}"
               + " plus the Fisher monitor.")


def config_form(family: str, ds: ImageDataset) -> dict[str, Any]:
    """Widgets for every simple field of ``family``'s config; returns the values chosen.

    Fields the data decides (channels, size; levels of a quantised dataset) are not asked.
    Labels are readable names; each field's help is its description in the config class's
    docstring.
    """
    cfg_cls = MODEL_FAMILIES[family][1]
    docs = config_help(family)
    from_data = data_config(family, ds)
    fields = [f for f in dataclasses.fields(cfg_cls)
              if f.name not in SKIP and f.name not in from_data
              and isinstance(f.default, (int, float, str)) and not isinstance(f.default, bool)]
    flags = [f for f in dataclasses.fields(cfg_cls) if isinstance(f.default, bool)]
    out: dict[str, Any] = {}
    cols = st.columns(4)
    for k, f in enumerate(fields + flags):
        col, key = cols[k % 4], f"cfg_{family}_{f.name}"
        label, tip = LABELS.get(f.name, f.name.replace("_", " ")), docs.get(f.name)
        if isinstance(f.default, bool):
            out[f.name] = col.toggle(label, f.default, key=key, help=tip)
        elif isinstance(f.default, str):
            opts = CHOICES.get(f.name, (f.default,))
            out[f.name] = col.selectbox(label, opts, index=opts.index(f.default), key=key,
                                        help=tip)
        elif isinstance(f.default, int):
            low, high = BOUNDS.get(f.name, (1, 4096))
            out[f.name] = int(col.number_input(label, low, high, f.default, key=key, help=tip))
        else:
            out[f.name] = float(col.number_input(label, 0.0, 1e6, float(f.default),
                                                 format="%.4g", key=key, help=tip))
    return out


def _train_job(job: Job, ds: ImageDataset, family: str, config: dict, opts: dict,
               name: str, ds_key: str) -> dict[str, Any]:
    """Worker: train, publish the run log after every event, save to the workspace."""
    log = RunLog()

    em = fitted_by_em(family)

    def callback(event) -> None:
        msg = (f"EM iteration {event.step:,} of at most {event.total_steps:,}" if em else
               f"epoch {event.epoch} · step {event.step:,}/{event.total_steps:,}")
        if event.loss == event.loss:  # not NaN
            msg += f" · loss {event.loss:.4g}"
        job.report(event.step, max(event.total_steps, 1), msg)
        if event.kind != "step" or event.step % 5 == 0 or event.step == 1:
            job.publish(log=log.state())

    run = train_and_save(ds, family, config=config, workspace=workspace(), name=name,
                         dataset_key=ds_key, callback=callback, cancel=job.cancel_event,
                         log=log, **opts)
    job.publish(log=log.state())
    return {"metrics": run.metrics, "message": run.result.message,
            "stopped": run.result.stopped_reason, "name": name}


def start(name: str, ds: ImageDataset, family: str, config: dict, opts: dict,
          ds_key: str) -> None:
    """Start training as the background job ``train:<name>``."""
    jobs().submit(f"train:{name}", _train_job, ds, family, config, opts, name, ds_key)


def _resume_job(job: Job, ds: ImageDataset, name: str) -> dict[str, Any]:
    log = RunLog()

    def callback(event) -> None:
        job.report(event.step, max(event.total_steps, 1),
                   f"resumed · epoch {event.epoch} · step {event.step:,}/{event.total_steps:,}")
        if event.kind != "step" or event.step % 5 == 0:
            job.publish(log=log.state())

    run = resume_run(workspace(), name, ds, callback=callback, cancel=job.cancel_event,
                     log=log)
    job.publish(log=log.state())
    return {"metrics": run.metrics, "message": run.result.message,
            "stopped": run.result.stopped_reason, "name": name}


def interrupted_panel(ds: ImageDataset, ds_key: str) -> None:
    """Runs of this dataset whose process died (a killed server): resume or discard them."""
    runs = [r for r in interrupted_runs(workspace(), ds_key)
            if not ((j := jobs().get(f"train:{r['name']}")) and not j.snapshot().finished)]
    if not runs:
        return
    st.subheader("Interrupted runs")
    for r in runs:
        planned = r["options"].get("epochs")
        c = st.columns([4, 1, 1])
        c[0].markdown(f"**{md(r['name'])}** · {r['family']} · stopped after "
                      f"{r['epochs_done']} of {planned} epochs (its process ended).")
        if c[1].button("Resume", key=f"resume_{r['name']}", type="primary"):
            jobs().submit(f"train:{r['name']}", _resume_job, ds, r["name"])
            st.session_state["train_job"] = f"train:{r['name']}"
            st.rerun()
        if c[2].button("Discard", key=f"discard_{r['name']}"):
            discard_run(workspace(), r["name"])
            st.rerun()


def draw_run(state: dict[str, Any] | None, key: str) -> None:
    """Curves and the latest sample grid of a run's log state."""
    if not state or not state["steps"]:
        st.caption("Waiting for the first training step…")
        return
    left, right = st.columns([3, 1])
    left.plotly_chart(training_curves(state), key=f"curves_{key}", width="stretch")
    if state["samples"] is not None:
        right.image(montage(state["samples"], columns=4, min_side=48),
                    caption=f"samples after epoch {state['epochs'][-1]['epoch']}")
    else:
        right.caption("Samples appear after the first epoch.")


@st.fragment(run_every=1.0)
def live(job_name: str) -> None:
    """Progress, cancel, curves and samples of a running job, refreshed every second."""
    job = jobs().get(job_name)
    if job is None:
        return
    snap = job.snapshot()
    if snap.finished:
        st.rerun(scope="app")
    cols = st.columns([6, 1])
    cols[0].progress(snap.fraction, text=md(snap.describe()))
    if cols[1].button("Cancel", key=f"cancel_{job_name}"):
        job.cancel()
    draw_run(snap.published.get("log"), key=f"live_{job_name}")
