"""Decoders and FID feature extractors kept in the workspace, next to what they belong to.

- A decoder maps one saved embedding back to its images; it is stored as
  ``decoders/<embedding name>`` so that every page finds the decoder of an embedding by name.
- A domain feature extractor (the FID feature space and attribute judge of a dataset) is
  stored as ``extractors/<extractor_name(dataset key)>`` with the dataset key in its metadata;
  it is never used for another dataset. Its FID curves and edit scores are saved as
  ``results/fid-alpha-<same>`` and ``results/edits-<same>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..data.dataset import ImageDataset
from ..explore.decode import Decoder, train_decoder
from ..explore.decoder_io import load_decoder, save_decoder
from ..metrics.features import (
    DomainFeatureExtractor,
    load_feature_extractor,
    save_feature_extractor,
    train_feature_extractor,
)
from ..training.events import ProgressEvent
from .names import derived_name, legacy_clean
from .store import NAME_MAX, Entry, EntryError, Workspace, check_name

__all__ = [
    "decoded_embeddings",
    "edit_scores",
    "fid_curves",
    "extractor_entry",
    "extractor_name",
    "load_embedding_decoder",
    "load_extractor",
    "train_embedding_decoder",
    "train_extractor",
]


# Result names put these before the extractor's name; the longest must still fit in a name.
RESULT_PREFIXES = ("fid-alpha-", "edits-")
EXTRACTOR_NAME_MAX = NAME_MAX - max(len(p) for p in RESULT_PREFIXES)


def extractor_name(dataset_key: str) -> str:
    """Workspace name of a dataset's feature extractor (and, prefixed, of its results).

    The key itself when it is a valid name of at most 70 characters (so that
    ``fid-alpha-<name>`` fits in 80); otherwise a readable prefix and a hash of the whole key,
    so that distinct keys never share an extractor (see :func:`.names.derived_name`).
    """
    return derived_name(dataset_key, limit=EXTRACTOR_NAME_MAX, fallback="dataset")


def _legacy_extractor_name(dataset_key: str) -> str:
    """The name FisherLab gave extractors before names were hashed (cut at 80, may collide)."""
    return legacy_clean(dataset_key).strip("-.")[:80] or "dataset"


def extractor_entry(workspace: Workspace, dataset_key: str) -> Entry | None:
    """The saved feature extractor of ``dataset_key``, or None when it has none.

    Also finds one saved by an older FisherLab under the name it used then, unless its
    metadata says it was trained for another dataset.
    """
    try:
        return _extractor(workspace, dataset_key, load=False)[0]
    except (EntryError, ValueError, OSError):
        return None


def train_embedding_decoder(
    workspace: Workspace,
    embedding_name: str,
    ds: ImageDataset,
    *,
    callback: Callable[[ProgressEvent], None] | None = None,
    cancel: Any = None,
    **options: Any,
) -> tuple[Decoder, dict[str, Any]]:
    """Train a decoder from saved embedding ``embedding_name`` to the images of ``ds``.

    The decoder is saved as ``decoders/<embedding_name>`` with its held-out reconstruction
    error and its architecture; ``options`` go to
    :func:`fisher_core.explore.decode.train_decoder` (e.g. ``architecture="pixelcnn"`` for a
    generative decoder).

    Returns
    -------
    decoder : Decoder
    metrics : dict
        Held-out reconstruction errors, sizes and training time.
    """
    emb = workspace.load_embedding(embedding_name)
    if emb.n != len(ds):
        raise ValueError(f"embedding {embedding_name!r} has {emb.n} rows but the dataset has "
                         f"{len(ds)} images; load the dataset it was computed on.")
    result = train_decoder(emb.vectors, ds.images, levels=ds.levels, callback=callback,
                           cancel=cancel, **options)
    metrics = {k: float(v) for k, v in result.metrics.items()}
    metrics["epochs"] = result.train_result.epochs_completed
    meta = {"embedding": embedding_name, "dataset": emb.dataset, "metrics": metrics,
            "architecture": result.decoder.config.architecture}
    with workspace.writer("decoders", embedding_name, meta) as folder:
        save_decoder(result.decoder, folder, metrics=metrics)
    return result.decoder, metrics


def load_embedding_decoder(workspace: Workspace, embedding_name: str) -> Decoder | None:
    """The saved decoder of ``embedding_name``, or None when it has none (or it is unreadable)."""
    try:
        return workspace.read("decoders", embedding_name, lambda e: load_decoder(e.path))
    except (EntryError, ValueError, OSError):
        return None


def decoded_embeddings(workspace: Workspace, dataset_key: str) -> dict[str, dict[str, Any]]:
    """{embedding name: decoder metrics} for the embeddings of ``dataset_key`` with a decoder.

    Each dict also holds ``"architecture"`` (``"direct"`` for decoders saved before there was a
    choice).
    """
    out = {}
    for e in workspace.list("decoders"):
        if e.meta.get("dataset") == dataset_key and workspace.exists("embeddings", e.name):
            out[e.name] = {**e.meta.get("metrics", {}),
                           "architecture": e.meta.get("architecture", "direct")}
    return out


def train_extractor(
    workspace: Workspace,
    ds: ImageDataset,
    dataset_key: str,
    *,
    callback: Callable[[ProgressEvent], None] | None = None,
    cancel: Any = None,
    **options: Any,
) -> tuple[DomainFeatureExtractor, dict[str, Any]]:
    """Train and save the domain feature extractor of a dataset (FID features, attributes).

    Saved as ``extractors/<extractor_name(dataset_key)>``, recording ``dataset_key``.
    """
    name = extractor_name(dataset_key)
    result = train_feature_extractor(ds, callback=callback, cancel=cancel, **options)
    metrics = {k: (float(v) if isinstance(v, (int, float)) else v)
               for k, v in result.metrics.items()}
    meta = {"dataset": dataset_key, "metrics": metrics}
    with workspace.writer("extractors", name, meta) as folder:
        save_feature_extractor(result.extractor, folder, metrics=metrics)
    return result.extractor, metrics


def load_extractor(workspace: Workspace, dataset_key: str) -> DomainFeatureExtractor | None:
    """The saved feature extractor of ``dataset_key``, or None (none saved for this dataset,
    or unreadable). An extractor recorded as trained for another dataset is never returned."""
    try:
        return _extractor(workspace, dataset_key, load=True)[1]
    except (EntryError, ValueError, OSError):
        return None


def _extractor(workspace: Workspace, dataset_key: str, *, load: bool
               ) -> tuple[Entry | None, DomainFeatureExtractor | None]:
    """(entry, extractor or None unless ``load``) of ``dataset_key``; (None, None) if none.

    Raises
    ------
    EntryError
        The extractor found under the dataset's name was trained for another dataset.
    """
    def check(e: Entry) -> tuple[Entry, DomainFeatureExtractor | None]:
        made_for = e.meta.get("dataset")
        if made_for is not None and made_for != dataset_key:  # older ones record nothing
            raise EntryError(
                f"extractors/{e.name} was trained for dataset {made_for!r}, not "
                f"{dataset_key!r}; train a feature extractor for this dataset "
                "(train_extractor, or the button on the Metrics page).")
        return e, (load_feature_extractor(e.path) if load else None)

    for name in dict.fromkeys([extractor_name(dataset_key),
                               _legacy_extractor_name(dataset_key)]):
        try:
            check_name(name)
        except EntryError:
            continue  # an old name that was never valid: nothing saved under it
        if workspace.exists("extractors", name):
            return workspace.read("extractors", name, check)
    return None, None


def fid_curves(
    workspace: Workspace,
    ds: ImageDataset,
    dataset_key: str,
    names: list[str],
    *,
    n_pairs: int = 200,
    alphas: Any = None,
    method: str = "linear",
    seed: int = 0,
    repeats: int = 3,
    progress: Callable[[float, str], None] | None = None,
) -> list[dict[str, Any]]:
    """FID-vs-α rows (space, kind, alpha, fid, fid_std, extractor) for decoded embeddings
    ``names``: the mean and spread over ``repeats`` draws of ``n_pairs`` pairs.

    Uses the dataset's saved feature extractor (train one with :func:`train_extractor`); the
    rows are also saved as ``results/fid-alpha-<extractor_name(dataset_key)>``. Every name is
    checked before the computation starts.
    """
    import numpy as np

    from ..metrics.evaluate import fid_vs_alpha

    result = check_name(f"fid-alpha-{extractor_name(dataset_key)}")  # before any work
    extractor = _require_extractor(workspace, dataset_key)
    _require_spaces(workspace, names)
    alphas = np.linspace(0.0, 1.0, 11) if alphas is None else alphas
    rows: list[dict[str, Any]] = []
    for k, name in enumerate(names):
        emb, dec = workspace.load_embedding(name), _require_decoder(workspace, name)
        sub = _stage(progress, k, len(names), name)
        out = fid_vs_alpha(emb.vectors, dec, ds.images, extractor, n_pairs=n_pairs,
                           alphas=alphas, method=method, seed=seed, repeats=repeats,
                           progress=sub)
        rows += [{"space": name, "kind": emb.kind, "alpha": a, "fid": f, "fid_std": sd,
                  "extractor": out["extractor"], "n_pairs": n_pairs, "repeats": repeats}
                 for a, f, sd in zip(out["alphas"], out["fid"], out["fid_std"], strict=True)]
    workspace.save_result(result, {"rows": rows})
    return rows


def edit_scores(
    workspace: Workspace,
    ds: ImageDataset,
    dataset_key: str,
    names: list[str],
    *,
    attribute: str,
    strengths: tuple[float, ...] = (1.0, 3.0, 5.0),
    n_sources: int = 200,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Attribute-edit success and preservation per space and strength (judged by the dataset's
    feature extractor's attribute heads).

    Returns this call's rows. They are merged into
    ``results/edits-<extractor_name(dataset_key)>``: rows saved earlier for other (space,
    attribute) pairs are kept, those for the same pairs replaced, so scoring one attribute
    after another builds up the whole table. Every name is checked before any computation.
    """
    from ..metrics.evaluate import attribute_edit_scores

    if attribute not in ds.attribute_names:
        raise ValueError(f"attribute must be one of {ds.attribute_names}; got {attribute!r}.")
    result = check_name(f"edits-{extractor_name(dataset_key)}")  # before any work
    extractor = _require_extractor(workspace, dataset_key)
    _require_spaces(workspace, names)
    rows: list[dict[str, Any]] = []
    for k, name in enumerate(names):
        emb, dec = workspace.load_embedding(name), _require_decoder(workspace, name)
        out = attribute_edit_scores(
            emb.vectors, ds.attributes, dec, extractor,
            attribute=ds.attribute_names.index(attribute), strengths=strengths,
            n_sources=n_sources, attribute_names=ds.attribute_names, seed=seed,
            progress=_stage(progress, k, len(names), name))
        rows += [{"space": name, "kind": emb.kind, **r} for r in out]
    try:
        earlier = workspace.load_result(result)[0].get("rows", [])
    except EntryError:
        earlier = []
    fresh = {(r["space"], r["attribute"]) for r in rows}
    kept = [r for r in earlier if (r.get("space"), r.get("attribute")) not in fresh]
    workspace.save_result(result, {"rows": kept + rows})
    return rows


def _require_extractor(workspace: Workspace, dataset_key: str) -> DomainFeatureExtractor:
    try:
        extractor = _extractor(workspace, dataset_key, load=True)[1]
    except EntryError:
        raise  # trained for another dataset: say whose it is
    except (ValueError, OSError):
        extractor = None
    if extractor is None:
        raise ValueError("this dataset has no feature extractor yet; train one first "
                         "(train_extractor, or the button on the Metrics page).")
    return extractor


def _require_spaces(workspace: Workspace, names: list[str]) -> None:
    """Every space has a saved embedding and a decoder: checked before any computation."""
    for name in names:
        workspace.entry("embeddings", name)  # EntryError: no embedding named …
        if not workspace.exists("decoders", name):
            raise ValueError(f"embedding {name!r} has no decoder; train one first.")


def _require_decoder(workspace: Workspace, name: str) -> Decoder:
    dec = load_embedding_decoder(workspace, name)
    if dec is None:
        raise ValueError(f"embedding {name!r} has no decoder; train one first.")
    return dec


def _stage(progress, k: int, n: int, name: str):
    if progress is None:
        return None
    return lambda f, m: progress((k + f) / n, f"{name}: {m}")
