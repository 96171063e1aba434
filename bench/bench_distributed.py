"""Sharded extraction (issue 20): a 2-worker Dask LocalCluster against 1 worker, same shards.

    python bench/bench_distributed.py [--n 2000] [--shard 250] [--workdir /tmp/fisherlab-dist]

Trains (once, cached in ``--workdir``) the default PixelCNN on the built-in faces for one
epoch, then extracts Fisher scores (sparse 512, centred, diagonal FIM) of ``--n`` faces with
:func:`fisher_core.workspace.distributed_fisher_scores` on a LocalCluster of 1 and of 2
worker processes (one torch thread each), in ``--rounds`` interleaved rounds (the machine is
shared: both clusters see the same load; medians reported, and each round's ratio), and in
this process with ``fisher_score_embedding`` (one thread). Reports wall time, throughput,
the 2-vs-1 ratio
(target ≥ 1.7× on this 2-core machine), the largest difference from the single-process
vectors, and the overhead: cluster start-up, and per shard the model load and transfer
(a 1-row task's time) as a share of a shard's time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def _alone(args: tuple[str, int, int]) -> float:
    """Seconds of one single-thread process scoring faces ``[a, b)`` (the reference)."""
    workdir, a, b = args
    import torch

    from fisher_core.data import load_builtin
    from fisher_core.embeddings import fisher_score_embedding
    from fisher_core.workspace import Workspace, load_saved_model

    torch.set_num_threads(1)
    model, _ = load_saved_model(Workspace(Path(workdir)), "faces-px")
    x = load_builtin("faces").images[a:b]
    fisher_score_embedding(model, x[:64])  # warm
    t0 = time.perf_counter()
    fisher_score_embedding(model, x)
    return time.perf_counter() - t0


def machine_scaling(workdir: str, n: int) -> float:
    """Throughput of two independent single-thread processes (half the rows each) over one
    process doing all of them: what this machine gives two processes, with no Dask."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(2) as pool:
        one = pool.map(_alone, [(workdir, 0, n)])[0]
        two = max(pool.map(_alone, [(workdir, 0, n // 2), (workdir, n // 2, n)]))
    return one / two


def main() -> None:
    from fisher_core.data import load_builtin
    from fisher_core.embeddings import fisher_score_embedding
    from fisher_core.workspace import (
        EntryError,
        Workspace,
        distributed_fisher_scores,
        load_saved_model,
        train_and_save,
    )

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--shard", type=int, default=250)
    p.add_argument("--workdir", default="/tmp/fisherlab-dist")
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved rounds of the 1- and 2-worker runs (medians reported)")
    args = p.parse_args()
    torch.set_num_threads(1)
    ws = Workspace(Path(args.workdir))
    ds = load_builtin("faces")
    try:
        model, _ = load_saved_model(ws, "faces-px")
    except EntryError:
        model = train_and_save(ds, "pixelcnn", epochs=1, workspace=ws, name="faces-px",
                               dataset_key="faces", monitor=False).model
    x = ds.images[: args.n]
    t0 = time.perf_counter()
    ref = fisher_score_embedding(model, x).vectors
    single = time.perf_counter() - t0
    rows = [("this process (1 thread)", single, 0.0)]
    from distributed import Client, LocalCluster

    clusters = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
        client.run(lambda: __import__("fisher_core.workspace"))  # imports, once per worker
        # warm every worker (model loaded, first batches run): two 1-row tasks per worker
        distributed_fisher_scores(ws, "faces-px", x[:2 * workers], shard_size=1, client=client)
        clusters[workers] = (cluster, client, time.perf_counter() - t0)
    times: dict[int, list[float]] = {1: [], 2: []}
    vectors, tiny = {}, {}
    for _ in range(args.rounds):  # interleaved: both see the same machine load
        for workers, (_, client, _) in clusters.items():
            t0 = time.perf_counter()
            emb = distributed_fisher_scores(ws, "faces-px", x, shard_size=args.shard,
                                            client=client)
            times[workers].append(time.perf_counter() - t0)
            vectors[workers] = emb.vectors
    for workers, (cluster, client, start) in clusters.items():
        t1 = time.perf_counter()
        distributed_fisher_scores(ws, "faces-px", x[:workers], shard_size=1, client=client)
        tiny[workers] = time.perf_counter() - t1
        client.close()
        cluster.close()
        rows.append((f"LocalCluster, {workers} worker(s), median of {args.rounds}",
                     float(np.median(times[workers])), start))
    results = {w: (float(np.median(times[w])), vectors[w], tiny[w]) for w in clusters}
    machine = float(np.median([machine_scaling(args.workdir, args.n)
                               for _ in range(max(1, args.rounds // 2))]))
    n_params = sum(q.numel() for q in model.parameters())
    print(f"\n{args.n:,} faces 32×32, default PixelCNN ({n_params:,} parameters), sparse 512, "
          f"shards of {args.shard}\n")
    print("| run | wall s | examples/s | cluster start s |")
    print("|---|---:|---:|---:|")
    for name, secs, start in rows:
        print(f"| {name} | {secs:.1f} | {args.n / secs:,.0f} | {start:.1f} |")
    ratio = results[1][0] / results[2][0]
    shards = -(-args.n // args.shard)
    per_shard = results[2][0] / (shards / 2)
    diff = max(np.abs(v - ref).max() for _, v, _ in results.values())
    per_round = [a / b for a, b in zip(times[1], times[2], strict=True)]
    print("\nper round (1-worker time / 2-worker time): "
          + ", ".join(f"{r:.2f}×" for r in per_round))
    print(f"\n2 workers vs 1 (medians): **{ratio:.2f}×** (target ≥ 1.7×); max |difference| "
          f"from the single-process vectors: {diff:.1e}"
          f"; a task of one row (model cached, transfer, scheduling, the driver's centring) "
          f"{results[2][2]:.2f} s = {100 * results[2][2] / per_shard:.0f} % of a "
          f"{args.shard}-row shard's {per_shard:.1f} s")
    print(f"\nthe machine itself: two independent single-thread processes (half the rows each, "
          f"no Dask) against one doing all of them: {machine:.2f}× (median); Dask reaches "
          f"{ratio / machine:.0%} of it")


if __name__ == "__main__":
    main()
