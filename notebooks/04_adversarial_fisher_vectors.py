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
# # 4 · Adversarial Fisher vectors: a GAN discriminator read as an energy model
#
# **Paper.** Zhai, Talbott, Guestrin & Susskind (NeurIPS 2019), *Adversarial Fisher
# vectors for unsupervised representation learning* (reference code: apple/ml-afv).
#
# **The claim.** Read a GAN's discriminator as an energy-based model, p_θ(x) ∝ exp(D(x)),
# with the generator as its sampler. Its Fisher score is then
#
#   U_x = ∇_θ D(x) − E_z ∇_θ D(G(z)),
#
# the diagonal Fisher information is estimated from generator samples, I = E_z[U_G(z)²],
# and the *adversarial Fisher vector* is V_x = diag(I)^(−½) U_x. A linear classifier on
# AFVs is far better than on the discriminator's pooled activations ("D-pool") — on
# CIFAR-10 86–89 % against 65 % (their Table 1) — although both come from the very same
# network. The distance between the mean AFVs of two sets (the *Fisher distance*) compares
# classes semantically and monitors training: real vs generated images, training vs
# held-out.
#
# **What this notebook does**, on the 8×8 digits (built in): trains FisherLab's EBM-GAN
# (least-squares GAN loss, spectral-norm residual D with a sigmoid output, as the reference
# code), embeds the digits by exact AFVs over every discriminator parameter
# (`fc.afv_embedding`) and by D-pool (`fc.d_pool_embedding`), probes both, draws the
# class-to-class Fisher-distance heatmap (`fc.class_distance_matrix`) and the training
# monitor saved with the run.
#
# **Size.** `FISHERLAB_SMOKE=1` (the test suite): 400 digits, 2 epochs, 256 generator
# samples for the Fisher statistics. Without it: all 1,797 digits, 30 epochs, 1,024
# samples — `bench/eval_afv.py`'s setting (README, Evaluation, digits: AFV 98.1 ± 1.0 %,
# D-pool 75.1 ± 0.7 %) — under a minute on 2 CPU cores.
#
# **Workspace.** The GAN (and its best checkpoint, `<name>-best`) and the embeddings are
# saved to the workspace named by `FISHERLAB_HOME` when it is set, otherwise to a fresh
# temporary folder, so the notebook never clutters your own workspace by accident; names
# start with `nb-`.

# %%
import json
import os
import tempfile

import numpy as np
import pandas as pd
import torch
from IPython.display import display
from threadpoolctl import threadpool_limits

import fisher_core as fc
from fisher_core.workspace import RunLog, best_model_name, saved_monitor

# Threads: the models here are small, and on a small shared CPU the threads of torch
# (OpenMP) and of NumPy/SciPy (OpenBLAS) mostly spin waiting for each other — on a 2-core
# machine one thread each was up to 5× faster for training and 100× for the probes. Raise
# THREADS on a large idle machine.
THREADS = 1
torch.set_num_threads(THREADS)
threadpool_limits(THREADS, user_api="blas")

SMOKE = os.environ.get("FISHERLAB_SMOKE", "") not in ("", "0")
SEED = 0
np.random.seed(SEED)  # noqa: NPY002 (the legacy global RNG some libraries draw from)
torch.manual_seed(SEED)

N_IMAGES = 400 if SMOKE else None  # None: all 1,797 digits
GAN_EPOCHS = 2 if SMOKE else 30  # eval_afv.py --gan-epochs
N_GENERATOR = 256 if SMOKE else 1024  # samples for the mean score and Fisher information

HOME = os.environ.get("FISHERLAB_HOME")
ws = fc.Workspace(HOME or tempfile.mkdtemp(prefix="fisherlab-notebook-"))
KEY = "builtin:digits"
MODEL = "nb-digits-ebgan" + ("-smoke" if SMOKE else "")
print(f"FisherLab {fc.__version__}; smoke size: {SMOKE}; workspace: {ws.root}")

# %%
digits = fc.load_builtin("digits")
ds = digits.subset(np.arange(N_IMAGES)) if N_IMAGES else digits
print(f"{len(ds)} digits of shape {ds.shape}")
fc.plots.image_grid_figure(ds.images[:16], [ds.class_names[c] for c in ds.labels[:16]],
                           columns=8, tile=56, title="Real digits")

# %% [markdown]
# ## Train the EBM-GAN
#
# `fc.train_and_save(ds, "ebgan", ...)` trains generator and discriminator and, because an
# energy model has no likelihood to validate on, runs a **Fisher monitor** about twelve
# times per run: on a fixed set of generated images, a fixed subset of the training images
# and held-out images D never sees, it computes AFVs under the current D and records the
# Fisher distance ‖mean V_real − mean V_generated‖ for both real sets. The step with the
# lowest held-out distance is saved as a second model, `<name>-best`.

# %%
log = RunLog()
run = fc.train_and_save(ds, "ebgan", epochs=GAN_EPOCHS, seed=SEED, workspace=ws, name=MODEL,
                        dataset_key=KEY, log=log)
gan = run.model.eval()
d_names = gan.discriminator_parameter_names()
params = dict(gan.named_parameters())
n_disc = sum(params[n].numel() for n in d_names)
print({k: run.metrics[k] for k in ("parameters", "epochs", "steps", "seconds")})
print(f"discriminator parameters: {n_disc:,} (the AFV dimension); best checkpoint saved as "
      f"{best_model_name(MODEL)!r}: {ws.exists('models', best_model_name(MODEL))}")
fc.plots.image_grid_figure(gan.sample(16, generator=SEED).numpy(), columns=8, tile=56,
                           title="Generated digits (G_ema)")

# %% [markdown]
# ## The training monitor
#
# The history saved with the run (`fisher_core.workspace.saved_monitor`) is what the app's
# Metrics page draws. Read it like a validation curve: both lines falling means D's
# gradients find the generated digits ever more like real ones; the held-out line rising
# away from the training line would mean the pair is memorising its training images. The
# star marks the step kept as `<name>-best`. Distances at different steps are measured with
# different discriminators, so compare the two curves with each other, not single values
# across runs.

# %%
monitor = saved_monitor(ws, MODEL)
history = monitor["history"]
display(pd.DataFrame(history)[["step", "train_fd", "heldout_fd"]].round(3).T)
fc.plots.monitor_figure(history, title="Fisher distance, real vs generated")

# %% [markdown]
# ## AFVs and D-pool
#
# `fc.afv_embedding` with `projection=None` keeps one coordinate per discriminator
# parameter — the paper's vector exactly: scores of `N_GENERATOR` generator samples give
# the mean (subtracted) and the diagonal Fisher information (divided out, as
# U / (√I + 10⁻⁶) like the reference code). For a larger D, pass `dim=512,
# projection="sparse"` (the faces: 107,841 parameters). `fc.d_pool_embedding` concatenates
# the spatial means of every D block's activations: the baseline of the paper.

# %%
afv = fc.afv_embedding(gan, ds.images, dim=None, projection=None,
                       n_generator_samples=N_GENERATOR, seed=SEED, dataset_key=KEY,
                       model_name=MODEL)
dpool = fc.d_pool_embedding(gan, ds.images, dataset_key=KEY, model_name=MODEL)
ws.save_embedding(afv, f"{MODEL}-afv")
ws.save_embedding(dpool, f"{MODEL}-dpool")
print(f"AFV {afv.vectors.shape}, D-pool {dpool.vectors.shape}")

# %% [markdown]
# ## Linear probes
#
# Logistic regression, stratified 5-fold, seeded (`fc.probe_embeddings`), on raw pixels,
# AFVs and D-pool; chance is 10 %. The paper's finding is the gap between the last two:
# the same discriminator, read through its Fisher score instead of its activations. (The
# AFV is strong even for a barely trained D — the smoke run, 2 epochs on 400 digits, gives
# ≈ 97 % against 98 % after 30 epochs on all of them — as a gradient over 8,897 parameters
# is a rich feature map of the image from the start; D-pool, 39 % against 76 %, needs the
# training.)

# %%
probe_rows = fc.probe_embeddings(ds.images.reshape(len(ds), -1),
                                 {"AFV (exact)": afv.vectors, "D-pool": dpool.vectors},
                                 ds.labels, cv=5, seed=SEED)
probes = {r["embedding"]: r["accuracy"] for r in probe_rows}
display(pd.DataFrame(probe_rows).set_index("embedding").assign(
    accuracy=lambda d: (100 * d["accuracy"]).round(1), std=lambda d: (100 * d["std"]).round(1)))
fc.plots.probe_figure(probe_rows, target="digit class")

# %% [markdown]
# ## Class-to-class Fisher distances
#
# ‖mean V_a − mean V_b‖ for every pair of classes (`fc.class_distance_matrix`), the
# paper's semantic class-distance figure. Dark cells are classes the discriminator's
# Fisher geometry puts close together; at full size the README finds the nearest pairs
# among digits that share strokes (3↔9, 1↔8, 5→8, 7→8).

# %%
classes, distances = fc.class_distance_matrix(afv.vectors, ds.labels)
class_names = [ds.class_names[c] for c in classes]
off = distances + np.diag(np.full(len(classes), np.inf))
nearest = {class_names[i]: class_names[int(np.argmin(off[i]))] for i in range(len(classes))}
print("nearest class: " + ", ".join(f"{a}→{b}" for a, b in nearest.items()))
fc.plots.class_distance_figure(distances, class_names,
                               title="AFV Fisher distance between digit classes")

# %% [markdown]
# ## Key numbers

# %%
best = min(history, key=lambda r: r["heldout_fd"])
summary = {
    "n_images": len(ds),
    "gan_epochs": GAN_EPOCHS,
    "discriminator_parameters": int(n_disc),
    "afv_dim": int(afv.vectors.shape[1]),
    "dpool_dim": int(dpool.vectors.shape[1]),
    "probe_accuracy": probes,
    "chance": 1 / len(ds.class_names),
    "nearest_class": nearest,
    "class_distances_symmetric": bool(np.allclose(distances, distances.T)),
    "class_distance_diagonal_zero": bool(np.all(np.diag(distances) == 0)),
    "monitor_evaluations": len(history),
    "monitor_best_step": int(best["step"]),
    "monitor_best_heldout_fd": float(best["heldout_fd"]),
}
print(json.dumps(summary, indent=1))
