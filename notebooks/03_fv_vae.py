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
# # 3 · The FV-VAE: a Fisher-vector layer learned end to end
#
# **The idea.** Classical Fisher vectors (notebook 1) stack three separately built pieces:
# hand-made local descriptors (patches), a GMM fitted to them by EM, and the Fisher-vector
# encoding. The FV-VAE makes all three one generative model trained by one objective: a
# convolutional VAE whose latent code is a small grid of *local* latents z_t (one per image
# region), whose prior is a diagonal GMM over (z_t, position of t) held in a
# differentiable Fisher-vector layer (`fc.FisherVectorLayer`), and whose encoder, decoder
# and GMM are trained jointly on the ELBO. An image is then embedded by the Fisher vector of
# its posterior means under the learned prior — the Fisher score of the model with respect
# to the prior's parameters, with the analytic normalisation, signed square root and L2 of
# the improved FV. (The design is FisherLab's; see `fisher_core/models/fvvae.py`.)
#
# **The question** this notebook asks: does learning descriptors and vocabulary end to end
# give a better embedding than the classical pipeline? It trains the FV-VAE
# (`fc.train_and_save(ds, "fvvae", ...)`, `fc.fvvae_embedding`), checks that its layer
# computes exactly the classical Fisher vector, and compares it with the classical GMM
# Fisher vectors and raw pixels by linear probes and UMAP pictures.
#
# **Size.** `FISHERLAB_SMOKE=1` (the test suite): 400 digits, one epoch, an 8-component
# prior. Without it: all 1,797 digits, the default FV-VAE for 4 epochs without early
# stopping and GMM Fisher vectors with K = 16 — the setting of `bench/eval_afv.py` (README,
# Evaluation, digits table: FV-VAE 67.0 ± 1.8 %, GMM Fisher vectors 95.9 ± 0.6 %, raw
# pixels 96.9 ± 0.9 %).
#
# **Workspace.** The model and embeddings are saved to the workspace named by
# `FISHERLAB_HOME` when it is set, otherwise to a fresh temporary folder (so the notebook
# never clutters your own workspace by accident); names start with `nb-`.

# %%
import json
import os
import tempfile
import warnings

import numpy as np
import pandas as pd
import torch
from IPython.display import display
from threadpoolctl import threadpool_limits

import fisher_core as fc
from fisher_core.workspace import RunLog

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

N_IMAGES = 400 if SMOKE else None  # None: all 1,797 digits
EPOCHS = 1 if SMOKE else 4  # eval_afv.py --epochs
FVVAE = {"n_components": 8} if SMOKE else {}  # {}: the defaults (K = 16, d = 4, spatial)
K_CLASSICAL = 8 if SMOKE else 16  # eval_afv.py: GMM Fisher vectors with K = 16

HOME = os.environ.get("FISHERLAB_HOME")
ws = fc.Workspace(HOME or tempfile.mkdtemp(prefix="fisherlab-notebook-"))
KEY = "builtin:digits"
MODEL = "nb-digits-fvvae" + ("-smoke" if SMOKE else "")
print(f"FisherLab {fc.__version__}; smoke size: {SMOKE}; workspace: {ws.root}")

# %%
digits = fc.load_builtin("digits")
ds = digits.subset(np.arange(N_IMAGES)) if N_IMAGES else digits
print(f"{len(ds)} digits of shape {ds.shape}")
fc.plots.class_counts_figure(ds)

# %% [markdown]
# ## Train the FV-VAE end to end
#
# One optimizer maximises the ELBO, E_q[log p(x | z)] + E_q[Σ_t log p(z_t | position_t)] +
# H[q(z | x)]: the encoder learns the local descriptors, the decoder reconstructs, and the
# GMM prior — the Fisher-vector layer's parameters — learns the vocabulary. No separate EM
# step, no weighting constant. The curves are the training loss and held-out bits/dim
# (`early_stopping_patience=None`, as in `bench/eval_afv.py`).

# %%
log = RunLog()
run = fc.train_and_save(ds, "fvvae", config=FVVAE, epochs=EPOCHS, seed=SEED, workspace=ws,
                        name=MODEL, dataset_key=KEY, log=log, early_stopping_patience=None)
model = run.model.eval()
cfg = model.config
print({k: run.metrics[k] for k in ("parameters", "epochs", "seconds", "val_bits_per_dim")})
print(f"local latents: a {model.grid[0]}×{model.grid[1]} grid of d = {cfg.latent_dim}, "
      f"+ 2 position coordinates = {model.fv.dim}-dim descriptors; prior K = "
      f"{cfg.n_components}")
fc.plots.training_curves(log.state())

# %% [markdown]
# ## The layer is a Fisher vector
#
# `fc.fvvae_embedding` runs the encoder and the layer on every image. The same numbers come
# out of the classical code: take the layer's mixture as a GMM (`model.fv.to_gmm()`), the
# model's descriptors (posterior means with their positions) as the local descriptors, and
# call `fc.fisher_vector` with the layer's normalisation. The difference is float32
# rounding.

# %%
fvvae = fc.fvvae_embedding(model, ds.images, dataset_key=KEY, model_name=MODEL)
with torch.no_grad():
    descriptors = model.descriptors(torch.as_tensor(ds.images[:64])).double().numpy()
classical_of_latents = fc.fisher_vector(descriptors, model.fv.to_gmm(),
                                        normalization=cfg.fv_normalization, power=cfg.fv_power,
                                        l2=cfg.fv_l2, dtype="float64")
layer_diff = float(np.abs(fvvae.vectors[:64] - classical_of_latents).max())
print(f"FV-VAE embedding {fvvae.vectors.shape}; max |layer − fc.fisher_vector| = "
      f"{layer_diff:.1e}")

# %% [markdown]
# ## The embeddings to compare
#
# - **FV-VAE**: the learned layer's Fisher vectors (above);
# - **EM GMM on the FV-VAE's descriptors**: the same learned descriptors, but a vocabulary
#   fitted afterwards by EM (`fc.FisherVectorEncoder`, analytic + power + L2) — does
#   learning the GMM *inside* the model matter?
# - **FV-VAE latent means**: the raw local latents, flattened (no Fisher vector at all);
# - **GMM Fisher vectors**: the classical pipeline on 3×3 patches with positions
#   (`fc.fisher_vector_embedding`, K = 16 at full size);
# - **raw pixels**, the baseline every probe table starts with.
#
# All are saved to the workspace (the app's Classify page can probe them again).

# %%
with torch.no_grad():
    all_descriptors = model.descriptors(torch.as_tensor(ds.images)).numpy()  # (N, h·w, d')
em_fv = fc.FisherVectorEncoder(cfg.n_components, random_state=SEED).fit_transform(
    all_descriptors)
gmm_fv, _ = fc.fisher_vector_embedding(ds, n_components=K_CLASSICAL, random_state=SEED,
                                       dataset_key=KEY)
latents = fc.latent_embedding(model, ds.images, dataset_key=KEY, model_name=MODEL)
embeddings = {
    "FV-VAE": fvvae.vectors,
    "EM GMM on FV-VAE descriptors": em_fv,
    "FV-VAE latent means": latents.vectors,
    "GMM Fisher vectors": gmm_fv.vectors,
}
ws.save_embedding(fvvae, f"{MODEL}-fv")
ws.save_embedding(latents, f"{MODEL}-latent")
ws.save_embedding(gmm_fv, f"nb-digits-gmm-fv-k{K_CLASSICAL}" + ("-smoke" if SMOKE else ""))
pd.DataFrame({"dimension": {k: v.shape[1] for k, v in embeddings.items()}})

# %% [markdown]
# ## Linear probes
#
# Logistic regression, stratified 5-fold, seeded (`fc.probe_embeddings`): the bars are
# mean accuracy over folds with their spread; chance is 10 %. At full size the README
# reports the FV-VAE well below the classical Fisher vectors on the digits (67 % against
# 96 %). Read the first three bars after pixels together: the same encoder's descriptors
# give the FV-VAE's vector (learned prior), a Fisher vector under a GMM fitted to them by EM,
# and the raw latents. A full-size run of this notebook gave 67 %, 90 % and 93 %: the
# encoder keeps the digit's identity, the *learned prior's* Fisher score loses most of it —
# the ELBO asks the prior to explain the latents, not to separate images by them.

# %%
probe_rows = fc.probe_embeddings(ds.images.reshape(len(ds), -1), embeddings, ds.labels, cv=5,
                                 seed=SEED)
probes = {r["embedding"]: r["accuracy"] for r in probe_rows}
display(pd.DataFrame(probe_rows).set_index("embedding").assign(
    accuracy=lambda d: (100 * d["accuracy"]).round(1), std=lambda d: (100 * d["std"]).round(1)))
fc.plots.probe_figure(probe_rows, target="digit class")

# %% [markdown]
# ## UMAP of both Fisher vectors
#
# `fc.umap_embed` (PCA to 50 dimensions, exact neighbours, seeded UMAP) lays each embedding
# out in 2-D; `fc.plots.embedding_scatter` colours the points by class — the same picture
# as the app's Embeddings page. Well-separated, compact clusters mean that nearby vectors
# (in the Fisher kernel's geometry) share a class. The first UMAP in a process compiles its
# numba code (≈ 10 s); later ones take a second or two.

# %%
xy_classical = fc.umap_embed(gmm_fv.vectors, random_state=SEED)
fc.plots.embedding_scatter(xy_classical, ds, title="GMM Fisher vectors (classical)",
                           height=460)

# %%
xy_fvvae = fc.umap_embed(fvvae.vectors, random_state=SEED)
fc.plots.embedding_scatter(xy_fvvae, ds, title="FV-VAE Fisher vectors (learned end to end)",
                           height=460)

# %% [markdown]
# ## Key numbers

# %%
summary = {
    "n_images": len(ds),
    "n_components": cfg.n_components,
    "latent_dim": cfg.latent_dim,
    "fvvae_dim": int(fvvae.vectors.shape[1]),
    "parameters": run.metrics["parameters"],
    "bits_per_dim": run.metrics["val_bits_per_dim"],
    "max_abs_diff_fv_layer": layer_diff,
    "probe_accuracy": probes,
    "chance": 1 / len(ds.class_names),
}
print(json.dumps(summary, indent=1))
