"""Sharded extraction (issue 20): a 2-worker Dask LocalCluster against 1 worker, same shards.

    python bench/bench_distributed.py [--n 2000] [--shard 250] [--workdir /tmp/fisherlab-dist]

Trains (once, cached in ``--workdir``) the default PixelCNN on the built-in faces for one
epoch, then extracts Fisher scores (sparse 512, centred, diagonal FIM) of ``--n`` faces with
:func:`fisher_core.workspace.distributed_fisher_scores` on a LocalCluster of 1 and of 2
worker processes (one torch thread each), and in this process with
``fisher_score_embedding`` (one thread). Reports wall time, throughput, the 2-vs-1 ratio
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

    results = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
        client.run(lambda: __import__("fisher_core.workspace"))  # imports, once per worker
        start = time.perf_counter() - t0
        distributed_fisher_scores(ws, "faces-px", x[:1], shard_size=1, client=client)  # warm
        t0 = time.perf_counter()
        emb = distributed_fisher_scores(ws, "faces-px", x, shard_size=args.shard,
                                        client=client)
        elapsed = time.perf_counter() - t0
        t1 = time.perf_counter()
        distributed_fisher_scores(ws, "faces-px", x[:workers], shard_size=1, client=client)
        tiny = time.perf_counter() - t1
        client.close()
        cluster.close()
        results[workers] = (elapsed, emb.vectors, tiny)
        rows.append((f"LocalCluster, {workers} worker(s)", elapsed, start))
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
    print(f"\n2 workers vs 1: **{ratio:.2f}×** (target ≥ 1.7×); max |difference| from the "
          f"single-process vectors: {diff:.1e}"
          f"; a task of one row (model cached, transfer, scheduling, the driver's centring) "
          f"{results[2][2]:.2f} s = {100 * results[2][2] / per_shard:.0f} % of a "
          f"{args.shard}-row shard's {per_shard:.1f} s")


if __name__ == "__main__":
    main()
