"""Linear probes of every embedding FisherLab makes, and the AFV class-distance matrix.

    python bench/eval_afv.py [--workspace DIR] [--datasets digits faces] [--gan-epochs 30]

For each built-in dataset: trains (or reuses from the workspace) an energy-based GAN, a
PixelCNN and an FV-VAE with their defaults, then embeds the dataset as

- AFV: adversarial Fisher vectors of the discriminator (Zhai et al. 2019), centred with the
  mean generator score and scaled by diag(I)^(-1/2) from 1,024 generator samples; exact
  (all D parameters) when D is small enough, else a sparse projection to ``--dim``;
- D-pool: spatially averaged discriminator activations (the paper's baseline);
- PixelCNN Fisher scores (sparse projection to ``--dim``, centred, diagonal FIM);
- GMM Fisher vectors of dense patches (improved FV), of raw patches and with the default
  PCA of patches (24 components above 16 px);
- FV-VAE: Fisher vectors of the latent descriptors under the GMM fitted to them (its
  defaults, ``--fvvae-epochs`` epochs);
- raw pixels;

and prints a linear-probe table (logistic regression, stratified 5-fold, seeded: accuracy
and the spread over folds) per dataset and label (class label; for faces each attribute
too) with a cosine 10-nearest-neighbour probe of the class beside it (same folds), then
the AFV class-to-class Fisher distance matrix of the digits (the paper's
semantic class-distance figure). Every embedding is saved to the workspace, so the app's
Classify and Metrics pages show the same spaces afterwards.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fisher_core import Workspace, load_builtin
from fisher_core.embeddings import (
    afv_embedding,
    d_pool_embedding,
    fisher_score_embedding,
    fisher_vector_embedding,
    fvvae_embedding,
    pixel_embedding,
)
from fisher_core.metrics import class_distance_matrix, knn_probe, linear_probe
from fisher_core.workspace import EntryError, load_saved_model, train_and_save

# AFVs of every D parameter up to this many (digits: 8,897); above it, a sparse projection.
EXACT_AFV_MAX = 20_000


def _log(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)


def _model(ws: Workspace, ds, key: str, family: str, epochs: int, t0: float):
    name = f"{ds.name}-{family}"
    try:
        model, _ = load_saved_model(ws, name)
        _log(f"reusing models/{name}", t0)
    except EntryError:
        run = train_and_save(ds, family, epochs=epochs, workspace=ws, name=name,
                             dataset_key=key, early_stopping_patience=None)
        model = run.model
        _log(f"trained {name}: {run.metrics}", t0)
    return name, model.eval()


def _embeddings(ws: Workspace, ds, key: str, args, t0: float) -> dict[str, np.ndarray]:
    gan_name, gan = _model(ws, ds, key, "ebgan", args.gan_epochs, t0)
    pcnn_name, pcnn = _model(ws, ds, key, "pixelcnn", args.epochs, t0)
    vae_name, vae = _model(ws, ds, key, "fvvae", args.fvvae_epochs, t0)
    shapes = dict(gan.named_parameters())
    n_params = sum(shapes[n].numel() for n in gan.discriminator_parameter_names())
    exact = n_params <= EXACT_AFV_MAX
    afv_label = f"AFV (exact, {n_params:,} dims)" if exact else f"AFV (sparse {args.dim})"
    makers = {
        afv_label: (f"{gan_name}-afv", lambda: afv_embedding(
            gan, ds.images, dataset_key=key, model_name=gan_name,
            dim=None if exact else args.dim, projection=None if exact else "sparse")),
        "D-pool": (f"{gan_name}-dpool", lambda: d_pool_embedding(
            gan, ds.images, dataset_key=key, model_name=gan_name)),
        f"PixelCNN Fisher scores (sparse {args.dim})": (
            f"{pcnn_name}-fisher-sparse{args.dim}", lambda: fisher_score_embedding(
                pcnn, ds.images, dim=args.dim, dataset_key=key, model_name=pcnn_name)),
        "GMM Fisher vectors (raw patches)": (f"{ds.name}-gmm-fv", lambda: fisher_vector_embedding(
            ds, n_components=16, pca=None, dataset_key=key)[0]),
        "GMM Fisher vectors (default PCA)": (f"{ds.name}-gmm-fv-auto", lambda:
                                             fisher_vector_embedding(ds, n_components=16,
                                                                     dataset_key=key)[0]),
        "FV-VAE": (f"{vae_name}-fv", lambda: fvvae_embedding(
            vae, ds.images, dataset_key=key, model_name=vae_name)),
        "raw pixels": (f"{ds.name}-pixels", lambda: pixel_embedding(ds, dataset_key=key)),
    }
    out = {}
    for label, (name, make) in makers.items():
        if not ws.exists("embeddings", name):
            start = time.perf_counter()
            ws.save_embedding(make(), name)
            _log(f"embedded {name} in {time.perf_counter() - start:.0f} s", t0)
        out[label] = ws.load_embedding(name).vectors
    return out


def _probe_table(spaces: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> str:
    """Linear probes for every target, and a cosine 10-NN probe for the first (the class)."""
    cols = list(targets)
    first = cols[0]
    lines = ["| embedding | dim | " + " | ".join(cols) + f" | {first}, 10-NN |",
             "|---|---:|" + "---:|" * (len(cols) + 1)]
    for label, X in spaces.items():
        cells = []
        for target in cols:
            r = linear_probe(X, targets[target], cv=5, seed=0)
            cells.append(f"{100 * r.accuracy:.1f} ± {100 * r.std:.1f}")
        r = knn_probe(X, targets[first], cv=5, seed=0)
        cells.append(f"{100 * r.accuracy:.1f} ± {100 * r.std:.1f}")
        lines.append(f"| {label} | {X.shape[1]:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default=str(Path.home() / ".fisherlab"))
    ap.add_argument("--datasets", nargs="+", default=["digits", "faces"])
    ap.add_argument("--gan-epochs", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=4, help="PixelCNN epochs")
    ap.add_argument("--fvvae-epochs", type=int, default=30, help="FV-VAE epochs (its preset)")
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    t0 = time.perf_counter()
    ws = Workspace(args.workspace)
    afv_digits = None
    for name in args.datasets:
        ds = load_builtin(name)
        key = f"builtin:{name}"
        spaces = _embeddings(ws, ds, key, args, t0)
        targets = {"class": ds.labels}
        if ds.attributes is not None:
            targets = {"class (16 combos)": ds.labels, **{
                a: ds.attributes[:, j] for j, a in enumerate(ds.attribute_names)}}
        table = _probe_table(spaces, targets)
        _log(f"probes on {name} done", t0)
        print(f"\n**{name}** ({len(ds)} images; accuracy % ± spread over 5 folds)\n")
        print(table)
        if name == "digits":
            afv_digits = (next(v for k, v in spaces.items() if k.startswith("AFV")), ds)
    if afv_digits is not None:
        X, ds = afv_digits
        classes, dist = class_distance_matrix(X, ds.labels)
        df = pd.DataFrame(dist, index=classes, columns=classes)
        print("\nAFV class-to-class Fisher distance, digits (‖mean AFV_a − mean AFV_b‖)\n")
        print("| | " + " | ".join(map(str, classes)) + " |")
        print("|---|" + "---:|" * len(classes))
        for c, row in df.iterrows():
            print(f"| **{c}** | " + " | ".join(f"{v:.2f}" for v in row) + " |")
        off = dist + np.diag(np.full(len(classes), np.inf))
        nearest = [f"{c}→{classes[int(np.argmin(off[i]))]}" for i, c in enumerate(classes)]
        print("\nnearest class: " + ", ".join(nearest))
    _log("done", t0)


if __name__ == "__main__":
    main()
