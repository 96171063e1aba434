"""Widgets shared by the Interpolate, Manipulate and Metrics pages: decoders per space."""

from __future__ import annotations

import io
import time

import numpy as np
import streamlit as st
from PIL import Image

from app.jobs_ui import status
from app.state import jobs, session_job, workspace
from app.widgets import device_picker, md, montage
from fisher_core.data import ImageDataset
from fisher_core.embeddings import Embedding
from fisher_core.explore import Decoder, attribute_direction, decoder_skill, decoder_warning
from fisher_core.workspace import (
    decoded_embeddings,
    load_embedding_decoder,
    train_embedding_decoder,
)

from .embeddings_ui import embedding_key, saved_embeddings

#: Decoder architectures offered when training one (DecoderConfig.architecture -> label).
ARCHITECTURES = {"direct": "direct", "pixelcnn": "conditional PixelCNN"}


def _version(kind: str, name: str) -> str:
    return workspace().entry(kind, name).path.name


@st.cache_resource(show_spinner=False, max_entries=32)
def _decoder(name: str, version: str, root: str) -> Decoder | None:
    return load_embedding_decoder(workspace(), name)


@st.cache_resource(show_spinner=False, max_entries=32)
def _embedding(name: str, key: str, root: str) -> Embedding:
    return workspace().load_embedding(name)


def decoder(name: str) -> Decoder | None:
    """The decoder of embedding ``name`` (loaded once per saved version)."""
    return _decoder(name, _version("decoders", name), str(workspace().root))


def embedding(name: str) -> Embedding:
    """Saved embedding ``name`` (loaded once per saved version)."""
    return _embedding(name, embedding_key(name), str(workspace().root))


@st.cache_resource(show_spinner=False, max_entries=64)
def _direction(name: str, key: str, root: str, pos: bytes, neg: bytes) -> np.ndarray:
    vectors = _embedding(name, key, root).vectors
    return attribute_direction(vectors, np.frombuffer(pos, dtype=bool),
                               np.frombuffer(neg, dtype=bool))


def direction(name: str, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """δ = mean(z | pos) − mean(z | neg) in embedding ``name``, computed once per saved
    version and pair of groups (a slider move must not re-average N × k vectors)."""
    return _direction(name, embedding_key(name), str(workspace().root),
                      np.asarray(pos, dtype=bool).tobytes(),
                      np.asarray(neg, dtype=bool).tobytes())


def decode(name: str, z: np.ndarray) -> np.ndarray:
    """Images (M, C, H, W) in [0, 1] decoded from raw embedding rows ``z`` (M, k)."""
    return decoder(name).decode(np.atleast_2d(z))


def _weak_decoder(ds: ImageDataset, name: str, why: str, arch: str) -> None:
    """A warning with the numbers and what the decoder makes of a few dataset images; the
    retrain button keeps the decoder's architecture ``arch``."""
    with st.container(border=True):
        st.warning(f"The decoder of **{md(name)}** {md(why)}", icon=":material/warning:")
        rows = np.arange(min(6, len(ds)))
        recon = decode(name, embedding(name).vectors[rows])
        st.image(montage(np.concatenate([ds.images[rows], recon]), columns=len(rows),
                         min_side=40),
                 caption="top: images · bottom: what this decoder draws from their embedding")
        if st.button("Retrain it with a time budget that fits the data",
                     key=f"dec_retrain_{name}"):
            jobs().submit(session_job(f"decoder:{name}"), _decoder_job, ds, name, arch)
            st.session_state.setdefault("dec_jobs", []).append(session_job(f"decoder:{name}"))
            st.rerun()


def _decoder_job(job, ds: ImageDataset, name: str, arch: str = "direct",
                 device: str = "cpu") -> dict:
    def callback(event) -> None:
        job.report(event.step, max(event.total_steps, 1),
                   f"decoder for {name}: epoch {event.epoch}, loss {event.loss:.4g}")

    # the time budget follows the data (measured speed), so big embeddings get enough epochs
    _, metrics = train_embedding_decoder(workspace(), name, ds, callback=callback,
                                         cancel=job.cancel_event, max_seconds="auto",
                                         architecture=arch, device=device)
    return metrics


def decoder_panel(ds: ImageDataset, ds_key: str) -> dict[str, dict]:
    """Expander to train decoders for saved embeddings; returns the decoded spaces."""
    spaces = decoded_embeddings(workspace(), ds_key)
    saved = saved_embeddings(ds_key)
    missing = [n for n in saved if n not in spaces]
    weak = {n: w for n, m in spaces.items() if (w := decoder_warning(m))}
    for name, why in weak.items():  # flagged where the decoder is used, not only where made
        _weak_decoder(ds, name, why, spaces[name].get("architecture", "direct"))
    with st.expander("Decoders (embedding → image)", expanded=not spaces):
        if spaces:
            rows = [{"embedding": n,
                     "decoder": ARCHITECTURES.get(m.get("architecture"), m.get("architecture")),
                     "held-out MSE/pixel": m.get("val_mse"),
                     "skill": decoder_skill(m), "epochs": m.get("epochs"),
                     "seconds": m.get("seconds"), "usable": n not in weak}
                    for n, m in spaces.items()]
            st.dataframe(rows, hide_index=True, column_config={
                "skill": st.column_config.ProgressColumn(
                    "skill", min_value=0.0, max_value=1.0, format="percent",
                    help="1 − held-out error / error of the mean image: 0 % draws the same "
                         "image for every vector")})
        if not saved:
            st.info("No embedding of this dataset yet: compute some on the Embeddings page.")
        elif missing:
            pick = st.multiselect("Train decoders for", missing, default=missing[:4],
                                  key="dec_pick")
            arch = st.radio(
                "Decoder", list(ARCHITECTURES), format_func=ARCHITECTURES.get, horizontal=True,
                key="dec_arch",
                help="Direct: predicts every pixel at once; fast, but where several images fit "
                     "a vector (interpolations, edits) it draws their blurred average. "
                     "Conditional PixelCNN: draws the pixels one by one given the vector, so "
                     "it commits to one sharp image; about 3× slower to train and ~3 s to "
                     "decode 100 32×32 images on a CPU core.")
            st.caption("An MLP into a small conv decoder (or a small PixelCNN) per embedding, "
                       "early-stopped on held-out images; its time budget is measured to fit "
                       "about 12 epochs (1–15 min each on a CPU).")
            device = device_picker("dec_device")
            if st.button("Train decoders", key="dec_train", disabled=not pick):
                for name in pick:
                    jobs().submit(session_job(f"decoder:{name}"), _decoder_job, ds, name, arch,
                                  device)
                st.session_state["dec_jobs"] = [session_job(f"decoder:{n}") for n in pick]
        for job_name in st.session_state.get("dec_jobs", []):
            status(job_name)
    return spaces


def pick_spaces(spaces: dict[str, dict], key: str) -> list[str]:
    """Multiselect over decoded spaces (all selected by default, at most 4)."""
    names = list(spaces)
    return st.multiselect("Spaces", names, default=names[:4], key=key,
                          format_func=lambda n: f"{n} ({embedding(n).kind})")


def png_bytes(images: np.ndarray, columns: int) -> bytes:
    """A PNG montage of images (N, C, H, W) in [0, 1]."""
    buf = io.BytesIO()
    Image.fromarray(montage(images, columns=columns, min_side=64)).save(buf, format="PNG")
    return buf.getvalue()


class Timer:
    """Wall-clock milliseconds of a block, to show how fast a fragment rerun was."""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.ms = 1000 * (time.perf_counter() - self.t0)
