"""Chunked, resumable extraction of embeddings into the workspace (issue 20).

An extraction reads the dataset a chunk of images at a time (:class:`~.rows.DatasetRows`),
computes that chunk's rows and writes them as one part file, atomically, in a staging folder
of the workspace (``.partial/<name>-<spec>/part-000123.npy``). Memory is one chunk, whatever
the number of images. A run that is interrupted (killed, out of power, Ctrl-C) leaves the
parts it finished; the same call again (same dataset version, model version and settings:
they name the staging folder) skips them and goes on from the first missing one. Only when
every part is there are they joined, streamed into one ``vectors.npy``, and committed as the
embedding in one atomic step: a half-written embedding is never live.

Kinds whose rows depend on statistics of all rows do it in two passes over the parts:
Fisher scores are extracted raw (projected, before centring and the diagonal FIM), the
statistics are accumulated chunk by chunk, and the final rows are written chunk by chunk,
exactly as :func:`~fisher_core.embeddings.fisher_score_embedding` computes them in memory.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..embeddings.embedding import Embedding
from ..utils.io import NpyRows, NpyWriter, atomic_write, atomic_write_json, read_json
from .rows import DatasetRows

__all__ = ["CHUNKED_KINDS", "ArrayRows", "chunked_embedding", "partial_folder"]

CHUNKED_KINDS = ("pixels", "activations", "fisher_vector", "fisher_scores")
Progress = Callable[[float, str], None]


class ArrayRows:
    """An in-memory image array behind the :class:`~.rows.DatasetRows` interface (for
    built-in datasets); ``version`` names the data for resuming."""

    def __init__(self, images: np.ndarray, version: str) -> None:
        self.images, self.version = images, version
        self.n, self.shape = len(images), tuple(images.shape[1:])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` as float32."""
        return np.asarray(self.images[start:stop], dtype=np.float32)


def partial_folder(workspace: Any, name: str, spec: dict[str, Any]) -> Path:
    """The staging folder of an extraction: named after the embedding and a hash of ``spec``
    (dataset and model versions, kind, settings, chunk size), so that only the same
    extraction resumes from it."""
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode())
    return Path(workspace.root) / ".partial" / f"{name}-{digest.hexdigest()[:12]}"


def _forget_stale(workspace: Any, name: str, keep: Path) -> None:
    """Remove staging folders of earlier extractions of ``name`` that can never resume: the
    dataset or model version they were reading is no longer the live one."""
    pattern = re.compile(re.escape(name) + r"-[0-9a-f]{12}")
    for folder in (Path(workspace.root) / ".partial").glob(f"{name}-*"):
        if folder == keep or not pattern.fullmatch(folder.name):
            continue
        try:
            spec = read_json(folder / "spec.json")
        except (OSError, ValueError):
            continue  # being created right now, or not ours: left alone
        data, _, version = str(spec.get("data", "")).rpartition("@")
        stale = bool(data) and _live_version(workspace, "datasets", data) != version
        if spec.get("model") and spec.get("model_version"):
            stale = stale or (_live_version(workspace, "models", spec["model"])
                              != spec["model_version"])
        if stale:
            shutil.rmtree(folder, ignore_errors=True)


def _live_version(workspace: Any, kind: str, name: str) -> str | None:
    try:
        return workspace.entry(kind, name).path.name
    except ValueError:  # EntryError: gone, corrupt, or not a valid name
        return None


def _chunk_fn(kind: str, model: Any, options: dict[str, Any]) -> Callable[[np.ndarray, int],
                                                                          Any]:
    """``f(images, chunk_index)``: the chunk's :class:`Embedding` as the in-memory producer
    of ``kind`` makes it, or for Fisher scores the raw projected scores (an array)."""
    if kind == "pixels":
        return lambda x, i: Embedding(x.reshape(len(x), -1), "", "pixels",
                                      params={"shape": list(x.shape[1:])})
    if kind == "activations":
        from ..embeddings import activation_embedding

        return lambda x, i: activation_embedding(model, x, pool=options.get("pool", "mean"),
                                                 layer=options.get("layer"))
    if kind == "fisher_vector":
        from ..embeddings import patch_gmm_embedding

        if options.get("normalization", "analytic") == "empirical" or options.get("whiten"):
            raise ValueError("chunked Fisher vectors take normalization 'analytic' or 'none' "
                             "without whitening (those steps learn from all rows at once); "
                             "compute the embedding in memory for them.")
        return lambda x, i: patch_gmm_embedding(
            model, x, normalization=options.get("normalization", "analytic"),
            power=options.get("power", 0.5), l2=options.get("l2", True))
    if kind == "fisher_scores":
        import torch

        from ..fisher import fisher_scores

        def raw(x: np.ndarray, i: int) -> np.ndarray:
            was_training = model.training
            model.eval()
            try:  # a stochastic log_prob draws its noise from a per-chunk seed
                with torch.random.fork_rng():
                    torch.manual_seed(options.get("seed", 0) + i)
                    return fisher_scores(model, x, dim=options.get("dim", 512),
                                         projection=options.get("projection", "sparse"),
                                         normalize=None, center=False,
                                         batch_size=options.get("batch_size", 64),
                                         seed=options.get("seed", 0))
            finally:
                model.train(was_training)
        return raw
    raise ValueError(f"kind must be one of {CHUNKED_KINDS}; got {kind!r}.")


def chunked_embedding(
    workspace: Any,
    name: str,
    rows: DatasetRows | ArrayRows,
    kind: str,
    *,
    model: Any = None,
    model_name: str | None = None,
    options: dict[str, Any] | None = None,
    chunk_rows: int = 2048,
    dataset_key: str = "",
    progress: Progress | None = None,
) -> Embedding:
    """Compute an embedding chunk by chunk into the workspace; resumes an interrupted run.

    Parameters
    ----------
    workspace : Workspace
    name : str
        Embedding name to save (an existing one is replaced when the run completes).
    rows : DatasetRows or ArrayRows
        The images, read a chunk at a time (:meth:`Workspace.dataset_rows`).
    kind : {"pixels", "activations", "fisher_vector", "fisher_scores"}
    model : nn.Module or PatchGMM, optional
        Required except for pixels (``fisher_vector``: a trained patch GMM).
    model_name : str, optional
        Its workspace name; its saved version is part of what a resume must match.
    options : dict, optional
        ``fisher_scores``: dim, projection, normalize (None or "fim_diag"), center, power,
        l2, batch_size, seed. ``fisher_vector``: normalization ("analytic" or "none"),
        power, l2. ``activations``: pool, layer.
    chunk_rows : int, default=2048
        Images per part: memory is about one chunk; a kill loses at most one chunk.
    dataset_key : str
        Recorded in the embedding.
    progress : callable(fraction, message), optional

    Returns
    -------
    Embedding
        The saved embedding, its vectors memory-mapped from the workspace.
    """
    options = dict(options or {})
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer; got {chunk_rows!r}.")
    if kind != "pixels" and model is None:
        raise ValueError(f"a {kind} embedding needs a model; pass model=.")
    if kind == "fisher_scores" and options.get("normalize", "fim_diag") not in (None,
                                                                                "fim_diag"):
        raise ValueError(f"normalize={options['normalize']!r} cannot be chunked (it needs "
                         "every parameter-space gradient at once); use None or 'fim_diag'.")
    report = progress or (lambda f, m: None)
    compute = _chunk_fn(kind, model, options)
    model_version = None
    if model_name is not None and workspace.exists("models", model_name):
        model_version = workspace.entry("models", model_name).path.name
    spec = {"kind": kind, "data": rows.version, "model": model_name, "model_version":
            model_version, "options": options, "chunk_rows": chunk_rows}
    stage = partial_folder(workspace, name, spec)
    _forget_stale(workspace, name, keep=stage)
    stage.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stage / "spec.json", spec)
    starts = list(range(0, rows.n, chunk_rows))
    parts = [stage / f"part-{i:06d}.npy" for i in range(len(starts))]
    done = sum(p.exists() for p in parts)
    if done:
        report(0.0, f"resuming: {done} of {len(parts)} chunks already written")
    two_pass = kind == "fisher_scores"
    share = 0.9 if two_pass else 0.97
    for i, (start, part) in enumerate(zip(starts, parts, strict=True)):
        if part.exists():
            continue
        block = compute(rows.read(start, start + chunk_rows), i)
        block = block if two_pass else block.vectors
        atomic_write(part, lambda fh, b=block: np.save(fh, np.asarray(b, np.float32),
                                                        allow_pickle=False))
        stop = min(rows.n, start + chunk_rows)
        report(share * stop / rows.n, f"{kind}: {stop:,}/{rows.n:,} images")
    finish = _scorer(model, options) if two_pass else None
    if finish is not None:
        report(share, "statistics of all rows (centre, diagonal Fisher information)")
        finish.fit_raw(NpyRows(p).read(0, len(NpyRows(p))) for p in parts)
    dim = NpyRows(parts[0]).shape[1]
    out = stage / "vectors.npy"
    with NpyWriter(out, (rows.n, dim), np.float32) as writer:
        for part in parts:
            block = np.load(part, allow_pickle=False)
            writer.write(finish.transform_raw(block) if finish is not None else block)
    vectors = np.load(out, mmap_mode="r", allow_pickle=False)
    if two_pass:
        emb = _score_record(vectors, dataset_key, model_name, options, chunk_rows)
    else:  # the record the in-memory producer writes (from one image), with every row
        emb = replace(compute(rows.read(0, 1), 0), vectors=vectors, dataset=dataset_key,
                      model=model_name if model is not None else None)
        emb.params = {**emb.params, "chunk_rows": chunk_rows}
    workspace.save_embedding_file(emb, name, out)
    shutil.rmtree(stage, ignore_errors=True)
    report(1.0, "done")
    return workspace.load_embedding(name)


def _scorer(model: Any, options: dict[str, Any]):
    """The FisherScorer that finishes raw scores (None when there is nothing to finish)."""
    from ..fisher import FisherScorer

    return FisherScorer(model, dim=options.get("dim", 512),
                        projection=options.get("projection", "sparse"),
                        normalize=options.get("normalize", "fim_diag"),
                        center=options.get("center", True), power=options.get("power"),
                        l2=options.get("l2", False), seed=options.get("seed", 0))


def _score_record(vectors: np.ndarray, dataset_key: str, model_name: str | None,
                  options: dict[str, Any], chunk_rows: int) -> Embedding:
    """The record :func:`~fisher_core.embeddings.fisher_score_embedding` writes."""
    from ..embeddings.deep import score_embedding

    return score_embedding(
        vectors, dataset_key, model_name, dim=options.get("dim", 512),
        projection=options.get("projection", "sparse"),
        normalize=options.get("normalize", "fim_diag"), center=options.get("center", True),
        power=options.get("power"), l2=options.get("l2", False), seed=options.get("seed", 0),
        chunk_rows=chunk_rows)
