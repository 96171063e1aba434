"""Benchmark: classical Fisher vectors and diagonal-GMM EM against their peers, in one run.

    python bench/bench_fv.py                  # full sizes (about a minute on 2 cores)
    python bench/bench_fv.py --quick          # small smoke run
    python bench/bench_fv.py --device cuda    # fisher_core on a GPU, plus the large rows

Rows (ratios > 1 mean fisher_core is faster):
1. FV encoding throughput, 200 sets × 500 descriptors, D = 64, K = 64, one scikit-learn GMM:
   scikit-image ``fisher_vector(improved=True)`` (one call per set, CPU) vs ``fisher_vector``
   (all sets batched, power 0.5 + L2, defaults, on ``--device``). Outputs are checked to
   agree (σ block sign flipped).
2. The same encoding as a fraction of the device's float32 GEMM rate: 8·N·D·K flops (the
   dense work of two GEMMs with a 2D-wide operand, counted even where the sparse statistics
   skip most of it) against ``torch.matmul`` of the (N, 2D) @ (2D, K) shape. On the CPU a
   second row uses the fastest float32 GEMM torch reaches there, a 1×1 convolution
   (oneDNN), which the encoder's E-step uses: MKL's ``torch.matmul`` runs its AVX2 path on
   AMD CPUs.
3. GMM fit with each library's defaults (k-means initialisation, tol 1e-3, at most 100
   iterations), scikit-learn ``GaussianMixture(covariance_type="diag")`` against ours, on
   50,000 × 64 rows, K = 64, two kinds of data: *clustered* (64 well-separated diagonal
   clusters) and *unclustered* (a random linear map of heavy-tailed Laplace noise: no clusters,
   so the mixture is a density approximation). Held-out log-likelihood per sample (10,000
   rows) and fit time, mean over ``--seeds`` seeds of the data and of both fits; the ratio is
   scikit-learn's mean time over ours. Targets: ours within 0.05 nat/sample and ≥ 5× faster.
4. (``--fv-large``, default with ``--device cuda``) ``fisher_vector`` on 4,000 sets × 500
   descriptors (2M), D = 64, K = 256, the descriptors already on the device as a float32
   tensor and the vectors left there (``output="torch"``), as a fraction of the device's
   float32 GEMM rate for the E-step shape (2M, 128) @ (128, 256), measured in the same run;
   and the same call from NumPy to NumPy.
5. (``--gmm-large``, default with ``--device cuda``) GMM default fit on 1M × 64 clustered
   rows, K = 256: scikit-learn on all of this machine's CPU cores against ours on
   ``--device``, one seed.
Timings are the best of ``--repeats`` runs, interleaved between peers (the machine is shared),
with a pause before each peer timing so that torch's spinning OpenMP workers do not slow it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from functools import partial

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


def synced(fn, device: torch.device):
    """``fn`` followed by a wait for the device, so that timings include the GPU work."""
    def run():
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out
    return run


def gemm_rates(n: int, d: int, k: int, repeats: int, device: torch.device) -> dict:
    """Float32 GEMM rates (flop/s) of the (n, 2D) @ (2D, K) shape on ``device``.

    ``"torch.matmul"`` always; on the CPU also ``"oneDNN 1×1 conv"``, the same product as a
    1×1 convolution over a channels-last image (what the encoder's E-step runs).
    """
    a = torch.randn(n, 2 * d, device=device)
    b = torch.randn(2 * d, k, device=device)
    products = {"torch.matmul": lambda: a @ b}
    if device.type == "cpu":
        image = a.view(1, n, 1, 2 * d).permute(0, 3, 1, 2)  # channels-last memory
        weight = b.T.reshape(k, 2 * d, 1, 1).contiguous(memory_format=torch.channels_last)
        products["oneDNN 1×1 conv"] = lambda: torch.nn.functional.conv2d(image, weight)
    rates = {}
    for name, product in products.items():
        run = synced(product, device)
        for _ in range(2):
            run()
        seconds, _ = best_of(run, max(5, repeats * 3))
        rates[name] = 2 * n * 2 * d * k / seconds
    return rates


def bench_encoding(s: int, n: int, d: int, k: int, repeats: int, device: torch.device):
    rng_seed = 1
    gmm = SkGMM(k, covariance_type="diag", max_iter=20, init_params="k-means++",
                random_state=0).fit(clustered(20_000, d, k, rng_seed))
    sets = clustered(s * n, d, k, rng_seed + 1).reshape(s, n, d)  # float64, like skimage's use
    encode = synced(lambda: fisher_vector(sets, gmm, device=device), device)
    encode()  # warm-up
    t_sk, t_ours = np.inf, np.inf
    for _ in range(repeats):  # interleaved: both see the same machine load
        time.sleep(PAUSE)
        t, ref = best_of(lambda: np.stack([skimage_fisher_vector(x, gmm, improved=True)
                                           for x in sets]), 1)
        t_sk = min(t_sk, t)
        t, ours = best_of(encode, 3)
        t_ours = min(t_ours, t)
    ours = ours.astype(np.float64)
    ours[:, k + k * d :] *= -1  # scikit-image's σ block has the opposite sign
    max_err = float(np.abs(ours - ref).max())
    return s * n / t_sk, s * n / t_ours, max_err, gemm_rates(s * n, d, k, repeats, device)


def bench_fv_large(s: int, n: int, d: int, k: int, repeats: int, device: torch.device):
    """Descriptors/s from a device tensor to a device tensor, and from NumPy to NumPy."""
    rows = clustered(s * n, d, k, 3)
    gmm = GaussianMixture(k, max_iter=20, random_state=0, device=device).fit(
        clustered(min(100_000, s * n), d, k, 4))
    cube = torch.as_tensor(rows.reshape(s, n, d), dtype=torch.float32, device=device)
    on_device = synced(lambda: fisher_vector(cube, gmm, output="torch"), device)
    from_numpy = synced(lambda: fisher_vector(rows.reshape(s, n, d), gmm, device=device),
                        device)
    on_device(), from_numpy()  # warm-up
    t_dev, _ = best_of(on_device, repeats)
    t_np, _ = best_of(from_numpy, repeats)
    gemm = gemm_rates(s * n, d, k, repeats, device)["torch.matmul"]
    return s * n / t_dev, s * n / t_np, gemm


def bench_gmm_large(n: int, d: int, k: int, device: torch.device) -> dict[str, float]:
    """One default fit each: scikit-learn on the CPUs, ours on ``device``; seconds and LL."""
    data = clustered(n + n // 5, d, k, seed=11)
    train, held_out = data[:n], data[n:]
    time.sleep(PAUSE)
    t0 = time.perf_counter()
    sk = SkGMM(k, covariance_type="diag", random_state=0).fit(train)
    sk_t = time.perf_counter() - t0
    fit = synced(lambda: GaussianMixture(k, random_state=0, device=device).fit(train), device)
    ours_t, ours = best_of(fit, 1)
    return {"sk_t": sk_t, "sk_ll": sk.score(held_out), "ours_t": ours_t,
            "ours_ll": ours.score(held_out)}


def unclustered(n: int, d: int, seed: int) -> np.ndarray:
    """Rows of a random linear map of Laplace noise: one heavy-tailed blob, no clusters."""
    rng = np.random.default_rng(seed)
    return rng.laplace(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)


def bench_gmm(n: int, d: int, k: int, seeds: int,
              device: torch.device) -> dict[str, dict[str, list[float]]]:
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
            model = GaussianMixture(k, random_state=seed, device=device)
            t, ours = best_of(synced(partial(model.fit, train), device), 1)
            rows["ours_t"].append(t)
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


def print_encoding_rows(enc, sk_rate: float, our_rate: float, gemm: dict) -> None:
    s, n, d, k = enc
    ratio = our_rate / sk_rate
    print(f"| FV encode {s}×{n}, D={d}, K={k} | scikit-image fisher_vector | "
          f"{sk_rate:,.0f} desc/s | {our_rate:,.0f} desc/s | {ratio:.1f}× | ≥ 15× | "
          f"{'yes' if ratio >= 15 else 'NO'} |")
    flops = 8 * d * k * our_rate  # flop/s at our descriptor rate
    for name, rate in gemm.items():
        frac = flops / rate
        print(f"| FV encode, 8·N·D·K flops | {name} f32 GEMM | {rate / 1e9:,.0f} GFLOP/s | "
              f"{flops / 1e9:,.0f} GFLOP/s | {frac:.0%} | ≥ 60 % | "
              f"{'yes' if frac >= 0.6 else 'NO'} |")


def print_large_rows(fv_large, gmm_large, large_sizes) -> None:
    (s, n, d, k), (n_fit, d_fit, k_fit) = large_sizes
    if fv_large is not None:
        on_device, from_numpy, gemm = fv_large
        for label, rate in (("tensor → tensor", on_device), ("NumPy → NumPy", from_numpy)):
            frac = 8 * d * k * rate / gemm
            print(f"| FV encode {s * n:,} desc, D={d}, K={k}, {label} | torch.matmul "
                  f"f32 GEMM {gemm / 1e12:.1f} TFLOP/s ≈ {gemm / (8 * d * k):,.0f} desc/s | — | "
                  f"{rate:,.0f} desc/s | {frac:.1%} of GEMM | — | — |")
    if gmm_large is not None:
        r = gmm_large
        print(f"| GMM default fit, clustered {n_fit:,}×{d_fit}, K={k_fit} (1 seed) | sklearn "
              f"diag, {os.cpu_count()} CPUs | {r['sk_t']:.1f} s, LL {r['sk_ll']:.3f} | "
              f"{r['ours_t']:.2f} s, LL {r['ours_ll']:.3f} | {r['sk_t'] / r['ours_t']:.1f}× | "
              "— | — |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="best-of repeats")
    parser.add_argument("--seeds", type=int, default=3, help="GMM fits per kind of data")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every peer (torch and BLAS); default: all")
    parser.add_argument("--device", default="cpu", help="torch device for fisher_core")
    parser.add_argument("--fv-large", action=argparse.BooleanOptionalAction, default=None,
                        help="row 4 (2M descriptors, K = 256); default: on unless the CPU")
    parser.add_argument("--gmm-large", action=argparse.BooleanOptionalAction, default=None,
                        help="row 5 (GMM 1M × 64, K = 256); default: on unless the CPU")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    device = torch.device(args.device)
    if args.quick:
        enc, fit, repeats = (40, 200, 32, 16), (5_000, 32, 16), 1
        large = ((40, 500, 64, 256), (20_000, 64, 256))
    else:
        enc, fit, repeats = (200, 500, 64, 64), (50_000, 64, 64), 5
        large = ((4_000, 500, 64, 256), (1_000_000, 64, 256))
    repeats = args.repeats or repeats
    on_gpu = device.type != "cpu"
    fv_large = on_gpu if args.fv_large is None else args.fv_large
    gmm_large = on_gpu if args.gmm_large is None else args.gmm_large

    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    sk_rate, our_rate, max_err, gemm = bench_encoding(*enc, repeats, device)
    gmm_result = bench_gmm(*fit, 1 if args.quick else args.seeds, device)
    fv_large_result = bench_fv_large(*large[0], repeats, device) if fv_large else None
    gmm_large_result = bench_gmm_large(*large[1], device) if gmm_large else None

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), sklearn "
          f"{sklearn.__version__}, scikit-image {skimage.__version__}, fisher_core on "
          f"{device} ({where}), best of {repeats}")
    print(f"FV agreement with scikit-image (σ sign flipped): max |diff| = {max_err:.1e}\n")
    print("| benchmark | peer | peer result | fisher_core | ratio | target | met |")
    print("|---|---|---|---|---|---|---|")
    print_encoding_rows(enc, sk_rate, our_rate, gemm)
    print_gmm_rows(fit, gmm_result)
    print_large_rows(fv_large_result, gmm_large_result, large)


if __name__ == "__main__":
    main()
