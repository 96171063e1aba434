"""Fisher-score extraction sharded over a Dask cluster (issue 20).

The dataset is cut into shards of consecutive rows; each Dask worker loads the saved model
once from the shared workspace, computes the raw projected scores ``u = Rᵀ ∇θ log p(x)`` of
its shards (the projection is rebuilt from its seed, the same on every worker), and the
client gathers them in dataset order. Centring and the diagonal Fisher information are
statistics of *all* rows, so they are applied once the shards are back, exactly as the
single-process :func:`~fisher_core.embeddings.fisher_score_embedding` applies them: the
result equals the single-process one to float32 round-off.

Dask's own machinery does the work (``distributed.Client``, futures, ``as_completed``); a
``LocalCluster`` of worker processes (one thread each, bound to 127.0.0.1) is started when no
client or scheduler address is given.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from ..embeddings.embedding import Embedding

__all__ = ["distributed_fisher_scores"]

_MODELS: dict[tuple[str, str, str], Any] = {}  # per worker process: the model, loaded once


def _roomy_malloc() -> None:
    """Undo Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` for this worker's big tensors.

    Dask's nanny starts workers with that setting (to hand memory back to the OS quickly);
    it also fixes glibc's mmap threshold, so every large temporary of the per-example engine
    is mapped and unmapped afresh: 3.2× slower scores (8.1 s against 2.5 s for 500 faces,
    one thread). Raising both thresholds (glibc's ``mallopt``) restores the speed.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to undo
        return
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: allocations below 32 MiB from the heap
    libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: keep up to 256 MiB of freed heap


def _shard_scores(root: str, model_name: str, version: str, images: np.ndarray,
                  options: dict[str, Any], topic: str | None = None,
                  shard: int = 0) -> np.ndarray:
    """On a worker: raw projected scores of one shard (no centring, scaling or norms).

    With a ``topic``, the examples done so far in this shard are logged to it after every
    batch (``Worker.log_event``), for the client's progress bar."""
    import torch
    from distributed import get_worker

    from ..fisher import fisher_scores
    from .runs import load_saved_model
    from .store import Workspace

    torch.set_num_threads(1)
    key = (root, model_name, version)
    if key not in _MODELS:
        _roomy_malloc()
        _MODELS.clear()
        _MODELS[key] = load_saved_model(Workspace(root), model_name)[0]
    def tell(done: int, total: int | None) -> None:
        get_worker().log_event(topic, {"shard": shard, "done": done})

    return fisher_scores(_MODELS[key], images, normalize=None, center=False,
                         progress=tell if topic else None, **options)


class _LiveProgress:
    """Examples done per shard, from the workers' events (a client thread) and finished
    shards (the caller's thread), reported as one increasing fraction."""

    def __init__(self, n: int, report: Callable[[float, str], None]) -> None:
        self.n, self.report, self.done = n, report, {}
        self.lock, self.shown = threading.Lock(), 0

    def event(self, event: tuple[float, dict]) -> None:
        msg = event[1]
        self._update(msg["shard"], msg["done"])

    def shard_done(self, shard: int, rows: int) -> None:
        self._update(shard, rows)

    def _update(self, shard: int, done: int) -> None:
        with self.lock:
            self.done[shard] = max(done, self.done.get(shard, 0))
            total = sum(self.done.values())
            if total > self.shown:  # events may arrive late, after their shard finished
                self.shown = total
                self.report(0.95 * total / self.n, f"{total:,}/{self.n:,} examples")


def _client(client: Any, scheduler: str | None, n_workers: int):
    """(client, things to close): the one given, one to ``scheduler``, or a local cluster."""
    from distributed import Client, LocalCluster

    if client is not None:
        return client, []
    if scheduler is not None:
        c = Client(scheduler)
        return c, [c]
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    c = Client(cluster)
    return c, [c, cluster]


def distributed_fisher_scores(
    workspace: Any,
    model_name: str,
    images: np.ndarray,
    *,
    dim: int | None = 512,
    projection: str | None = "sparse",
    normalize: str | None = "fim_diag",
    center: bool = True,
    power: float | None = None,
    l2: bool = False,
    batch_size: int = 64,
    seed: int = 0,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int = 2,
    shard_size: int | None = None,
    dataset_key: str = "",
    progress: Callable[[float, str], None] | None = None,
) -> Embedding:
    """:func:`~fisher_core.embeddings.fisher_score_embedding` of a saved model, sharded over
    Dask workers.

    Parameters
    ----------
    workspace : Workspace
        Where ``model_name`` is saved; every worker must see this folder (a local cluster
        does; on a real cluster, a shared file system).
    model_name : str
    images : ndarray of shape (N, C, H, W)
    dim, projection, normalize, center, power, l2, batch_size, seed
        As in :func:`~fisher_core.embeddings.fisher_score_embedding`; ``normalize`` is
        None or ``"fim_diag"`` (the exact parameter-space variant needs every gradient in
        one process).
    client : distributed.Client, optional
        Use this client's cluster.
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``), when no client is given.
    n_workers : int, default=2
        Worker processes of the local cluster started when neither is given.
    shard_size : int or None, default=None
        Rows per task; ``None``: about four tasks per worker, whole batches.
    dataset_key : str, default=""
        Recorded in the embedding.
    progress : callable(fraction, message) or None, default=None
        Called as shards come back.

    Returns
    -------
    Embedding
        kind ``"fisher"``, equal to the single-process embedding to float32 round-off for a
        deterministic ``log_prob`` (PixelCNN, a GAN's D); a stochastic one (a VAE's ELBO)
        draws different noise on each worker.
    """
    from ..embeddings.deep import score_embedding
    from ..fisher import FisherScorer
    from .runs import load_saved_model

    if normalize not in (None, "fim_diag"):
        raise ValueError(f"normalize={normalize!r} cannot be sharded (it needs every "
                         "parameter-space gradient in one process); use None or 'fim_diag', "
                         "or the single-process fisher_score_embedding.")
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive integer; got {n_workers!r}.")
    images = np.asarray(images, dtype=np.float32)
    n = len(images)
    model, _ = load_saved_model(workspace, model_name)  # checks it exists, and for the maths
    version = workspace.entry("models", model_name).path.name
    options = {"dim": dim, "projection": projection, "batch_size": batch_size, "seed": seed}
    report = progress or (lambda f, m: None)
    client, opened = _client(client, scheduler, n_workers)
    try:
        from distributed import as_completed

        workers = max(1, len(client.scheduler_info().get("workers", {})) or n_workers)
        size = shard_size or batch_size * max(1, math.ceil(n / (4 * workers * batch_size)))
        starts = list(range(0, n, size))
        report(0.0, f"{len(starts)} shards on {workers} worker(s)")
        topic = f"fisherlab-progress-{uuid.uuid4().hex[:8]}"
        live = _LiveProgress(n, report)
        client.subscribe_topic(topic, live.event)
        futures = {client.submit(_shard_scores, str(workspace.root), model_name, version,
                                 images[s:s + size], options, topic, s, pure=False): s
                   for s in starts}
        parts: dict[int, np.ndarray] = {}
        for future in as_completed(futures):
            parts[futures[future]] = future.result()
            live.shard_done(futures[future], len(parts[futures[future]]))
        client.unsubscribe_topic(topic)
    finally:
        for thing in opened:
            thing.close()
    raw = np.concatenate([parts[s] for s in starts])  # dataset order
    # centring and scaling: statistics of all rows, applied as the single process does
    scorer = FisherScorer(model, dim=dim, projection=projection, normalize=normalize,
                          center=center, power=power, l2=l2, batch_size=batch_size, seed=seed)
    vectors = scorer.fit_transform_raw(raw)
    report(1.0, "done")
    return score_embedding(vectors, dataset_key, model_name, dim=dim, projection=projection,
                           normalize=normalize, center=center, power=power, l2=l2, seed=seed,
                           sharded=len(starts))
