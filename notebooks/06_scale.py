# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6 · When the dataset does not fit: streamed import, chunked extraction, Dask workers
#
# FisherLab's examples are a few thousand small images; a real dataset has 10⁵–10⁶. Three
# pieces keep memory flat in the number of images and use more than one process:
#
# 1. **import** a file straight into the workspace, a block of images at a time
#    (`fc.workspace.import_dataset`; `fisherlab data import FILE`);
# 2. **extract** an embedding chunk by chunk into the workspace
#    (`fc.workspace.chunked_embedding`; `fisherlab embed KIND --chunk-rows N`): each chunk is
#    written as it is done, so an interrupted run *resumes* where it stopped;
# 3. **shard** Fisher scores over Dask workers (`fc.workspace.distributed_fisher_scores`;
#    `--workers N` or `--scheduler tcp://host:8786`), with the single-process result.
#
# **Size.** `FISHERLAB_SMOKE=1` (the test suite) uses 600 faces; without it 20,000 (a few
# minutes). `bench/bench_scale.py` measures the same at 100,000 images.

# %%
import io
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import fisher_core as fc
from fisher_core.workspace import (
    chunked_embedding,
    distributed_fisher_scores,
    import_dataset,
    train_and_save,
)

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message="IProgress not found")  # umap's tqdm import
SMOKE = os.environ.get("FISHERLAB_SMOKE", "") not in ("", "0")
N = 600 if SMOKE else 20_000
CHUNK = 128 if SMOKE else 2048
HOME = os.environ.get("FISHERLAB_HOME")
ws = fc.Workspace(HOME or tempfile.mkdtemp(prefix="fisherlab-notebook-"))
print(f"{N:,} faces, chunks of {CHUNK}; workspace {ws.root}")

# %% [markdown]
# ## 1 · A zip of images, streamed into the workspace
#
# The zip is memory-mapped, every name, header and the optional `attributes.csv` are checked
# (the same checks and messages as `fc.load_file`), then the images are decoded a block at a
# time into the new dataset entry's `images.npy` (uint8: 8-bit values are stored as they
# are). The entry goes live only when it is complete.

# %%
faces = fc.load_builtin("faces", n=N, size=32, seed=1)
folder = Path(tempfile.mkdtemp(prefix="fisherlab-scale-"))
zip_path = folder / "faces.zip"
with zipfile.ZipFile(zip_path, "w") as zf:
    for i, image in enumerate(faces.images):
        png = io.BytesIO()
        Image.fromarray(np.round(image[0] * 255).astype(np.uint8)).save(png, format="PNG")
        zf.writestr(f"faces/{i:06d}.png", png.getvalue())
steps = []
entry = import_dataset(ws, zip_path, "nb-scale-faces",
                       progress=lambda f, m: steps.append(m))
rows = ws.dataset_rows("nb-scale-faces")  # opened, nothing read yet
stored = np.load(entry.path / "images.npy", mmap_mode="r")
import_equal = bool(np.array_equal(rows.read(0, N), np.round(faces.images * 255) / 255))
print(f"{steps[-1]}; stored as {stored.dtype} {stored.shape}; equal to the source: "
      f"{import_equal}")

# %% [markdown]
# ## 2 · Fisher vectors, chunk by chunk — and a run that is interrupted
#
# A patch GMM is trained once on a sample; `chunked_embedding` then reads the dataset
# `CHUNK` images at a time and writes each chunk's Fisher vectors as one part file. Here the
# first run is stopped after three chunks (as a kill or a Ctrl-C would stop it); the same
# call again finds the parts, computes only the missing ones, and commits the embedding.

# %%
sample = fc.ImageDataset(rows.read(0, min(N, 2000)), name="sample")
gmm = train_and_save(sample, "gmm", config={"n_components": 8, "pca": 16}, epochs=1,
                     workspace=ws, name="nb-scale-gmm", dataset_key="workspace:nb-scale-faces",
                     monitor=False).model


class Interrupted(Exception):
    pass


def stop_after(k):
    seen = []

    def progress(fraction, message):
        seen.append(message)
        if sum("images" in m for m in seen) >= k:
            raise Interrupted(message)
    return progress


try:
    chunked_embedding(ws, "nb-scale-fv", ws.dataset_rows("nb-scale-faces"), "fisher_vector",
                      model=gmm, model_name="nb-scale-gmm", chunk_rows=CHUNK,
                      dataset_key="workspace:nb-scale-faces", progress=stop_after(3))
except Interrupted as stop:
    print(f"interrupted after: {stop}; live embedding: {ws.exists('embeddings', 'nb-scale-fv')}")
messages = []
fv = chunked_embedding(ws, "nb-scale-fv", ws.dataset_rows("nb-scale-faces"), "fisher_vector",
                       model=gmm, model_name="nb-scale-gmm", chunk_rows=CHUNK,
                       dataset_key="workspace:nb-scale-faces",
                       progress=lambda f, m: messages.append(m))
print(messages[0])
in_memory = fc.patch_gmm_embedding(gmm, rows.read(0, N))
fv_max_diff = float(np.abs(fv.vectors - in_memory.vectors).max())
print(f"{fv.n:,} × {fv.dim} Fisher vectors (memory-mapped from the workspace); largest "
      f"difference from the in-memory embedding: {fv_max_diff:.1e}")

# %% [markdown]
# The map of the embedding: WebGL beyond 5,000 points, with markers that shrink and fade as
# the points grow in number, so that density and colours stay visible.

# %%
xy = fc.umap_embed(np.asarray(fv.vectors), random_state=0)
fc.plots.embedding_scatter(xy, faces, colour_by="smiling", title="UMAP of the Fisher vectors")

# %% [markdown]
# ## 3 · Fisher scores sharded over two Dask workers
#
# Each worker loads the saved model once from the workspace and computes its shards'
# projected scores; the client gathers them in order and applies the centring and the
# diagonal Fisher information of all rows: the single-process result. Progress comes from
# the workers, batch by batch. On a cluster, pass `scheduler="tcp://host:8786"` and let the
# workers see the same workspace folder.

# %%
px = train_and_save(sample, "pixelcnn", config={"hidden": 8, "n_blocks": 2, "head_hidden": 8},
                    epochs=1, workspace=ws, name="nb-scale-px",
                    dataset_key="workspace:nb-scale-faces", monitor=False).model
subset = rows.read(0, min(N, 400))
reports = []
sharded = distributed_fisher_scores(ws, "nb-scale-px", subset, dim=64, n_workers=2,
                                    progress=lambda f, m: reports.append(m))
single = fc.fisher_score_embedding(px, subset, dim=64)
dask_max_diff = float(np.abs(sharded.vectors - single.vectors).max())
print(f"{reports[0]}; then {len(reports) - 2} progress reports; largest difference from the "
      f"single process: {dask_max_diff:.1e}")

# %%
summary = {
    "n": N,
    "import_equal": import_equal,
    "stored_dtype": str(stored.dtype),
    "resumed_from": messages[0],
    "fv_max_diff_in_memory": fv_max_diff,
    "fv_shape": [fv.n, fv.dim],
    "dask_max_diff_single_process": dask_max_diff,
    "dask_progress_reports": len(reports),
}
print(json.dumps(summary, indent=1))
