"""Widgets to compute embeddings and to pick saved ones (used by several pages)."""

from __future__ import annotations

import re

import streamlit as st

from app.jobs_ui import status
from app.state import jobs, session_job, workspace
from app.widgets import device_picker, md
from fisher_core.data import ImageDataset
from fisher_core.embeddings import (
    POOLS,
    Embedding,
    activation_embedding,
    export_csv,
    export_npz,
    export_projector_zip,
    fisher_score_embedding,
    fisher_vector_embedding,
    latent_embedding,
    pixel_embedding,
)
from fisher_core.workspace import EntryError, list_models, load_saved_model


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


def select_embedding(name: str) -> None:
    """Make ``name`` the selected embedding on every page, including open select boxes."""
    st.session_state["embedding_name"] = name
    st.session_state["embedding_pending"] = name


def pick_saved(ds_key: str, key: str) -> tuple[Embedding, str] | None:
    """Select box over saved embeddings of the current dataset; returns (embedding, key)."""
    saved = saved_embeddings(ds_key)
    if not saved:
        return None
    names = list(saved)
    pending = st.session_state.pop("embedding_pending", None)
    if pending in names:
        st.session_state[key] = pending  # a new embedding was just computed: show it
    if st.session_state.get(key) in names:
        name = st.selectbox("Embedding", names, format_func=saved.get, key=key)
    else:
        st.session_state.pop(key, None)
        current = st.session_state.get("embedding_name")
        index = names.index(current) if current in names else 0
        name = st.selectbox("Embedding", names, index=index, format_func=saved.get, key=key)
    st.session_state["embedding_name"] = name
    try:
        return workspace().load_embedding(name), embedding_key(name)
    except EntryError as exc:
        st.error(md(exc))
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
        norm, power, l2, whiten = fv_normalisation("fv")
        go = st.form_submit_button("Compute Fisher vectors", type="primary")
    st.caption("This fits a new GMM each time. To fit one once, choose its K from held-out "
               "likelihood and reuse it across embeddings, train a patch GMM on the Train "
               "page and pick it under “Deep model”.")
    if not go:
        return
    bar = st.progress(0.0, text="starting")
    try:
        emb, _ = fisher_vector_embedding(
            ds, n_components=int(k), patch=int(patch), stride=int(stride),
            pca=int(pca) or None, normalization=norm, power=0.5 if power else None, l2=l2,
            whiten=int(whiten) or None, dataset_key=ds_key,
            progress=lambda f, m: bar.progress(min(1.0, f), text=m))
    except ValueError as exc:  # e.g. whitening wider than the Fisher vector
        bar.empty()
        st.error(md(exc))
        return
    name = slug(f"{ds.name}-fv-k{k}-p{patch}-{norm}{'-pow' if power else ''}"
                f"{f'-w{whiten}' if whiten else ''}{'-l2' if l2 else ''}")
    workspace().save_embedding(emb, name)
    select_embedding(name)
    bar.empty()
    st.toast(f"Saved embedding {name}")


def pixels_button(ds: ImageDataset, ds_key: str) -> None:
    """Save the raw-pixel baseline embedding."""
    if st.button("Use raw pixels", key="emb_pixels"):
        name = slug(f"{ds.name}-pixels")
        workspace().save_embedding(pixel_embedding(ds, dataset_key=ds_key), name)
        select_embedding(name)


EXACT = "none (exact)"
EXACT_MAX_MIB = 2048  # exact scores larger than this are refused (use a projection)
DEEP_KINDS = {
    "Fisher scores ∇θ log p(x)": "fisher",
    "Adversarial Fisher vectors (AFV)": "afv",
    "FV-VAE Fisher vector": "fv_vae",
    "Network activations (baseline)": "activations",
    "Discriminator pooled activations (D-pool)": "d_pool",
    "VAE latent means (baseline)": "latent",
    "GMM Fisher vector (this trained GMM, improved FV)": "gmm_fv",
}
# which embeddings each model family offers
FAMILY_KINDS = {
    "pixelcnn": ("fisher", "activations"),
    "vae": ("fisher", "activations", "latent"),
    "fvvae": ("fv_vae", "fisher", "activations", "latent"),
    "ebgan": ("afv", "d_pool"),
    "gmm": ("gmm_fv",),
}


def _embedders() -> dict:
    from fisher_core.embeddings import (
        afv_embedding,
        d_pool_embedding,
        fvvae_embedding,
        patch_gmm_embedding,
    )

    return {"fisher": fisher_score_embedding, "activations": activation_embedding,
            "latent": latent_embedding, "afv": afv_embedding, "d_pool": d_pool_embedding,
            "fv_vae": fvvae_embedding, "gmm_fv": patch_gmm_embedding}


def _deep_job(job, ds: ImageDataset, ds_key: str, model_name: str, kind: str,
              options: dict, name: str, device: str = "cpu") -> str:
    """Worker: load the model (onto ``device``), embed the dataset, save the embedding;
    returns its name."""
    model, _ = load_saved_model(workspace(), model_name)
    model.to(device)

    def progress(f: float, m: str) -> None:
        job.report(f, 1.0, m)

    fn = _embedders()[kind]
    if options.pop("chunked", False):  # chunk by chunk into the workspace: resumable
        from fisher_core.workspace import chunked_embedding

        chunked_embedding(workspace(), name, workspace().dataset_rows(ds_key.split(":", 1)[1]),
                          CHUNKED[kind], model=model, model_name=model_name,
                          options=_chunk_options(kind, options), chunk_rows=CHUNK_ROWS,
                          dataset_key=ds_key, progress=progress)
        return name
    workers = options.pop("workers", 0) if kind == "fisher" else 0
    if kind != "d_pool":
        options = {**options, "progress": progress}
    if workers:  # sharded over a local Dask cluster: the same vectors
        from fisher_core.workspace import distributed_fisher_scores

        for unused in ("fim_from", "n_fim_samples"):
            options.pop(unused)
        emb = distributed_fisher_scores(workspace(), model_name, ds.images, n_workers=workers,
                                        dataset_key=ds_key, **options)
    else:
        emb = fn(model, ds.images, dataset_key=ds_key, model_name=model_name, **options)
    workspace().save_embedding(emb, name)
    return name


# deep kinds the workspace extracts chunk by chunk (issue 20), and their library names
CHUNKED = {"fisher": "fisher_scores", "activations": "activations", "gmm_fv": "fisher_vector"}
CHUNK_ROWS = 2048
CHUNK_HELP = ("Read the dataset from the workspace and write the vectors 2,048 images at a "
              "time (memory flat in the dataset's size). An interrupted run (a stopped "
              "server) resumes where it stopped when it is started again with the same "
              "settings. Fisher scores: FIM and centre from the data; Fisher vectors: "
              "analytic or no normalisation, no whitening.")


def _chunk_options(kind: str, options: dict) -> dict:
    """The form's options as :func:`fisher_core.workspace.chunked_embedding` takes them."""
    keep = {"fisher": ("dim", "projection", "normalize", "center", "power", "l2"),
            "activations": ("pool",), "gmm_fv": ("normalization", "power", "l2")}[kind]
    return {k: options[k] for k in keep}


def _chunk_problem(kind: str, options: dict) -> str | None:
    """Why these settings cannot be extracted chunk by chunk (None: they can)."""
    if kind == "fisher" and (options["fim_from"] == "samples" or options["projection"] is None
                             or options.get("workers")):
        return ("Chunk-by-chunk Fisher scores take the FIM and centre from the data, a "
                "projection, and this process: choose “data”, a projection and 0 workers, or "
                "turn chunking off.")
    if kind == "gmm_fv" and (options["normalization"] == "empirical" or options["whiten"]):
        return ("Chunk-by-chunk Fisher vectors take the analytic or no normalisation, without "
                "whitening (those learn from all rows at once); change them or turn chunking "
                "off.")
    return None


def _projection_widgets() -> tuple[int | None, str | None]:
    """Projection kind and dimension (exact: ``None, None``)."""
    c = st.columns(2)
    proj = c[0].selectbox("Projection", ["sparse", "gaussian", "kron", EXACT], key="deep_proj",
                          help="Exact: one column per parameter, no random projection (size "
                               "below).")
    dim = c[1].number_input("Projection dim", 16, 8192, 512, key="deep_dim")
    return (None, None) if proj == EXACT else (int(dim), proj)


def _fisher_options() -> tuple[dict, str]:
    """Widgets of deep Fisher scores; (options, name suffix)."""
    dim, proj = _projection_widgets()
    c = st.columns(4)
    norm = c[0].selectbox("Normalisation", ["fim_diag", "none"], key="deep_norm",
                          help="Diagonal Fisher information of the scores.")
    center = c[1].toggle("Centre scores", True, key="deep_center")
    power = c[2].toggle("Power normalisation (√)", False, key="deep_power")
    l2 = c[3].toggle("L2 normalisation", False, key="deep_l2")
    c = st.columns(2)
    fim_from = c[0].radio("FIM and centre from", ["data", "model samples"], horizontal=True,
                          key="deep_fim_from", help="The Fisher information is an expectation "
                          "over the model: estimate it (and the mean score) on the dataset's "
                          "images or on samples of the model.")
    n_fim = c[1].number_input("Model samples", 16, 4096, 256, key="deep_fim_n")
    workers = st.number_input(
        "Local workers (0 = this process)", 0, 64, 0, key="deep_workers",
        help="Shard the extraction over a local Dask cluster of this many worker processes "
             "(one thread each); the result is the same. FIM and centre from the data only.")
    samples = fim_from == "model samples"
    options = {"dim": dim, "projection": proj, "normalize": None if norm == "none" else norm,
               "center": center, "fim_from": "samples" if samples else "data",
               "n_fim_samples": int(n_fim), "power": 0.5 if power else None, "l2": l2,
               "workers": int(workers)}
    suffix = (f"fisher-{proj or 'exact'}{dim or ''}-{norm}{'-c' if center else ''}"
              f"{f'-fims{n_fim}' if samples else ''}{'-pow' if power else ''}"
              f"{'-l2' if l2 else ''}")
    return options, suffix


def _afv_options() -> tuple[dict, str]:
    """Widgets of adversarial Fisher vectors; (options, name suffix)."""
    dim, proj = _projection_widgets()
    c = st.columns(2)
    norm = c[0].selectbox(
        "Normalisation", ["fim_diag_exact", "fim_diag"], key="deep_afv_norm",
        help="fim_diag_exact: the paper's V = diag(I)^(-1/2) U in parameter space, then "
             "projected. fim_diag: project first, then scale each projected coordinate by its "
             "own variance over generator samples (cheaper, a different kernel).")
    n_gen = c[1].number_input("Generator samples", 16, 16384, 1024, key="deep_afv_n",
                              help="Samples of G that estimate the mean score and the Fisher "
                                   "information (the reference code uses 1,024).")
    options = {"dim": dim, "projection": proj, "normalize": norm,
               "n_generator_samples": int(n_gen)}
    extra = ("" if norm == "fim_diag_exact" else "-fimproj") + ("" if n_gen == 1024
                                                               else f"-g{n_gen}")
    return options, f"afv-{proj or 'exact'}{dim or ''}{extra}"


def fv_normalisation(prefix: str) -> tuple[str, bool, bool, int]:
    """Normalisation, power and L2 toggles and the whitening dimension of Fisher vectors
    (widget keys ``{prefix}_norm``, ``_power``, ``_l2``, ``_whiten``)."""
    c = st.columns(4)
    norm = c[0].selectbox("Normalisation", ["analytic", "empirical", "none"],
                          key=f"{prefix}_norm")
    power = c[1].toggle("Power normalisation (√)", True, key=f"{prefix}_power")
    l2 = c[2].toggle("L2 normalisation", True, key=f"{prefix}_l2")
    whiten = c[3].number_input("Whitening dims (0 = off)", 0, 8192, 0, key=f"{prefix}_whiten",
                               help=WHITEN_HELP)
    return norm, power, l2, int(whiten)


def _gmm_fv_options() -> tuple[dict, str]:
    """Widgets of a trained patch GMM's Fisher vectors; (options, name suffix)."""
    norm, power, l2, whiten = fv_normalisation("deep_fv")
    options = {"normalization": norm, "power": 0.5 if power else None, "l2": l2,
               "whiten": int(whiten) or None}
    return options, (f"fv{'' if norm == 'analytic' else '-' + norm}{'' if power else '-nopow'}"
                     f"{'' if l2 else '-nol2'}{f'-w{whiten}' if whiten else ''}")


WHITEN_HELP = ("PCA-whiten the √-normalised vectors to this many dimensions before L2: the "
               "full sample covariance becomes the identity. Fitted on all rows here; probes "
               "refit it on their training folds.")


def _kind_options(kind: str) -> tuple[dict, str]:
    if kind == "fisher":
        return _fisher_options()
    if kind == "afv":
        return _afv_options()
    if kind == "gmm_fv":
        return _gmm_fv_options()
    if kind == "activations":
        pool = st.selectbox("Activation pooling", list(POOLS), key="deep_pool")
        return {"pool": pool}, f"act-{pool}"
    return {}, {"latent": "latent", "d_pool": "d-pool", "fv_vae": "fv-vae"}[kind]


def deep_form(ds: ImageDataset, ds_key: str) -> None:
    """Form for embeddings of a saved deep model; runs as a background job."""
    models = list_models(workspace(), ds_key)
    if not models:
        st.info("No model trained on this dataset yet: train one on the Train page.")
        return
    families = {e.name: e.meta.get("family", "") for e in models}
    c = st.columns(2)
    model_name = c[0].selectbox("Model", list(families), key="deep_model",
                                format_func=lambda n: f"{n} ({families[n]})")
    offered = FAMILY_KINDS.get(families[model_name], ("fisher", "activations"))
    label = c[1].selectbox("Embedding", [k for k, v in DEEP_KINDS.items() if v in offered],
                           key="deep_kind")
    kind = DEEP_KINDS[label]
    with st.form("deep_form"):
        options, suffix = _kind_options(kind)
        if kind in CHUNKED and ds_key.startswith("workspace:"):
            options["chunked"] = st.toggle("Chunk by chunk into the workspace (resumable)",
                                           False, key="deep_chunked", help=CHUNK_HELP)
        device = device_picker("deep_device")
        go = st.form_submit_button("Compute embedding", type="primary")
    metrics = next(e.meta.get("metrics", {}) for e in models if e.name == model_name)
    n_params = metrics.get("score_parameters") or metrics.get("parameters")
    mib = len(ds) * n_params * 4 / 2**20 if n_params else 0.0
    if n_params and kind in ("fisher", "afv"):
        st.caption(f"Exact scores of this model: {len(ds):,} × {n_params:,} floats "
                   f"= {mib:,.0f} MiB" + (" — too large to keep; use a projection."
                                          if mib > EXACT_MAX_MIB else "."))
    if not go:
        return
    if kind in ("fisher", "afv") and options["projection"] is None and mib > EXACT_MAX_MIB:
        st.error(f"Exact scores would take {mib:,.0f} MiB (more than {EXACT_MAX_MIB:,} MiB); "
                 "choose a projection (sparse 512 keeps the kernel within a few percent).")
        return
    if options.get("chunked") and (problem := _chunk_problem(kind, options)):
        st.error(problem)
        return
    if options.get("workers") and (options["fim_from"] == "samples"
                                   or options["normalize"] == "fim_diag_exact"):
        st.error("Sharded extraction estimates the FIM and centre on the data: set the local "
                 "workers to 0, or choose “data”.")
        return
    if options.get("whiten") and options["whiten"] > len(ds):
        st.error(f"Whitening to {options['whiten']:,} dimensions needs at least as many images "
                 f"({len(ds):,} here); choose at most {len(ds):,}.")
        return
    name = slug(f"{model_name}-{suffix}")
    job_name = session_job(f"embed:{ds_key}")
    jobs().submit(job_name, _deep_job, ds, ds_key, model_name, kind, options, name, device)
    st.session_state["deep_job"] = job_name


def deep_status() -> None:
    """Progress of the deep-embedding job; selects the new embedding when it is done."""
    job_name = st.session_state.get("deep_job")
    if not job_name:
        return
    snap = status(job_name)
    if snap is not None and snap.status == "done":
        select_embedding(jobs().get(job_name).result)
        del st.session_state["deep_job"]
        st.toast(f"Saved embedding {st.session_state['embedding_name']}")


def export_buttons(emb: Embedding, ds: ImageDataset, key: str) -> None:
    """Downloads of an embedding: npz (with labels and what made it), CSV, and the files of
    TensorBoard's Embedding Projector (vectors, metadata, sprite) in one zip. Each file is
    made only when its button is clicked."""
    if emb.n != len(ds):
        return  # the explorer says why
    stem = slug(key.split("@")[0])
    c = st.columns([1, 1, 2, 3])
    c[0].download_button("npz", lambda: export_npz(emb, ds), f"{stem}.npz",
                         mime="application/octet-stream", key=f"exp_npz_{key}",
                         icon=":material/download:")
    c[1].download_button("CSV", lambda: export_csv(emb, ds), f"{stem}.csv", mime="text/csv",
                         key=f"exp_csv_{key}", icon=":material/download:")
    c[2].download_button("Projector files (zip)",
                         lambda: export_projector_zip(emb, ds, max_points=10_000),
                         f"{stem}-projector.zip", mime="application/zip",
                         key=f"exp_proj_{key}", icon=":material/download:",
                         help="vectors.tsv, metadata.tsv, sprite.png and projector_config.pbtxt "
                              "for projector.tensorflow.org or TensorBoard (at most 10,000 "
                              "points, a seeded sample beyond that).")
