"""The embedding explorer: UMAP scatter (plotly), selection grid, Fisher-kernel neighbours."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.picker import label_of, picked_image, send_pick, take_pick
from app.state import jobs, results_cache
from app.widgets import image_grid, md
from fisher_core.data import ImageDataset
from fisher_core.embeddings import Embedding
from fisher_core.explore import (
    DegenerateEmbeddingError,
    neighbor_scores,
    pca_embed,
    umap_embed,
    umap_is_warm,
)
from fisher_core.plots import embedding_scatter


def _umap_job(job, vectors: np.ndarray, n_components: int, key: str, cache,
              settings: dict) -> np.ndarray:
    # no fraction to report (UMAP says nothing while it runs): no bar, no made-up ETA
    job.report(0, 0, "compiling UMAP (first use in this server)" if not umap_is_warm()
               else "running UMAP")
    out = umap_embed(vectors, n_components=n_components, **settings)
    cache.put(key, out)
    return out


def explore(emb: Embedding, ds: ImageDataset, key: str) -> None:
    """Draw the explorer for ``emb`` over the images of ``ds``.

    ``key`` identifies the embedding for caching (UMAP results are computed once per key,
    in a background job, and reused on every revisit).
    """
    if emb.n != len(ds):
        st.error(f"This embedding has {emb.n} rows but the dataset has {len(ds)} images; "
                 "load the dataset it was computed on (Data page).")
        st.stop()
    opts = ["label", *ds.attribute_names] if ds.labels is not None else list(ds.attribute_names)
    c1, c2 = st.columns([3, 1])
    # many label combinations make an unreadable legend: start with an attribute then
    many = ds.labels is not None and len(ds.class_names) > 10 and ds.attribute_names
    colour_by = c1.selectbox("Colour by", opts or ["none"], index=1 if many else 0,
                             key=f"colour_{key}")
    three_d = c2.toggle("3-D", key=f"three_d_{key}")
    dims = 3 if three_d else 2
    settings = _umap_settings(key)
    ukey = f"umap:{key}:{dims}:{sorted(settings.items())}"
    xy = results_cache().get(ukey)
    job = jobs().get(ukey)
    if xy is None and job is not None and job.snapshot().status in ("failed", "cancelled"):
        st.error(f"UMAP did not finish: {md(job.snapshot().error or 'cancelled')}")
        if st.button("Try again", key=f"umap_retry_{key}"):
            jobs().forget(ukey)
            st.rerun()
        return
    if xy is None:
        try:  # the preview is cached, and it finds embeddings no layout can show
            _pca_preview(emb, ukey, dims)
        except DegenerateEmbeddingError as exc:
            st.error(f"No map of this embedding: {md(exc)}")
            return
        jobs().submit(ukey, _umap_job, emb.vectors, dims, ukey, results_cache(), settings)
        _waiting(emb, ds, colour_by, ukey, dims)
        return
    _plot_and_select(xy, emb, ds, colour_by, key)


def _umap_settings(key: str) -> dict:
    """UMAP's parameters (umap-learn's defaults but fewer epochs; see ``umap_embed``)."""
    with st.expander("UMAP settings"):
        c = st.columns(4)
        n_neighbors = c[0].slider("Neighbours", 2, 100, 15, key=f"umap_nn_{key}",
                                  help="Small: local detail; large: the global shape.")
        min_dist = c[1].slider("Minimum distance", 0.0, 0.99, 0.1, 0.01,
                               key=f"umap_md_{key}", help="How tightly points may pack.")
        metric = c[2].selectbox("Metric", ["euclidean", "cosine"], key=f"umap_metric_{key}",
                                help="Cosine compares directions only, as the Fisher kernel "
                                     "of L2-normalised vectors does.")
        pca = c[3].number_input("PCA first (0 = none)", 0, 1024, 50, key=f"umap_pca_{key}",
                                help="Dimensions kept by a PCA before UMAP (faster, less "
                                     "noise).")
    return {"n_neighbors": int(n_neighbors), "min_dist": float(min_dist), "metric": metric,
            "pca_dims": int(pca) or None}


@st.fragment(run_every=0.5)
def _waiting(emb: Embedding, ds: ImageDataset, colour_by: str, ukey: str, dims: int) -> None:
    """PCA preview while UMAP runs; hands over to the full view when it is ready."""
    job = jobs().get(ukey)
    snap = job.snapshot() if job else None
    if results_cache().get(ukey) is not None:
        st.rerun(scope="app")
    if snap is not None and snap.status == "failed":
        st.error(f"UMAP failed: {md(snap.error)}")
        return
    st.progress(snap.fraction if snap else 0.0,
                text=md(snap.describe()) if snap else "starting UMAP")
    preview = _pca_preview(emb, ukey, dims)
    st.plotly_chart(embedding_scatter(preview, ds, colour_by=colour_by,
                                      title="PCA preview (UMAP on its way)"),
                    key=f"pca_{ukey}", width="stretch")


def _pca_preview(emb: Embedding, ukey: str, dims: int) -> np.ndarray:
    pkey = f"pca:{ukey}"
    out = results_cache().get(pkey)
    if out is None:
        out = pca_embed(emb.vectors, dims)
        results_cache().put(pkey, out)
    return out


def _plot_and_select(xy: np.ndarray, emb: Embedding, ds: ImageDataset, colour_by: str,
                     key: str) -> None:
    left, right = st.columns([3, 2], gap="medium")
    with left:
        fig = embedding_scatter(xy, ds, colour_by=colour_by, title=f"UMAP of {emb.kind}")
        if xy.shape[1] == 2:
            event = st.plotly_chart(fig, on_select="rerun", key=f"umap_{key}",
                                    selection_mode=("box", "lasso", "points"),
                                    width="stretch")
            points = event.selection.points if event and event.selection else []
            chosen = [i for i in map(_point_index, points) if i is not None]
        else:
            st.plotly_chart(fig, key=f"umap3_{key}", width="stretch")
            chosen = []
    with right:
        if len(chosen) == 1:  # a click: this image can feed the other pages
            _clicked(ds, chosen[0], key)
        elif chosen:
            st.markdown(f"**{len(chosen)} selected** (first 40 shown)")
            _grid(ds, chosen[:40])
            st.caption(md(selection_summary(ds, chosen)))
        else:
            st.caption("Click a point to pick its image for the other pages. Select points "
                       "with the lasso or box tool (the chart's toolbar) to see their images "
                       "here.")
        st.markdown("**Nearest neighbours under the Fisher kernel**")
        qkey = f"nn_idx_{key}"
        if (q := take_pick("query")) is not None:
            st.session_state[qkey] = q
        idx = int(st.number_input("Query image (index)", 0, len(ds) - 1, 0, key=qkey))
        nb = neighbor_scores(emb.vectors, idx, k=9)
        _grid(ds, [idx, *nb["index"].tolist()],
              ["query", *[f"cos {c:.2f} · top {100 - p:.1f} %"
                          for c, p in zip(nb["cosine"], nb["percentile"], strict=True)]])
        raw = ", ".join(f"#{i}: {v:.4g}" for i, v in zip(nb["index"], nb["kernel"], strict=True))
        st.caption("cos: cosine of the two vectors; top p %: the neighbour's kernel value is "
                   "higher than that of all but p % of the images (comparable between spaces).",
                   help=f"Raw kernel values K(query, ·) = ⟨V_query, V⟩: {raw}")


def _clicked(ds: ImageDataset, i: int, key: str) -> None:
    """The clicked image and what to do with it elsewhere."""
    picked_image(ds, i)
    c = st.columns(4)
    for col, (label, target, page, tip) in zip(c, [
            ("As A", "A", "Interpolate", "Interpolate from this image (image A)"),
            ("As B", "B", "Interpolate", "Interpolate to this image (image B)"),
            ("Edit it", "source", "Manipulate", "Add it to the source images of Manipulate"),
            ("Neighbours", "query", None, "Its nearest neighbours under the Fisher kernel")],
            strict=True):
        if col.button(label, key=f"pick_{target}_{key}", width="stretch", help=tip):
            send_pick(target, i)
            if page is not None:
                st.toast(f"Image #{i} is ready on the {page} page.")
            st.rerun()


def _point_index(point: dict) -> int | None:
    """Dataset index carried in a selected point's customdata.

    Plotly's front end hands customdata back as a list, a scalar, or (for typed arrays) an
    object keyed by position, depending on how the figure was serialised.
    """
    cd = point.get("customdata")
    if isinstance(cd, dict):
        cd = [cd[k] for k in sorted(cd, key=int)]
    if isinstance(cd, (list, tuple)):
        cd = cd[0] if cd else None
    return None if cd is None else int(cd)


def _grid(ds: ImageDataset, index: list[int], captions: list[str] | None = None) -> None:
    if captions is None:
        captions = [label_of(ds, i) for i in index]
    image_grid(ds.images[index], captions, columns=5, width=64)


def selection_summary(ds: ImageDataset, index: list[int], top: int = 4) -> str:
    """What a selection holds: its commonest labels and, per attribute, its share against
    the whole dataset's (e.g. ``smiling 81 % (all 49 %)``)."""
    parts = []
    if ds.labels is not None and ds.class_names:
        counts = np.bincount(ds.labels[index], minlength=len(ds.class_names))
        order = np.argsort(-counts, kind="stable")[:top]
        parts.append("labels: " + ", ".join(f"{ds.class_names[c]} {counts[c]}"
                                            for c in order if counts[c]))
    if ds.attributes is not None and ds.attribute_names:
        sel, full = ds.attributes[index].mean(0), ds.attributes.mean(0)
        parts.append(" · ".join(f"{a} {s:.0%} (all {f:.0%})"
                                for a, s, f in zip(ds.attribute_names, sel, full, strict=True)))
    return " — ".join(parts)
