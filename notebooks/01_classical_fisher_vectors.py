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
# # 1 · Classical Fisher vectors: a GMM, its Fisher information and three normalisations
#
# **Papers.** Perronnin & Dance (2007), *Fisher kernels on visual vocabularies*; Sánchez,
# Perronnin, Mensink & Verbeek (2013), *Image classification with the Fisher vector: theory
# and practice*.
#
# **The claim.** Describe an image by a *set* of local descriptors x_1 … x_T, fit a diagonal
# Gaussian mixture (the "visual vocabulary") to descriptors of many images, and represent an
# image by the gradient of the mean log-likelihood of *its* descriptors with respect to the
# mixture's parameters: the Fisher score. Scaled by the Fisher information matrix to the
# power −½, the dot product of two such vectors is the Fisher kernel. Sánchez et al. show
# that the way one approximates that Fisher information, and two extra normalisations
# (signed square root, then L2 — the "improved" Fisher vector), matter a lot for a linear
# classifier.
#
# **What this notebook does**, on scikit-learn's 8×8 *digits* (built in):
#
# 1. dense 3×3 patches with their (x, y) position as local descriptors (`fc.image_descriptors`);
# 2. a scikit-learn `GaussianMixture(covariance_type="diag")` on them;
# 3. the Fisher vector of every image with `fc.fisher_vector`, checked by hand against the
#    formulas and against scikit-image's `skimage.feature.fisher_vector`;
# 4. the three normalisations of the Fisher information — analytic, empirical, identity —
#    each followed by power + L2, compared with linear probes;
# 5. the full normalisation ablation of Sánchez et al. (`fc.fisher_vector_ablation`).
#
# **Size.** With the environment variable `FISHERLAB_SMOKE=1` (what the test suite sets) it
# runs on 400 digits with an 8-component mixture in a few seconds; without it, it uses all
# 1,797 digits and K = 16, the setting of `bench/eval_afv.py` (README, Evaluation: "GMM
# Fisher vectors (K = 16)", 95.9 ± 0.6 % on the digits' classes).
#
# **Workspace.** The notebook saves its embedding to a FisherLab workspace so that the app
# can show it. That is the folder named by `FISHERLAB_HOME` when that variable is set;
# otherwise a fresh temporary folder, so running the notebook never clutters your own
# workspace (`~/.fisherlab`) by accident.

# %%
import json
import os
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from IPython.display import display
from skimage.feature import fisher_vector as skimage_fisher_vector
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from threadpoolctl import threadpool_limits

import fisher_core as fc

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
K = 8 if SMOKE else 16  # GMM components (eval_afv.py: 16)
N_CHECK = 50 if SMOKE else 300  # images compared with scikit-image one by one

HOME = os.environ.get("FISHERLAB_HOME")
ws = fc.Workspace(HOME or tempfile.mkdtemp(prefix="fisherlab-notebook-"))
print(f"FisherLab {fc.__version__}; smoke size: {SMOKE}; workspace: {ws.root}")

# %% [markdown]
# ## The data
#
# The digits are 8×8 grey images with 17 intensity levels and 10 classes. Below: the first
# images with their labels (the same grid the app's Data page draws).

# %%
digits = fc.load_builtin("digits")
ds = digits.subset(np.arange(N_IMAGES)) if N_IMAGES else digits
print(f"{len(ds)} images of shape {ds.shape}, {len(ds.class_names)} classes")
fc.plots.image_grid_figure(ds.images[:16], [ds.class_names[c] for c in ds.labels[:16]],
                           columns=8, title="Digits", tile=64)

# %% [markdown]
# ## Local descriptors
#
# Every image becomes a set of descriptors: all 3×3 patches (stride 1, so 6 × 6 = 36 per
# 8×8 image), each flattened to 9 values, followed by the patch centre's (x, y) in [0, 1].
# The position is the "spatial Fisher vector" of Krapac, Verbeek & Jurie (2011): a mixture
# over appearance *and* position lets the Fisher vector encode where strokes are, not only
# which strokes occur. `fc.image_descriptors` returns one (T, D) set per image, stacked as
# (N, T, D).

# %%
desc = fc.image_descriptors(ds.images).astype(np.float64)  # (N, T, D)
N, T, D = desc.shape
print(f"descriptors: {N} images × {T} patches × D = {D} (9 pixels + x, y)")

# %% [markdown]
# ## The visual vocabulary: a diagonal GMM
#
# A scikit-learn `GaussianMixture` with diagonal covariances, fitted on the descriptors of
# all images pooled (no labels). The grid shows each component's mean patch (its first nine
# coordinates as a 3×3 image) with its weight w_k and mean position: components specialise
# in stroke pieces at particular places.

# %%
flat = desc.reshape(-1, D)  # (N·T, D)
rng = np.random.default_rng(SEED)
fit_rows = flat[rng.choice(len(flat), min(len(flat), 50_000), replace=False)]
start = time.perf_counter()
gmm = SkGaussianMixture(K, covariance_type="diag", random_state=SEED).fit(fit_rows)
print(f"GMM: K = {K} on {len(fit_rows):,} descriptors in {time.perf_counter() - start:.1f} s,"
      f" converged: {gmm.converged_}")
mean_patches = np.clip(gmm.means_[:, :9].reshape(K, 1, 3, 3) / max(gmm.means_[:, :9].max(),
                                                                    1e-9), 0, 1)
captions = [f"w={w:.2f} ({x:.1f},{y:.1f})"
            for w, (x, y) in zip(gmm.weights_, gmm.means_[:, 9:11], strict=True)]
fc.plots.image_grid_figure(mean_patches, captions, columns=8, tile=56,
                           title="GMM component means (patch part; caption: weight, mean x, y)")

# %% [markdown]
# ## The Fisher vector, by the formulas
#
# For a set of descriptors x_1 … x_T with posteriors γ_t(k), weights w_k, means μ_k and
# standard deviations σ_k (Sánchez et al. 2013, eqs. 16–18):
#
# - G_α_k = 1/T Σ_t (γ_t(k) − w_k) / √w_k
# - G_μ_k = 1/(T √w_k) Σ_t γ_t(k) (x_t − μ_k) / σ_k
# - G_σ_k = 1/(T √(2 w_k)) Σ_t γ_t(k) [(x_t − μ_k)² / σ_k² − 1]
#
# These are the gradients of the mean log-likelihood with respect to (the softmax logits of
# w, μ, σ), each multiplied by the *analytical* diagonal Fisher information to the power −½.
# FisherLab's layout is [α (K), μ (K·D, component by component), σ (K·D)], so a vector has
# K (1 + 2D) entries. The cell computes one image's vector with NumPy straight from the
# formulas and compares it with `fc.fisher_vector` (which encodes all images at once with two
# matrix products per batch).

# %%
def fisher_vector_by_hand(x: np.ndarray, gmm) -> np.ndarray:
    """Sánchez et al. (2013) eqs. 16–18 for one set x (T, D), no power, no L2."""
    w, mu, sd = gmm.weights_, gmm.means_, np.sqrt(gmm.covariances_)
    gamma = gmm.predict_proba(x)  # (T, K)
    u = (x[:, None, :] - mu[None]) / sd[None]  # (T, K, D)
    n = len(x)
    g_alpha = (gamma - w).sum(0) / (n * np.sqrt(w))
    g_mu = np.einsum("tk,tkd->kd", gamma, u) / (n * np.sqrt(w)[:, None])
    g_sigma = np.einsum("tk,tkd->kd", gamma, u**2 - 1) / (n * np.sqrt(2 * w)[:, None])
    return np.concatenate([g_alpha, g_mu.ravel(), g_sigma.ravel()])


fv_plain = fc.fisher_vector(desc, gmm, normalization="analytic", power=None, l2=False,
                            dtype="float64")  # (N, K(1 + 2D))
by_hand = fisher_vector_by_hand(desc[0], gmm)
diff_by_hand = float(np.abs(fv_plain[0] - by_hand).max())
print(f"Fisher vectors: {fv_plain.shape}; K(1 + 2D) = {K * (1 + 2 * D)}")
print(f"max |fc.fisher_vector − formulas| on image 0: {diff_by_hand:.2e}")

# %% [markdown]
# ## Against scikit-image
#
# scikit-image's `skimage.feature.fisher_vector(descriptors, gmm, improved=False)` computes
# the same analytic Fisher vector, one set per call, with the same [α, μ, σ] layout — but its
# σ block has the **opposite sign** to VLFeat's and Sánchez et al.'s (FisherLab follows
# the latter, the gradient of the log-likelihood). We compare the first images both ways: as they
# come (the σ block disagrees) and with scikit-image's σ block negated (they agree to
# rounding). With `improved=True` scikit-image adds the signed square root and L2; both are
# odd functions or blind to sign, so the same flip makes the improved vectors agree too.
#
# All of this is in float64. FisherLab's default arithmetic is float32 (twice as fast); the
# last row shows its price here: the digits have pixels that are always 0 inside some
# components, whose σ then sits at the `reg_covar` floor (σ = 10⁻³), and the σ block —
# formed from raw moments of the descriptors — loses digits to cancellation in float32
# (the error grows like 1/σ²). Pass `dtype="float64"` (as here) or a larger `reg_covar` when
# your descriptors have constant dimensions.

# %%
sigma_block = slice(K + K * D, None)


def flip_sigma(v: np.ndarray) -> np.ndarray:
    out = v.copy()
    out[:, sigma_block] *= -1
    return out


subset = desc[:N_CHECK]
start = time.perf_counter()
sk_plain = np.stack([skimage_fisher_vector(x, gmm) for x in subset])
t_skimage = time.perf_counter() - start
sk_improved = np.stack([skimage_fisher_vector(x, gmm, improved=True) for x in subset])
start = time.perf_counter()
ours_improved = fc.fisher_vector(subset, gmm, dtype="float64")  # power 0.5 + L2 by default
t_ours = time.perf_counter() - start
ours32 = fc.fisher_vector(subset.astype(np.float32), gmm)  # FisherLab's default, float32

comparison = pd.DataFrame([
    {"comparison": "plain, as returned (σ sign differs)",
     "max |difference|": np.abs(fv_plain[:N_CHECK] - sk_plain).max()},
    {"comparison": "plain, scikit-image σ block negated",
     "max |difference|": np.abs(fv_plain[:N_CHECK] - flip_sigma(sk_plain)).max()},
    {"comparison": "improved (power + L2), σ negated",
     "max |difference|": np.abs(ours_improved - flip_sigma(sk_improved)).max()},
    {"comparison": "improved, σ negated, FisherLab in float32",
     "max |difference|": np.abs(ours32 - flip_sigma(sk_improved)).max()},
])
skimage_diff = float(comparison["max |difference|"].iloc[1])
skimage_diff_improved = float(comparison["max |difference|"].iloc[2])
skimage_diff_float32 = float(comparison["max |difference|"].iloc[3])
print(f"smallest GMM σ: {np.sqrt(gmm.covariances_).min():.1e}")
print(f"{N_CHECK} sets of {T} descriptors: scikit-image {t_skimage:.3f} s (one call per set), "
      f"fc.fisher_vector {t_ours:.3f} s (batched)")
comparison.set_index("comparison").map("{:.2e}".format)

# %% [markdown]
# ## Three ways to normalise by the Fisher information
#
# The Fisher kernel is K(X, Y) = G_Xᵀ F⁻¹ G_Y with F the Fisher information matrix; a linear
# classifier on F^(−½) G works with that kernel. F is never available exactly, so:
#
# - **identity** (`normalization="none"`): ignore F, use the plain gradient. Dimensions
#   with small σ_k or small w_k dominate the vector.
# - **analytic**: Sánchez et al.'s closed-form diagonal approximation of F, valid when the
#   posteriors are nearly hard — the formulas above.
# - **empirical**: estimate the diagonal of F from data, i.e. standardise every dimension of
#   the plain gradient with the mean and standard deviation of *training* Fisher vectors.
#   `fc.FisherVectorEncoder(normalization="empirical")` learns those statistics in `fit` and
#   applies them in `transform`, scikit-learn style.
#
# Each is then followed by the signed square root and L2 ("improved" FV). The three encoders
# below share one FisherLab GMM (same K, same seed and data), so only the normalisation
# differs; each is fitted on the images without their labels. How the energy of the
# un-normalised vector splits over the three blocks shows what the analytic scaling does: it
# rebalances the blocks (the empirical one makes every dimension count the same, so its
# shares are the blocks' shares of the dimensions: K, KD, KD).

# %%
encoders = {name: fc.FisherVectorEncoder(K, normalization=name, random_state=SEED)
            for name in ("none", "analytic", "empirical")}
normalised = {f"FV {'identity' if name == 'none' else name}": enc.fit_transform(desc)
              for name, enc in encoders.items()}
gmm_fc = encoders["analytic"].gmm_
blocks = {"α": slice(0, K), "μ": slice(K, K + K * D), "σ": slice(K + K * D, None)}
energy = []
for name in ("none", "analytic"):
    v = fc.fisher_vector(desc, gmm_fc, normalization=name, power=None, l2=False)
    total = float((v.astype(np.float64) ** 2).sum())
    energy.append({"normalisation": "identity" if name == "none" else name,
                   **{f"{b} share": float((v[:, s].astype(np.float64) ** 2).sum()) / total
                      for b, s in blocks.items()}})
dims = K * (1 + 2 * D)
sizes = {"α": K, "μ": K * D, "σ": K * D}
energy.append({"normalisation": "empirical", **{f"{b} share": n / dims for b, n in sizes.items()}})
pd.DataFrame(energy).set_index("normalisation").mul(100).round(1).add_suffix(" %")

# %% [markdown]
# ### Linear probes
#
# How linearly separable are the ten classes in each space? `fc.probe_embeddings` runs a
# logistic regression with stratified 5-fold cross-validation (seeded) on raw pixels and on
# each embedding; the bars show mean accuracy and the spread over folds (chance is 10 %).
# Sánchez et al.'s finding is that both Fisher-information normalisations beat the
# identity; on small, clean images the raw pixels are a strong baseline.

# %%
probe_rows = fc.probe_embeddings(ds.images.reshape(N, -1), normalised, ds.labels, cv=5,
                                 seed=SEED)
probes = {r["embedding"]: r["accuracy"] for r in probe_rows}
display(pd.DataFrame(probe_rows).set_index("embedding").assign(
    accuracy=lambda d: (100 * d["accuracy"]).round(1), std=lambda d: (100 * d["std"]).round(1)))
fc.plots.probe_figure(probe_rows, target="digit class")

# %% [markdown]
# ## The one-call version, saved for the app
#
# `fc.fisher_vector_embedding` does all of the above in one call (descriptors → FisherLab
# GMM → analytic FV → power + L2) and returns an `Embedding` that every other part of
# FisherLab takes (UMAP, probes, neighbours, decoders). Saved to the workspace, it appears on
# the app's Embeddings and Classify pages. At full size this is exactly the "GMM Fisher
# vectors (K = 16)" row of the README's digits table.

# %%
emb, _ = fc.fisher_vector_embedding(ds, n_components=K, random_state=SEED,
                                    dataset_key="builtin:digits")
ws.save_embedding(emb, f"digits-gmm-fv-k{K}")
one_call = fc.linear_probe(emb.vectors, ds.labels, cv=5, seed=SEED)
print(f"fc.fisher_vector_embedding: {emb.vectors.shape}, probe "
      f"{100 * one_call.accuracy:.1f} ± {100 * one_call.std:.1f} %  (README at full size: "
      "95.9 ± 0.6)")

# %% [markdown]
# ## The normalisation ablation (Sánchez et al. 2013, Table 1 in spirit)
#
# `fc.fisher_vector_ablation` fits one GMM without labels and probes all 12 combinations of
# {identity, analytic, empirical} × {signed square root or not} × {L2 or not}. Here the
# empirical statistics are learned inside each cross-validation fold (a `StandardScaler` in
# the pipeline), so no held-out fold leaks into them. Read the figure by group: within a
# normalisation, the bars show what power and L2 add; across groups, what the Fisher
# information adds. The same table and figure are on the app's Classify page.

# %%
ablation = fc.fisher_vector_ablation(ds, ds.labels, n_components=K, cv=5, seed=SEED)
ablation_table = pd.DataFrame(ablation)
display(ablation_table.pivot_table(index="normalization", columns=["power", "l2"],
                                   values="accuracy").mul(100).round(1))
fc.plots.ablation_figure(ablation)

# %% [markdown]
# ## Key numbers
#
# The last cell collects what this notebook measured (the test suite reads it): the
# agreement with scikit-image, the probe accuracies and the best ablation setting.

# %%
best = max(ablation, key=lambda r: r["accuracy"])
summary = {
    "n_images": int(N),
    "n_components": K,
    "fv_dim": int(fv_plain.shape[1]),
    "max_abs_diff_formulas": diff_by_hand,
    "max_abs_diff_skimage": skimage_diff,
    "max_abs_diff_skimage_improved": skimage_diff_improved,
    "max_abs_diff_skimage_float32": skimage_diff_float32,
    "probe_accuracy": probes,
    "probe_fisher_vector_embedding": one_call.accuracy,
    "ablation_best": {k: best[k] for k in ("normalization", "power", "l2", "accuracy")},
    "chance": 1 / len(ds.class_names),
}
print(json.dumps(summary, indent=1))
