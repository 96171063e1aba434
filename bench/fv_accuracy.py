"""Accuracy of the Fisher-vector encoder's fast paths against the dense float64 computation.

    python bench/fv_accuracy.py            # K = 64 and 256, clustered and unclustered data

For each case: max |Δ| / max |reference| over all entries of 100 sets × 500 descriptors,
D = 64, improved (power 0.5 + L2) and raw (no normalisation) vectors, where the reference
is ``fisher_vector(..., dtype="float64", posterior_threshold=0)``. Columns: the dense
float32 path (float32 round-off), posterior thresholds τ in float32 (and 1e-6 in float64,
the threshold alone), ``precision="bf16"`` and TF32: the statistics GEMM's operands rounded
as on a GPU (γ once, [x², x] split into a rounded part and its remainder), multiplied in
float32 here as a GPU accumulates them; TF32 is CUDA-only, so it goes through the engine
directly.
These are the figures quoted in ``fisher_vector``'s docstring.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from bench_fv import clustered, unclustered
from sklearn.exceptions import ConvergenceWarning

from fisher_core.fisher import GaussianMixture, fisher_vector
from fisher_core.fisher._fv_engine import _encode_all, _Model
from fisher_core.fisher.vectors import _as_sets


def _emulated_tf32(sets: np.ndarray, gmm, **norm) -> np.ndarray:
    """The library's TF32 statistics (operand rounding, two GEMMs) run through f32 GEMMs."""
    model = _Model(gmm, "analytic", torch.float32, torch.device("cpu"), precision="tf32")
    flat, lengths, _ = _as_sets(sets, model.d)
    return _encode_all(model, flat, lengths, norm.get("power", 0.5), norm.get("l2", True),
                       None, tau=0.0)


def main() -> None:
    warnings.simplefilter("ignore", ConvergenceWarning)
    s, n, d = 100, 500, 64
    columns = {
        "dense f32": dict(posterior_threshold=0),
        "τ=1e-8 (default)": {},
        "τ=1e-6": dict(posterior_threshold=1e-6),
        "τ=1e-4": dict(posterior_threshold=1e-4),
        "f64 τ=1e-6": dict(dtype="float64", posterior_threshold=1e-6),
        "bf16": dict(precision="bf16"),
        "tf32 (emulated)": dict(posterior_threshold=0),
    }
    print("| K | data | vectors | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for k in (64, 256):
        for kind in ("clustered", "unclustered"):
            if kind == "clustered":
                train, data = clustered(50_000, d, k, 1), clustered(s * n, d, k, 2)
            else:
                train, data = unclustered(50_000, d, 1), unclustered(s * n, d, 2)
            gmm = GaussianMixture(k, random_state=0, max_iter=30).fit(train)
            sets = data.reshape(s, n, d)
            for form, norm in (("improved", {}), ("raw", dict(power=None, l2=False))):
                ref = fisher_vector(sets, gmm, dtype="float64", posterior_threshold=0, **norm)
                scale = np.abs(ref).max()
                cells = []
                for name, options in columns.items():
                    if name.startswith("tf32"):
                        fv = _emulated_tf32(sets, gmm, **norm)
                    else:
                        fv = fisher_vector(sets, gmm, **options, **norm)
                    cells.append(f"{np.abs(fv - ref).max() / scale:.1e}")
                print(f"| {k} | {kind} | {form} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
