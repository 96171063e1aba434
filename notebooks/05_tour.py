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
# # 5 · A five-minute tour: your own images → an embedding → a map → a probe
#
# FisherLab's library is `import fisher_core as fc`; the app is a face on the same
# functions. This tour goes the way a user with their own images would:
#
# 1. **load** a zip of PNG images (one sub-folder per class, an optional `attributes.csv`)
#    or an `.npz` file with `fc.load_file` — the same safe loader as the app's upload box;
# 2. **embed** the images (classical Fisher vectors here, no training needed);
# 3. **look** at the embedding with UMAP (`fc.umap_embed`, `fc.plots.embedding_scatter`)
#    and at an image's nearest neighbours under the Fisher kernel;
# 4. **measure** it with linear probes (`fc.linear_probe`, `fc.probe_embeddings`).
#
# Having no photos of your own at hand, the tour first *writes* such files from the built-in
# faces, into a temporary folder; replace that step by the path of your own zip.
#
# **Size.** `FISHERLAB_SMOKE=1` (the test suite) uses 200 faces; without it 3,000, the
# built-in default (about 20 seconds).
#
# **Workspace.** The dataset and the embedding are saved to the workspace named by
# `FISHERLAB_HOME` when it is set — start the app with the same variable to find them there
# — otherwise to a fresh temporary folder, so the tour never clutters your own workspace by
# accident.

# %%
import csv
import io
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import display
from PIL import Image
from threadpoolctl import threadpool_limits

import fisher_core as fc

# Threads: the models here are small, and on a small shared CPU the threads of torch
# (OpenMP) and of NumPy/SciPy (OpenBLAS) mostly spin waiting for each other — on a 2-core
# machine one thread each was up to 5× faster for training and 100× for the probes. Raise
# THREADS on a large idle machine.
THREADS = 1
torch.set_num_threads(THREADS)
threadpool_limits(THREADS, user_api="blas")
warnings.filterwarnings("ignore", message="IProgress not found")  # umap's tqdm import

SMOKE = os.environ.get("FISHERLAB_SMOKE", "") not in ("", "0")
SEED = 0
np.random.seed(SEED)  # noqa: NPY002 (the legacy global RNG some libraries draw from)
torch.manual_seed(SEED)
N_FACES = 200 if SMOKE else 3000

HOME = os.environ.get("FISHERLAB_HOME")
ws = fc.Workspace(HOME or tempfile.mkdtemp(prefix="fisherlab-notebook-"))
print(f"FisherLab {fc.__version__}; smoke size: {SMOKE}; workspace: {ws.root}")

# %% [markdown]
# ## 1 · Your images
#
# A zip in the ImageFolder layout: `smiling/0001.png`, `neutral/0002.png`, … — the folder
# names become the class labels — plus an `attributes.csv` (`filename,eyeglasses,...` with
# 0/1 values) for binary attributes. Written here from the built-in faces as 8-bit PNGs.

# %%
source = fc.load_builtin("faces", n=N_FACES, seed=SEED)
folder = Path(tempfile.mkdtemp(prefix="fisherlab-tour-"))
extra = ["eyeglasses", "eyes_open", "hat"]
cols = [source.attribute_names.index(a) for a in extra]
smiles = source.attributes[:, source.attribute_names.index("smiling")]
written = []  # (member name, class, attribute row)
zip_path = folder / "my_faces.zip"
with zipfile.ZipFile(zip_path, "w") as zf:
    table = io.StringIO()
    rows = csv.writer(table)
    rows.writerow(["filename", *extra])
    for i, image in enumerate(source.images):
        cls = "smiling" if smiles[i] else "neutral"
        name = f"{cls}/{i:04d}.png"
        png = io.BytesIO()
        Image.fromarray(np.round(image[0] * 255).astype(np.uint8)).save(png, format="PNG")
        zf.writestr(name, png.getvalue())
        rows.writerow([name, *source.attributes[i, cols].astype(int)])
        written.append((name, cls, source.attributes[i, cols]))
    zf.writestr("attributes.csv", table.getvalue())
print(f"wrote {len(written)} PNGs and attributes.csv: {zip_path} "
      f"({zip_path.stat().st_size / 1e3:.0f} kB)")

# %% [markdown]
# `fc.load_file` sniffs the format, checks every limit *before* decoding anything large
# (image count, pixel budget, zip bombs, path traversal), never unpickles, and returns an
# `ImageDataset`: float32 images (N, C, H, W) in [0, 1], labels, class names, attributes.
# Pass `size=32` to resize images of other sizes. The bar charts are the app's Data page.

# %%
ds = fc.load_file(zip_path)
print(ds.summary())
display(fc.plots.class_counts_figure(ds, height=260))
fc.plots.attribute_share_figure(ds, height=260)

# %% [markdown]
# Members are read in name order, so image k of the dataset is the k-th name in sorted
# order. Checking what came back against what was written:

# %%
order = sorted(range(len(written)), key=lambda k: written[k][0])
expected_images = np.round(source.images[order] * 255) / 255
labels_match = [ds.class_names[c] for c in ds.labels] == [written[k][1] for k in order]
attributes_match = bool(np.array_equal(ds.attributes, np.stack([written[k][2] for k in order])))
images_max_diff = float(np.abs(ds.images - expected_images).max())
print(f"classes {ds.class_names}; labels match: {labels_match}; attributes match: "
      f"{attributes_match}; max pixel difference: {images_max_diff:.1e}")
fc.plots.image_grid_figure(ds.images[:8], [ds.class_names[c] for c in ds.labels[:8]],
                           columns=8, tile=72, title="First images of the upload")

# %% [markdown]
# The same data as an `.npz` (arrays `images` — uint8 or float, (N, H, W), (N, H, W, C) or
# (N, C, H, W) — and optional `labels`, `class_names`, `attributes`, `attribute_names`)
# loads to the same dataset:

# %%
npz_path = folder / "my_faces.npz"
np.savez(npz_path, images=np.round(ds.images[:, 0] * 255).astype(np.uint8), labels=ds.labels,
         class_names=np.array(ds.class_names), attributes=ds.attributes.astype(np.uint8),
         attribute_names=np.array(ds.attribute_names))
from_npz = fc.load_file(npz_path)
npz_matches = bool(np.array_equal(from_npz.images, ds.images)
                   and np.array_equal(from_npz.labels, ds.labels)
                   and from_npz.attribute_names == ds.attribute_names)
print(f"npz: {from_npz.images.shape}, identical to the zip's dataset: {npz_matches}")
entry = ws.save_dataset(ds, "nb-tour-faces")

# %% [markdown]
# ## 2 · An embedding
#
# Any of FisherLab's embeddings would do (Fisher scores of a PixelCNN, AFVs of a GAN, …:
# notebooks 2–4). The classical Fisher vector needs no training: dense 6×6 patches with
# their position, PCA to 24 dimensions, a 16-component GMM, improved FV
# (`fc.fisher_vector_embedding`, as in the README's first example).

# %%
emb, gmm = fc.fisher_vector_embedding(ds, n_components=16, pca=24, random_state=SEED,
                                      dataset_key="workspace:nb-tour-faces")
ws.save_embedding(emb, "nb-tour-faces-gmm-fv")
print(f"embedding: {emb.vectors.shape}, kind {emb.kind!r}, normalisation "
      f"{emb.normalization!r}")

# %% [markdown]
# ## 3 · Look at it
#
# UMAP lays the vectors out in 2-D (the first call compiles numba code, ≈ 10 s). Colour by
# the class — smiling or neutral — and by an attribute: which of them organises the space?
# In the app, a lasso selection on this plot shows the selected images.

# %%
xy = fc.umap_embed(emb.vectors, random_state=SEED)
display(fc.plots.embedding_scatter(xy, ds, colour_by="label", height=420,
                                   title="GMM Fisher vectors, by class"))
fc.plots.embedding_scatter(xy, ds, colour_by="hat", height=420, title="… and by hat")

# %% [markdown]
# Nearest neighbours of one image under the Fisher kernel (for L2-normalised Fisher vectors
# the cosine similarity, `fc.kernel_neighbors`): the query first, then its eight nearest
# images with their kernel values.

# %%
query = 0
idx, sims = fc.kernel_neighbors(emb.vectors, query, k=8)
fc.plots.image_grid_figure(ds.images[np.r_[query, idx]],
                           ["query"] + [f"{s:.3f}" for s in sims], columns=9, tile=72,
                           title="Fisher-kernel neighbours")

# %% [markdown]
# ## 4 · Measure it
#
# A linear probe is a logistic regression with stratified 5-fold cross-validation: how
# much of a label is linearly readable from the embedding. Against raw pixels for each
# target (the class, and each attribute), with chance as the share of the commonest value.

# %%
targets = {"class (smiling)": ds.labels,
           **{a: ds.attributes[:, j].astype(int) for j, a in enumerate(ds.attribute_names)}}
rows = []
for target, y in targets.items():
    chance = np.bincount(y).max() / len(y)
    for space, X in {"raw pixels": ds.images.reshape(len(ds), -1),
                     "GMM Fisher vectors": emb.vectors}.items():
        r = fc.linear_probe(X, y, cv=5, seed=SEED)
        rows.append({"target": target, "space": space, "accuracy": r.accuracy, "std": r.std,
                     "chance": chance})
table = pd.DataFrame(rows)
display(table.pivot(index="target", columns="space", values="accuracy").round(3))
probe_rows = fc.probe_embeddings(ds.images.reshape(len(ds), -1),
                                 {"GMM Fisher vectors": emb.vectors}, ds.labels, cv=5,
                                 seed=SEED)
fc.plots.probe_figure(probe_rows, target="smiling vs neutral")

# %% [markdown]
# ## Where next
#
# - The app (`make app`) with `FISHERLAB_HOME` set to this workspace lists the dataset
#   `nb-tour-faces` and its embedding on the Data and Embeddings pages.
# - Notebook 2 trains a PixelCNN and decodes interpolations and edits; notebook 3 learns
#   the Fisher-vector layer end to end; notebook 4 reads a GAN's discriminator as an
#   energy model. `fc.export_projector` writes any embedding for TensorBoard's Embedding
#   Projector.

# %%
by_space = {f"{r['space']} / {r['target']}": r["accuracy"] for r in rows}
summary = {
    "n_written": len(written),
    "n_loaded": len(ds),
    "labels_match": bool(labels_match),
    "attributes_match": attributes_match,
    "images_max_diff": images_max_diff,
    "npz_matches": npz_matches,
    "embedding_dim": int(emb.vectors.shape[1]),
    "probe_accuracy": {"GMM Fisher vectors / class (smiling)":
                       by_space["GMM Fisher vectors / class (smiling)"],
                       "raw pixels / class (smiling)": by_space["raw pixels / class (smiling)"]},
    "probe_all": by_space,
    "chance": float(np.bincount(ds.labels).max() / len(ds)),
}
print(json.dumps(summary, indent=1))
