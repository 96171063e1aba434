"""Interest points vs dense patches, Fisher vector vs VLAD vs bag of words (issue 18).

    nice -n 10 python bench/eval_baselines.py [--datasets digits faces] [--k 16]
                                              [--fvvae-epochs 30] [--threads 1]
                                              [--out bench/results_eval_baselines.md]

The FV-VAE proposal's hypothesis is that learned dense descriptors beat interest-point
(SIFT-like) ones. For each built-in dataset (all images) this embeds

- raw pixels;
- dense patches (the Fisher-vector path's defaults: 3×3 / 6×6 patches + (x, y)) encoded as an
  improved Fisher vector (today's ``fisher_vector_embedding``, raw patches), a VLAD and a
  bag of words — on the faces the patches are PCA-reduced to 24 first (the app's and the
  command line's default for images over 16 px; the keypoint rows are PCA-reduced too), with
  the raw-patch Fisher vector kept as the first row;
- SIFT and ORB keypoints (image upsampled to 64 px and edge-padded, PCA to 32, + (x, y);
  ``fisher_core.fisher.keypoints``) encoded the same three ways, and SIFT without PCA;
- the FV-VAE (its preset: K = 32, β = 0.3, descriptor GMM with the final EM refit, 30
  epochs; fewer with ``--fvvae-epochs``, flagged in the table): its Fisher vector, and its
  latent means flattened;

all at the same vocabulary size K (GMM components or k-means words), and prints one table per
dataset with the dimension, the wall time of the embedding (descriptor extraction included;
training included for the FV-VAE rows), a linear probe (logistic regression, stratified
5-fold, seed 0: the protocol of ``bench/eval_afv.py``) of the class — and of each attribute
for the faces — and a cosine 10-nearest-neighbour probe of the class on the same folds. A
line under each table gives the keypoints found per image, the images that needed the
detector's relaxed thresholds and those with none even then (their vector is zero).
Writes the tables to ``--out`` too. About 6 min for both datasets on one loaded core (4 min
with ``--fvvae-epochs 10``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from fisher_core import load_builtin
from fisher_core.embeddings import (
    fisher_vector_embedding,
    fvvae_embedding,
    latent_embedding,
    local_descriptor_embedding,
    pixel_embedding,
)
from fisher_core.fisher import default_patch
from fisher_core.metrics import knn_probe, linear_probe
from fisher_core.workspace import train_and_save

ENCODINGS = {"fisher": "FV", "vlad": "VLAD", "bow": "BoW"}
DENSE_PCA = 24


def _spaces(ds, args) -> dict[str, tuple[Callable, str]]:
    """Label → (maker of an Embedding, its descriptor kind) for one dataset."""
    k = args.k
    spaces: dict[str, tuple[Callable, str]] = {
        "raw pixels": (lambda: pixel_embedding(ds), ""),
        "dense patches · FV, no PCA (the library default before issue 18)": (
            lambda: fisher_vector_embedding(ds, n_components=k, pca=None)[0], ""),
    }
    patch = default_patch(*ds.shape[1:])[0]
    # the app's and the command line's PCA of patches for images over 16 px
    pca = DENSE_PCA if ds.shape[0] * patch ** 2 > DENSE_PCA else None
    dense = f"dense patches (PCA {pca})" if pca else "dense patches"
    for desc in ("dense", "sift", "orb"):
        for enc, short in ENCODINGS.items():
            if desc == "dense" and enc == "fisher" and not pca:
                continue  # the first row
            label = f"{dense if desc == 'dense' else desc.upper()} · {short}"
            spaces[label] = (lambda d=desc, e=enc: local_descriptor_embedding(
                ds, descriptors=d, encoding=e, n_components=k,
                pca=pca if d == "dense" else "auto"), desc)
    spaces["SIFT · FV, no PCA (128 + 2 dims)"] = (lambda: local_descriptor_embedding(
        ds, descriptors="sift", encoding="fisher", n_components=k, pca=None), "sift")
    return spaces


def _fvvae_rows(ds, args) -> list[tuple[str, np.ndarray, float]]:
    """The FV-VAE trained with its preset: (label, vectors, seconds) for its FV and latents."""
    t0 = time.perf_counter()
    run = train_and_save(ds, "fvvae", epochs=args.fvvae_epochs, seed=0,
                         early_stopping_patience=None, n_samples=0)
    model = run.model.eval()
    fv = fvvae_embedding(model, ds.images).vectors
    secs = time.perf_counter() - t0
    flag = "" if args.fvvae_epochs >= 30 else f"; {args.fvvae_epochs} epochs, preset 30"
    t1 = time.perf_counter()
    latent = latent_embedding(model, ds.images).vectors
    return [(f"FV-VAE · FV (learned dense descriptors{flag})", fv, secs),
            ("FV-VAE · latent means, flattened (no FV)", latent,
             secs + time.perf_counter() - t1)]


def _cells(X: np.ndarray, targets: dict[str, np.ndarray]) -> list[str]:
    cells = []
    for y in targets.values():
        r = linear_probe(X, y, cv=5, seed=0)
        cells.append(f"{100 * r.accuracy:.1f} ± {100 * r.std:.1f}")
    r = knn_probe(X, next(iter(targets.values())), cv=5, seed=0)
    return cells + [f"{100 * r.accuracy:.1f} ± {100 * r.std:.1f}"]


def _table(name: str, args) -> str:
    ds = load_builtin(name)
    targets = {"class": ds.labels}
    if ds.attributes is not None:
        targets = {"class (16 combos)": ds.labels, **{
            a: ds.attributes[:, j] for j, a in enumerate(ds.attribute_names)}}
    cols = list(targets)
    lines = [f"**{name}** ({len(ds):,} images, {ds.shape[1]}×{ds.shape[2]}; K = {args.k}; "
             "accuracy % ± spread over 5 folds)", "",
             "| embedding | dim | time s | " + " | ".join(cols) + f" | {cols[0]}, 10-NN |",
             "|---|---:|---:|" + "---:|" * (len(cols) + 1)]
    spaces = _spaces(ds, args)
    keypoints: dict[str, str] = {}
    rows: list[tuple[str, np.ndarray, float]] = []
    for label, (make, desc) in spaces.items():
        t0 = time.perf_counter()
        emb = make()
        rows.append((label, emb.vectors, time.perf_counter() - t0))
        if desc in ("sift", "orb") and desc not in keypoints:
            p = emb.params
            keypoints[desc] = (f"{desc.upper()} {p['mean_descriptors']:.1f} an image, "
                               f"{p['n_relaxed']} images retried with relaxed thresholds, "
                               f"{p['n_empty']} with none")
        print(f"  {label}: {emb.dim} dims, {rows[-1][2]:.1f} s", flush=True)
    if args.fvvae_epochs:
        rows += _fvvae_rows(ds, args)
    for label, X, secs in rows:
        lines.append(f"| {label} | {X.shape[1]:,} | {secs:.1f} | " + " | ".join(_cells(X, targets))
                     + " |")
    lines += ["", "Keypoints: " + "; ".join(keypoints.values()) + "."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "faces"])
    ap.add_argument("--k", type=int, default=16, help="GMM components / k-means words")
    ap.add_argument("--fvvae-epochs", type=int, default=30, help="0: no FV-VAE rows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_eval_baselines.md")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tables = []
    with threadpool_limits(args.threads):
        for name in args.datasets:
            t0 = time.perf_counter()
            print(f"{name}:", flush=True)
            tables.append(_table(name, args))
            print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    text = "\n\n".join(tables)
    print("\n" + text)
    cmd = (f"nice -n 10 python bench/eval_baselines.py --datasets {' '.join(args.datasets)} "
           f"--k {args.k} --fvvae-epochs {args.fvvae_epochs} --threads {args.threads}")
    Path(args.out).write_text(f"`{cmd}`\n\n{text}\n")


if __name__ == "__main__":
    main()
