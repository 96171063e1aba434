"""Benchmark: classical Fisher vectors and diagonal-GMM EM against their peers, in one run.

    python bench/bench_fv.py            # full sizes (about a minute on 2 cores)
    python bench/bench_fv.py --quick    # small smoke run

Rows (ratios > 1 mean fisher_core is faster):
1. FV encoding throughput, 200 sets × 500 descriptors, D = 64, K = 64, one scikit-learn GMM:
   scikit-image ``fisher_vector(improved=True)`` (one call per set) vs ``fisher_vector`` (all
   sets batched, power 0.5 + L2). Outputs are checked to agree (σ block sign flipped).
2. The same encoding as a fraction of this machine's float32 GEMM rate: 8·N·D·K flops (two
   GEMMs with a 2D-wide operand) against ``torch.matmul`` of the (N, 2D) @ (2D, K) shape.
3. GMM fit with each library's defaults (k-means initialisation, tol 1e-3, at most 100
   iterations), scikit-learn ``GaussianMixture(covariance_type="diag")`` against ours, on
   50,000 × 64 rows, K = 64, two kinds of data: *clustered* (64 well-separated diagonal
   clusters) and *unclustered* (a random linear map of heavy-tailed Laplace noise: no clusters,
   so the mixture is a density approximation). Held-out log-likelihood per sample (10,000
   rows) and fit time, mean over ``--seeds`` seeds of the data and of both fits; the ratio is
   scikit-learn's mean time over ours. Targets: ours within 0.05 nat/sample and ≥ 5× faster.
Timings are the best of ``--repeats`` runs, interleaved between peers (the machine is shared),
with a pause before each peer timing so that torch's spinning OpenMP workers do not slow it.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import skimage
import sklearn
import torch
from skimage.feature import fisher_vector as skimage_fisher_vector
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGMM

from fisher_core.fisher import GaussianMixture, fisher_vector

# torch's OpenMP workers spin for a while after each parallel region and would steal the
# 2 cores from the NumPy/OpenBLAS peers timed right after; let them go idle first.
PAUSE = 1.0


def clustered(n: int, d: int, k: int, seed: int) -> np.ndarray:
    """Rows from a random K-cluster diagonal mixture (Dirichlet weights, mixed spreads)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 1.5
    scales = rng.uniform(0.4, 1.4, size=(k, d))
    label = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 5.0)))
    return centres[label] + scales[label] * rng.normal(size=(n, d))


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def gemm_rate(n: int, d: int, k: int, repeats: int) -> float:
    a, b = torch.randn(n, 2 * d), torch.randn(2 * d, k)
    for _ in range(2):
        a @ b
    seconds, _ = best_of(lambda: a @ b, max(5, repeats * 3))
    return 2 * n * 2 * d * k / seconds


def bench_encoding(s: int, n: int, d: int, k: int, repeats: int):
    rng_seed = 1
    gmm = SkGMM(k, covariance_type="diag", max_iter=20, init_params="k-means++",
                random_state=0).fit(clustered(20_000, d, k, rng_seed))
    sets = clustered(s * n, d, k, rng_seed + 1).reshape(s, n, d)  # float64, like skimage's use
    fisher_vector(sets[:2], gmm)  # warm-up
    t_sk, t_ours = np.inf, np.inf
    for _ in range(repeats):  # interleaved: both see the same machine load
        time.sleep(PAUSE)
        t, ref = best_of(lambda: np.stack([skimage_fisher_vector(x, gmm, improved=True)
                                           for x in sets]), 1)
        t_sk = min(t_sk, t)
        t, ours = best_of(lambda: fisher_vector(sets, gmm), 3)
        t_ours = min(t_ours, t)
    ours = ours.astype(np.float64)
    ours[:, k + k * d :] *= -1  # scikit-image's σ block has the opposite sign
    max_err = float(np.abs(ours - ref).max())
    return s * n / t_sk, s * n / t_ours, max_err, gemm_rate(s * n, d, k, repeats)


def unclustered(n: int, d: int, seed: int) -> np.ndarray:
    """Rows of a random linear map of Laplace noise: one heavy-tailed blob, no clusters."""
    rng = np.random.default_rng(seed)
    return rng.laplace(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)


def bench_gmm(n: int, d: int, k: int, seeds: int) -> dict[str, dict[str, list[float]]]:
    """Default fits of both libraries: held-out LL and seconds per seed, per kind of data."""
    out = {}
    for kind in ("clustered", "unclustered"):
        rows = {"sk_t": [], "sk_ll": [], "ours_t": [], "ours_ll": []}
        for seed in range(seeds):
            if kind == "clustered":
                data = clustered(n + n // 5, d, k, seed=7 + seed)
            else:
                data = unclustered(n + n // 5, d, seed=7 + seed)
            train, held_out = data[:n], data[n:]
            time.sleep(PAUSE)
            t0 = time.perf_counter()
            sk = SkGMM(k, covariance_type="diag", random_state=seed).fit(train)
            rows["sk_t"].append(time.perf_counter() - t0)
            rows["sk_ll"].append(sk.score(held_out))
            t0 = time.perf_counter()
            ours = GaussianMixture(k, random_state=seed).fit(train)
            rows["ours_t"].append(time.perf_counter() - t0)
            rows["ours_ll"].append(ours.score(held_out))
        out[kind] = rows
    return out


def print_gmm_rows(fit, result) -> None:
    n_fit, d_fit, k_fit = fit
    for kind, rows in result.items():
        sk_t, ours_t = np.mean(rows["sk_t"]), np.mean(rows["ours_t"])
        sk_ll, ours_ll = np.mean(rows["sk_ll"]), np.mean(rows["ours_ll"])
        gap = sk_ll - ours_ll  # > 0: ours worse
        ratio = sk_t / ours_t
        met = gap <= 0.05 and ratio >= 5
        print(f"| GMM default fit, {kind} {n_fit:,}×{d_fit}, K={k_fit} "
              f"({len(rows['sk_t'])} seeds) | sklearn diag, default | {sk_t:.2f} s, LL "
              f"{sk_ll:.3f} | {ours_t:.2f} s, LL {ours_ll:.3f} (Δ {-gap:+.3f}) | {ratio:.1f}× | "
              f"≥ 5×, Δ ≥ −0.05 | {'yes' if met else 'NO'} |")
    spread = {kind: np.ptp(np.array(r["ours_ll"]) - np.array(r["sk_ll"]))
              for kind, r in result.items()}
    print("\nPer-seed LL difference (ours − sklearn): " + "; ".join(
        f"{kind}: " + ", ".join(f"{a - b:+.3f}" for a, b in zip(r["ours_ll"], r["sk_ll"],
                                                               strict=True))
        for kind, r in result.items()) + f" (range {max(spread.values()):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="best-of repeats")
    parser.add_argument("--seeds", type=int, default=3, help="GMM fits per kind of data")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every peer (torch and BLAS); default: all")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    if args.quick:
        enc, fit, repeats = (40, 200, 32, 16), (5_000, 32, 16), 1
    else:
        enc, fit, repeats = (200, 500, 64, 64), (50_000, 64, 64), 5
    repeats = args.repeats or repeats

    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    sk_rate, our_rate, max_err, gemm = bench_encoding(*enc, repeats)
    s, n, d, k = enc
    flops = 8 * d * k * our_rate  # flop/s at our descriptor rate
    gmm_result = bench_gmm(*fit, 1 if args.quick else args.seeds)

    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), sklearn "
          f"{sklearn.__version__}, scikit-image {skimage.__version__}, "
          f"{platform.machine()}, best of {repeats}")
    print(f"FV agreement with scikit-image (σ sign flipped): max |diff| = {max_err:.1e}\n")
    print("| benchmark | peer | peer result | fisher_core | ratio | target | met |")
    print("|---|---|---|---|---|---|---|")
    ratio = our_rate / sk_rate
    print(f"| FV encode {s}×{n}, D={d}, K={k} | scikit-image fisher_vector | "
          f"{sk_rate:,.0f} desc/s | {our_rate:,.0f} desc/s | {ratio:.1f}× | ≥ 10× | "
          f"{'yes' if ratio >= 10 else 'NO'} |")
    frac = flops / gemm
    print(f"| FV encode, 8·N·D·K flops | torch.matmul f32 GEMM | {gemm / 1e9:.0f} GFLOP/s | "
          f"{flops / 1e9:.0f} GFLOP/s | {frac:.0%} | ≥ 40 % | {'yes' if frac >= 0.4 else 'NO'} |")
    print_gmm_rows(fit, gmm_result)


if __name__ == "__main__":
    main()
