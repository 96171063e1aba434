"""Why do attribute edits lose preservation? Ablations of the faces edit evaluation.

    python bench/eval_edits_ablation.py [--workspace DIR]

Run after ``bench/eval_faces.py`` on the same workspace (it reuses the faces PixelCNN, the
embeddings, their decoders and the domain feature extractor). It

1. varies the Fisher-score space — projection dimension (512, 2048) and normalisation
   (diagonal Fisher information vs none) — training one decoder per variant, and prints the
   mean edit success / preservation over the four attributes and both directions at
   strengths 1, 2, 3 for each variant and for the pixel space;
2. prints, for the default Fisher space at strength 3, which *other* attribute flips when one
   is edited (share of sources whose predicted label changed), so that a preservation loss
   can be traced to an attribute pair (e.g. a hat covering the eyes);
3. prints the classifier's agreement between real images and their own reconstructions, per
   attribute and space: the ceiling any edit is judged against.

The built-in faces' attributes are independent by construction (pairwise |corr| < 0.03), so
the mean-difference direction carries no correlated attribute; any flip is the decoder's or
the space's doing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fisher_core import Workspace, load_builtin
from fisher_core.embeddings import fisher_score_embedding
from fisher_core.explore import apply_direction, attribute_direction
from fisher_core.workspace import (
    edit_scores,
    load_embedding_decoder,
    load_extractor,
    load_saved_model,
    train_embedding_decoder,
)

KEY = "builtin:faces"
STRENGTHS = (1.0, 2.0, 3.0)


def _log(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default=str(Path.home() / ".fisherlab"))
    ap.add_argument("--sources", type=int, default=200)
    args = ap.parse_args()
    t0 = time.perf_counter()
    ws = Workspace(args.workspace)
    ds = load_builtin("faces")
    model, _ = load_saved_model(ws, "faces-pixelcnn")
    model.eval()
    variants = {
        "faces-pixelcnn-fisher-sparse512": None,  # made by eval_faces.py
        "faces-pixelcnn-fisher-sparse2048": {"dim": 2048},
        "faces-pixelcnn-fisher-sparse512-nonorm": {"dim": 512, "normalize": None},
        "faces-pixels": None,
    }
    for name, opts in variants.items():
        if opts is not None and not ws.exists("embeddings", name):
            ws.save_embedding(fisher_score_embedding(
                model, ds.images, dataset_key=KEY, model_name="faces-pixelcnn", **opts), name)
            _log(f"embedded {name}", t0)
        if load_embedding_decoder(ws, name) is None:
            _, m = train_embedding_decoder(ws, name, ds)
            _log(f"decoder {name}: val_mse {m['val_mse']:.4f}", t0)
    names = list(variants)
    rows = []
    for attr in ds.attribute_names:
        rows += edit_scores(ws, ds, KEY, names, attribute=attr, strengths=STRENGTHS,
                            n_sources=args.sources)
    df = pd.DataFrame(rows)
    summary = df.groupby(["space", "strength"])[["success", "preservation"]].mean()
    print("\n1. Mean edit success / preservation over 4 attributes × add/remove\n")
    print("| space | decoder val MSE | " + " | ".join(f"s = {s:g}" for s in STRENGTHS) + " |")
    print("|---|---:|" + "---|" * len(STRENGTHS))
    for name in names:
        mse = ws.entry("decoders", name).meta.get("metrics", {}).get("val_mse", float("nan"))
        cells = [f"{summary.loc[(name, s), 'success']:.0%} / "
                 f"{summary.loc[(name, s), 'preservation']:.0%}" for s in STRENGTHS]
        print(f"| {name} | {mse:.4f} | " + " | ".join(cells) + " |")

    extractor = load_extractor(ws, KEY)
    name = names[0]
    z = ws.load_embedding(name).vectors
    dec = load_embedding_decoder(ws, name)
    attrs = ds.attributes.astype(bool)
    rng = np.random.default_rng(0)
    n_attr = len(ds.attribute_names)
    print(f"\n2. Which other attribute flips, {name}, strength 3 (share of sources)\n")
    print("| edit | " + " | ".join(ds.attribute_names) + " |")
    print("|---|" + "---:|" * n_attr)
    for j, attr in enumerate(ds.attribute_names):
        delta = attribute_direction(z, attrs[:, j])
        for direction, pool, sign in (("add", ~attrs[:, j], 1.0), ("remove", attrs[:, j], -1.0)):
            idx = rng.choice(np.flatnonzero(pool), size=args.sources, replace=False)
            ref = extractor.predict_attributes(dec.decode(z[idx])) >= 0.5
            out = extractor.predict_attributes(
                dec.decode(apply_direction(z[idx], delta, 3.0 * sign))) >= 0.5
            flips = (out != ref).mean(0)
            cells = ["—" if k == j else f"{flips[k]:.0%}" for k in range(n_attr)]
            print(f"| {direction} {attr} | " + " | ".join(cells) + " |")

    print("\n3. Classifier agreement, real image vs its reconstruction (all 3000 faces)\n")
    real = extractor.predict_attributes(ds.images) >= 0.5
    print("| space | " + " | ".join(ds.attribute_names) + " |")
    print("|---|" + "---:|" * n_attr)
    for name in names:
        rec = extractor.predict_attributes(
            load_embedding_decoder(ws, name).decode(ws.load_embedding(name).vectors)) >= 0.5
        agree = (rec == real).mean(0)
        print(f"| {name} | " + " | ".join(f"{a:.1%}" for a in agree) + " |")
    _log("done", t0)


if __name__ == "__main__":
    main()
