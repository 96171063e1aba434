"""Whitening and fold-fitted statistics (issue 18): what PCA whitening adds to the Fisher-vector
normalisation ablation, and how much a probe gained from statistics fitted on all rows.

    python bench/eval_whitening.py [--whiten 64,256] [--out bench/results_eval_whitening.md]

On the built-in digits (class) and faces (16 attribute combinations): the ablation rows of
:func:`fisher_core.metrics.fisher_vector_ablation` (GMM K = 16, default patches, 2,000 images,
stratified 5-fold, seed 0) for the analytic and empirical normalisations with √ + L2, without
and with whitening to each ``--whiten`` dimension (the PCA fitted on the training folds);
then, for saved-style embeddings (empirical, and analytic whitened), the linear-probe
accuracy when the standardisation / whitening is fitted on all rows (what probing
``Embedding.vectors`` did before) against refitted per fold (``linear_probe(embedding)``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from fisher_core.data import load_builtin
from fisher_core.embeddings import fisher_vector_embedding
from fisher_core.metrics import fisher_vector_ablation, linear_probe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--whiten", default="64,256")
    p.add_argument("--out", default="bench/results_eval_whitening.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    dims = [int(d) for d in args.whiten.split(",")]
    lines = ["# Whitening and fold-fitted statistics", "",
             f"`python bench/eval_whitening.py --whiten {args.whiten}`", "",
             "| dataset | normalisation | √ + L2 | " + " | ".join(
                 f"√ + W{d} + L2" for d in dims) + " |",
             "|---|---|---:|" + "---:|" * len(dims)]
    leak = ["", "| dataset | embedding | statistics of all rows | refitted per fold | "
            "difference |", "|---|---|---:|---:|---:|"]
    t0 = time.perf_counter()
    for name in ("digits", "faces"):
        ds = load_builtin(name)
        y = ds.labels
        cells: dict[str, list[str]] = {"analytic": [], "empirical": []}
        for d in [None, *dims]:
            rows = fisher_vector_ablation(ds, y, n_components=16, whiten=d, max_images=2000)
            for r in rows:
                if r["power"] and r["l2"] and r["whiten"] == d and r["normalization"] in cells:
                    cells[r["normalization"]].append(f"{100 * r['accuracy']:.1f} ± "
                                                     f"{100 * r['std']:.1f}")
            print(f"[{time.perf_counter() - t0:.0f} s] {name} whiten={d}", flush=True)
        for norm, c in cells.items():
            lines.append(f"| {name} | {norm} | " + " | ".join(c) + " |")
        sub = ds.subset(slice(0, 2000))
        for label, kw in [("empirical, √ + L2", {"normalization": "empirical"}),
                          (f"analytic, √ + W{dims[-1]} + L2", {"whiten": dims[-1]})]:
            emb, _ = fisher_vector_embedding(sub, n_components=16, **kw)
            leaky = linear_probe(emb.vectors, sub.labels).accuracy
            fair = linear_probe(emb, sub.labels).accuracy
            leak.append(f"| {name} | {label} | {100 * leaky:.1f} | {100 * fair:.1f} | "
                        f"{100 * (leaky - fair):+.1f} |")
            print(leak[-1], flush=True)
    text = "\n".join(lines + leak) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
