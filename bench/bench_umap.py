"""Cold-start time to a first UMAP view, as the app does it: compile at server start, then fit.

    python bench/bench_umap.py [--n 5000] [--d 128]

Run in a fresh process (numba's compile cache is per process). Prints the time from process
start to: umap imported, warm-up compilation done, PCA preview ready, UMAP layout ready; then
the time of a second fit (what a revisit would cost without the app's result cache).
"""

from __future__ import annotations

import argparse
import time

T0 = time.perf_counter()

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--d", type=int, default=128)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, args.d)) * 3
    x = (centers[rng.integers(0, 10, args.n)] + rng.normal(size=(args.n, args.d)))
    x = x.astype(np.float32)

    from fisher_core.explore import pca_embed, umap_embed, warmup_umap

    t_import = time.perf_counter() - T0
    warmup_umap()
    t_warm = time.perf_counter() - T0
    pca_embed(x, 2)
    t_pca = time.perf_counter() - T0
    umap_embed(x, n_components=2)
    t_umap = time.perf_counter() - T0
    t = time.perf_counter()
    umap_embed(x, n_components=2)
    t_again = time.perf_counter() - t
    print(f"| UMAP of {args.n:,} × {args.d}, from process start | seconds |")
    print("|---|---:|")
    print(f"| fisher_core.explore.reduce imported (umap, numba) | {t_import:.1f} |")
    print(f"| warm-up compilation done (app: at server start) | {t_warm:.1f} |")
    print(f"| PCA preview ready | {t_pca:.1f} |")
    print(f"| first UMAP layout ready | {t_umap:.1f} |")
    print(f"| a second fit, warm (the app caches the layout instead: < 0.1 s) | {t_again:.1f} |")


if __name__ == "__main__":
    main()
