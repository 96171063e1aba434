"""``fisherlab embed``: compute an embedding of a workspace dataset and save it."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from ..embeddings import (
    DESCRIPTOR_KINDS,
    KEYPOINT_PCA,
    Embedding,
    activation_embedding,
    afv_embedding,
    fisher_score_embedding,
    fisher_vector_embedding,
    latent_embedding,
    local_descriptor_embedding,
    local_embedding_name,
    patch_gmm_embedding,
    pixel_embedding,
)
from ..workspace import check_name, load_saved_model
from .cmd_train import check_device
from .common import CliError, Session, session, slug
from .ui import Bar, table

__all__ = ["FAMILIES", "register"]


class Kind(StrEnum):
    """What the vectors are."""

    fisher_vector = "fisher-vector"
    fisher_scores = "fisher-scores"
    afv = "afv"
    activations = "activations"
    latent = "latent"
    pixels = "pixels"
    vlad = "vlad"
    bow = "bow"


# The model families each deep kind takes (as the app offers them).
FAMILIES = {"fisher-scores": ("pixelcnn", "vae", "fvvae"), "afv": ("ebgan",),
            "activations": ("pixelcnn", "vae", "fvvae"), "latent": ("vae", "fvvae")}
# Kinds that take a saved model optionally: Fisher vectors reuse a trained patch GMM.
OPTIONAL_MODEL = {"fisher-vector": ("gmm",)}
# Which kinds each option applies to (an option given to another kind is an error).
APPLIES = {"model": (*FAMILIES, *OPTIONAL_MODEL), "dim": ("fisher-scores", "afv"),
           "projection": ("fisher-scores", "afv"), "normalize": ("fisher-scores", "afv"),
           "generator_samples": ("afv",), "whiten": ("fisher-vector",),
           "workers": ("fisher-scores",), "scheduler": ("fisher-scores",),
           "chunk_rows": ("fisher-scores", "fisher-vector", "activations", "pixels"),
           "center": ("fisher-scores",), "pool": ("activations",),
           "components": ("fisher-vector",), "patch": ("fisher-vector",),
           "stride": ("fisher-vector",), "pca": ("fisher-vector",),
           "normalization": ("fisher-vector",), "power": ("fisher-vector", "fisher-scores"),
           "l2": ("fisher-vector", "fisher-scores"), "fim_from": ("fisher-scores",),
           "fim_samples": ("fisher-scores",)}
# Local-descriptor baselines: VLAD and bag of words take the Fisher vector's descriptor
# options, and all three take --descriptors (dense patches, or SIFT / ORB keypoints).
LOCAL_KINDS = ("vlad", "bow")
_ENCODING = {"fisher-vector": "fisher", "vlad": "vlad", "bow": "bow"}
for _opt in ("components", "patch", "stride", "pca", "power", "l2"):
    APPLIES[_opt] = (*APPLIES[_opt], *LOCAL_KINDS)
APPLIES["descriptors"] = ("fisher-vector", *LOCAL_KINDS)
GPU_KINDS = ("fisher-scores", "afv")  # the model is moved; the library follows its device


def _check_options(kind: str, given: dict[str, Any]) -> None:
    for opt, value in given.items():
        if value is not None and kind not in APPLIES[opt]:
            kinds = APPLIES[opt]
            listed = kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} and {kinds[-1]}"
            raise CliError(f"--{opt.replace('_', '-')} applies to {listed} only, not {kind}.")


def _check_local(kind: str, given: dict[str, Any], o: dict[str, Any]) -> None:
    """Check --descriptors; keypoints take no patch grid, no trained GMM and no other FV
    normalisation than the analytic one, and PCA to 32 dimensions by default."""
    if o["descriptors"] not in DESCRIPTOR_KINDS:
        raise CliError(f"--descriptors {o['descriptors']}: choose dense, sift or orb.")
    if o["descriptors"] == "dense":
        return
    clash = [f"--{opt}" for opt in ("patch", "stride", "model", "normalization", "whiten")
             if given[opt] is not None]
    if clash:
        raise CliError(f"{', '.join(clash)}: dense descriptors only; --descriptors "
                       f"{o['descriptors']} detects keypoints (leave {', '.join(clash)} out).")
    if given["pca"] is None:
        o["pca"] = KEYPOINT_PCA


def _local(kind: str, ds, key: str, o: dict[str, Any], bar: Bar) -> Embedding:
    """VLAD, bag of words, or a Fisher vector of SIFT / ORB keypoints."""
    dense = o["descriptors"] == "dense"
    return local_descriptor_embedding(
        ds, descriptors=o["descriptors"], encoding=_ENCODING[kind],
        n_components=o["components"], pca=o["pca"] or None,
        patch=o["patch"] if dense else None, stride=o["stride"] if dense else None,
        power=0.5 if o["power"] else None, l2=o["l2"], random_state=o["seed"],
        dataset_key=key, progress=bar)


def _is_local(kind: str, o: dict[str, Any]) -> bool:
    return kind in LOCAL_KINDS or (kind == "fisher-vector" and o["descriptors"] != "dense")


def _either(items: tuple[str, ...]) -> str:
    """``"an ebgan"``, ``"a vae or fvvae"``, ``"a pixelcnn, vae or fvvae"``."""
    words = items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _model(sess: Session, kind: str, model: str | None, key: str):
    """Load the saved model a deep kind needs, after checking its family and dataset."""
    ws = sess.workspace()
    fams = FAMILIES.get(kind) or OPTIONAL_MODEL[kind]
    fitting = [e.name for e in ws.list("models")
               if e.meta.get("family") in fams and e.meta.get("dataset") == key]
    hint = (f"saved {'/'.join(fams)} models of {key}: {', '.join(fitting)}" if fitting else
            f"train one with '{sess.prog} train {fams[0]} --dataset {key.split(':', 1)[1]}'")
    if model is None:
        raise CliError(f"embed {kind} needs --model NAME, {_either(fams)} model ({hint}).")
    if not (ws.root / "models" / model).is_dir():
        raise CliError(f"no model named {model!r} in the workspace ({hint}).")
    entry = ws.entry("models", model)
    family, trained_on = entry.meta.get("family"), entry.meta.get("dataset")
    if family not in fams:
        raise CliError(f"embed {kind} needs {_either(fams)} model; {model!r} is a "
                       f"{family} ({hint}).")
    if trained_on != key:
        raise CliError(f"model {model!r} was trained on {trained_on!r}, not {key!r}; use a "
                       f"model of this dataset ({hint}).")
    return load_saved_model(ws, model)[0]


def _compute(kind: str, ds, key: str, o: dict[str, Any], model, model_name: str | None,
             bar: Bar, workspace: Any = None) -> Embedding:
    if _is_local(kind, o):
        return _local(kind, ds, key, o, bar)
    if kind == "pixels":
        return pixel_embedding(ds, dataset_key=key)
    fv = {"normalization": o["normalization"], "power": 0.5 if o["power"] else None,
          "l2": o["l2"], "whiten": o["whiten"] or None, "dataset_key": key, "progress": bar}
    if kind == "fisher-vector" and model is not None:  # the trained patch GMM, no refit
        return patch_gmm_embedding(model, ds.images, model_name=model_name, **fv)
    if kind == "fisher-vector":
        return fisher_vector_embedding(
            ds, n_components=o["components"], patch=o["patch"], stride=o["stride"],
            pca=o["pca"] or None, random_state=o["seed"], **fv)[0]
    common = {"dataset_key": key, "model_name": model_name, "progress": bar}
    exact = o["projection"] == "none"
    if kind == "fisher-scores" and (o["workers"] or o["scheduler"]):
        from ..workspace import distributed_fisher_scores

        if o["fim_from"] != "data":
            raise CliError("--fim-from samples: sharded extraction estimates the FIM on the "
                           "data; drop --workers / --scheduler or --fim-from.")
        try:
            return distributed_fisher_scores(
                workspace, model_name, ds.images, dim=None if exact else o["dim"],
                projection=None if exact else o["projection"],
                normalize=None if o["normalize"] == "none" else o["normalize"],
                center=o["center"], power=0.5 if o["power"] else None, l2=o["l2"],
                seed=o["seed"], n_workers=o["workers"] or 2, scheduler=o["scheduler"],
                dataset_key=key, progress=bar)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if kind == "fisher-scores":
        return fisher_score_embedding(model, ds.images, dim=None if exact else o["dim"],
                                      projection=None if exact else o["projection"],
                                      normalize=None if o["normalize"] == "none" else
                                      o["normalize"], center=o["center"], seed=o["seed"],
                                      power=0.5 if o["power"] else None, l2=o["l2"],
                                      fim_from=o["fim_from"], n_fim_samples=o["fim_samples"],
                                      **common)
    if kind == "afv":
        return afv_embedding(model, ds.images, dim=None if exact else o["dim"],
                             projection=None if exact else o["projection"],
                             normalize=o["normalize"], seed=o["seed"],
                             n_generator_samples=o["generator_samples"], **common)
    if kind == "activations":
        return activation_embedding(model, ds.images, pool=o["pool"], **common)
    return latent_embedding(model, ds.images, **common)


def _default_name(kind: str, dataset: str, model: str | None, o: dict[str, Any]) -> str:
    if _is_local(kind, o):
        return slug(local_embedding_name(
            dataset, o["descriptors"], _ENCODING[kind], o["components"], pca=o["pca"] or None,
            patch=o["patch"] if o["descriptors"] == "dense" else None,
            power=0.5 if o["power"] else None, l2=o["l2"]))
    return slug({
        "pixels": f"{dataset}-pixels",
        "fisher-vector": (f"{model}-fv" if model else
                          f"{dataset}-fv-k{o['components']}-p{o['patch']}")
                         + f"-{o['normalization']}{'-pow' if o['power'] else ''}"
                         f"{'-w' + str(o['whiten']) if o['whiten'] else ''}"
                         f"{'-l2' if o['l2'] else ''}",
        "fisher-scores": f"{model}-fisher-"
                         + ("exact" if o["projection"] == "none" else
                            f"{o['projection']}{o['dim']}") + f"-{o['normalize']}"
                         f"{'-c' if o['center'] else ''}"
                         f"{'-fims' + str(o['fim_samples']) if o['fim_from'] == 'samples' else ''}"
                         f"{'-pow' if o['power'] else ''}{'-l2' if o['l2'] else ''}",
        "afv": f"{model}-afv-"
               + ("exact" if o["projection"] == "none" else f"{o['projection']}{o['dim']}")
               + ("" if o["normalize"] == "fim_diag_exact" else "-fimproj")
               + ("" if o["generator_samples"] == 1024 else f"-g{o['generator_samples']}"),
        "activations": f"{model}-act-{o['pool']}",
        "latent": f"{model}-latent",
    }[kind])


def embed(
    ctx: typer.Context,
    kind: Annotated[Kind, typer.Argument(help="What to compute.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Workspace dataset name.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Saved model (deep "
                     "kinds: fisher-scores, afv, activations, latent; fisher-vector: a trained "
                     "gmm, reused instead of fitting one).", show_default=False)
                     ] = None,
    dim: Annotated[int | None, typer.Option(min=1, help="Projection dimension [512].",
                                            show_default=False)] = None,
    projection: Annotated[str | None, typer.Option(
        help="sparse, gaussian, kron, or none for exact Fisher scores (one column per "
        "parameter) [sparse].", show_default=False)] = None,
    fim_from: Annotated[str | None, typer.Option(
        help="Fisher scores: estimate the FIM and the mean score on the dataset (data) or on "
        "samples of the model (samples) [data].", show_default=False)] = None,
    fim_samples: Annotated[int | None, typer.Option(
        min=2, help="Fisher scores: model samples for --fim-from samples [256].",
        show_default=False)] = None,
    normalize: Annotated[str | None, typer.Option(
        help="Fisher scores: fim_diag or none [fim_diag]. AFV: fim_diag_exact (the paper's "
        "V, then projected) or fim_diag (project, then scale each coordinate) "
        "[fim_diag_exact].", show_default=False)] = None,
    generator_samples: Annotated[int | None, typer.Option(
        min=2, help="AFV: generator samples for the mean score and the FIM [1024].",
        show_default=False)] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Fisher scores: shard the extraction over a local Dask cluster of N "
        "worker processes (one thread each).", show_default=False)] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Fisher scores: shard over an existing Dask cluster (tcp://host:8786) whose "
        "workers see this workspace folder.", show_default=False)] = None,
    chunk_rows: Annotated[int | None, typer.Option(
        min=1, help="fisher-scores, fisher-vector (with --model), activations, pixels: read "
        "the dataset and write the vectors N images at a time (memory flat in the dataset's "
        "size); the same command again resumes an interrupted run.", show_default=False)
    ] = None,
    whiten: Annotated[int | None, typer.Option(
        min=0, help="Fisher vectors: PCA-whiten to this many dimensions before L2, 0 for "
        "none (probes refit it per fold) [0].", show_default=False)] = None,
    center: Annotated[bool | None, typer.Option(
        "--center/--no-center", help="Fisher scores: subtract the mean score [center].",
        show_default=False)] = None,
    pool: Annotated[str | None, typer.Option(
        help="Activations: mean, max, meanmax or none [mean].", show_default=False)] = None,
    components: Annotated[int | None, typer.Option(
        "--components", "-k", min=1, help="Fisher vectors: GMM components [16 for images of "
        "16 px or less, else 32].", show_default=False)] = None,
    patch: Annotated[int | None, typer.Option(min=1, help="Fisher vectors: patch size [3/6].",
                                              show_default=False)] = None,
    stride: Annotated[int | None, typer.Option(min=1, help="Fisher vectors: stride [1/2].",
                                               show_default=False)] = None,
    pca: Annotated[int | None, typer.Option(min=0, help="Fisher vectors: PCA dims of patches, "
                                            "0 for none [0/24].", show_default=False)] = None,
    normalization: Annotated[str | None, typer.Option(
        help="Fisher vectors: analytic, empirical or none [analytic].", show_default=False)
    ] = None,
    power: Annotated[bool | None, typer.Option(
        "--power/--no-power", help="Fisher vectors: power normalisation [power].",
        show_default=False)] = None,
    l2: Annotated[bool | None, typer.Option(
        "--l2/--no-l2", help="Fisher vectors: L2 normalisation [l2].", show_default=False)
    ] = None,
    descriptors: Annotated[str | None, typer.Option(
        help="fisher-vector, vlad, bow: local descriptors, dense (patches), sift or orb "
        "(keypoints on the image upsampled to 64 px, PCA to 32) [dense].",
        show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Projection / GMM seed.")] = 0,
    device: Annotated[str, typer.Option(help="Torch device (fisher-scores, afv).")] = "cpu",
    name: Annotated[str | None, typer.Option(help="Embedding name (default: from the "
                                             "settings, as the app names it).",
                                             show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a saved embedding of that name.")
                         ] = False,
) -> None:
    """Compute an embedding of a workspace dataset and save it."""
    sess = session(ctx)
    k = kind.value
    given = dict(model=model, dim=dim, projection=projection, normalize=normalize,
                 center=center, pool=pool, components=components, patch=patch, stride=stride,
                 pca=pca, normalization=normalization, power=power, l2=l2, fim_from=fim_from,
                 fim_samples=fim_samples, generator_samples=generator_samples, whiten=whiten,
                 descriptors=descriptors, workers=workers, scheduler=scheduler,
                 chunk_rows=chunk_rows)
    _check_options(k, given)
    dev = check_device(device, cpu_only=None if k in GPU_KINDS else
                       f"embed {k} runs on the CPU only (--device applies to "
                       f"{' and '.join(GPU_KINDS)})")
    if chunk_rows is not None:
        return _embed_chunked(sess, k, dataset, model, given, seed, name, overwrite, dev)
    ds, key = sess.dataset(dataset)
    small = ds.shape[1] <= 16
    defaults = dict(dim=512, projection="sparse",
                    normalize="fim_diag_exact" if k == "afv" else "fim_diag", center=True,
                    pool="mean", components=16 if small else 32, patch=3 if small else 6,
                    stride=1 if small else 2, pca=0 if small else 24,
                    normalization="analytic", power=k == "fisher-vector",
                    l2=k == "fisher-vector", fim_from="data", fim_samples=256,
                    generator_samples=1024, whiten=0, descriptors="dense", workers=0,
                    scheduler=None, chunk_rows=None)
    if k in LOCAL_KINDS:  # normalised like Fisher vectors: √ then L2
        defaults.update(power=True, l2=True)
    o = {**defaults, **{k2: v for k2, v in given.items() if v is not None}, "seed": seed}
    _check_local(k, given, o)
    if o["fim_from"] not in ("data", "samples"):
        raise CliError(f"--fim-from {o['fim_from']}: choose data or samples.")
    allowed = {"fisher-scores": ("fim_diag", "none"), "afv": ("fim_diag_exact", "fim_diag")}
    if k in allowed and o["normalize"] not in allowed[k]:
        raise CliError(f"--normalize {o['normalize']}: {k} takes "
                       f"{' or '.join(allowed[k])}.")
    if k in FAMILIES and o["projection"] not in ("sparse", "gaussian", "kron", "none"):
        raise CliError(f"--projection {o['projection']}: choose sparse, gaussian, kron or "
                       "none (exact).")
    if k in OPTIONAL_MODEL and model is not None:
        clash = [f"--{o2}" for o2 in ("components", "patch", "stride", "pca")
                 if given[o2] is not None]
        if clash:
            raise CliError(f"{', '.join(clash)}: with --model the trained GMM's own settings "
                           "are used; leave them out.")
    wants_model = k in FAMILIES or (k in OPTIONAL_MODEL and model is not None)
    net = _model(sess, k, model, key) if wants_model else None
    name = sess.new_name("embeddings", name or _default_name(k, dataset, model, o), overwrite)
    if net is not None and dev != "cpu":
        net.to(dev)
    with sess.ui.progress(f"{k} of {dataset}") as bar:
        emb = _compute(k, ds, key, o, net, model, bar, sess.workspace())
    sess.workspace().save_embedding(emb, name)
    meta = emb.metadata()
    sess.ui.result(
        {"saved": [{"kind": "embeddings", "name": name}], "embedding": name, **meta},
        f"Saved embedding {name}: {emb.label()}, {emb.n:,} × {emb.dim:,} (dataset {key}).",
        table(None, ["embedding", "kind", "model", "rows", "dims"],
              [[name, emb.kind, emb.model, emb.n, emb.dim]]))


def _embed_chunked(sess: Session, k: str, dataset: str, model: str | None,
                   given: dict[str, Any], seed: int, name: str | None, overwrite: bool,
                   device: str = "cpu") -> None:
    """``embed ... --chunk-rows N``: chunk by chunk into the workspace, resumable."""
    from ..workspace import chunked_embedding

    if k == "fisher-vector" and model is None:
        raise CliError("embed fisher-vector --chunk-rows needs --model, a trained gmm (the "
                       f"mixture is fitted once on a sample: '{sess.prog} train gmm').")
    clash = [f"--{o.replace('_', '-')}" for o in ("workers", "scheduler", "whiten", "fim_from",
                                                   "components", "patch", "stride", "pca")
             if given[o] not in (None, 0)]
    if clash:
        raise CliError(f"{', '.join(clash)}: not with --chunk-rows (chunked extraction reads "
                       "the dataset once, in order, in this process).")
    if given["normalization"] == "empirical":
        raise CliError("--normalization empirical: not with --chunk-rows (it learns from all "
                       "rows at once); use analytic or none.")
    ws = sess.workspace()
    check_name(dataset)
    if not (ws.root / "datasets" / dataset).is_dir():
        sess.dataset(dataset)  # the one clear "no dataset named ..." message
    rows, key = ws.dataset_rows(dataset), f"workspace:{dataset}"
    net = _model(sess, k, model, key) if model is not None or k in FAMILIES else None
    if net is not None and device != "cpu":
        net.to(device)  # Fisher scores follow the model's device
    o = {"pool": given["pool"] or "mean", "dim": given["dim"] or 512,
         "projection": given["projection"] or "sparse", "center": given["center"] is not False,
         "normalize": None if given["normalize"] == "none" else "fim_diag",
         "normalization": given["normalization"] or "analytic",
         "power": given["power"] if given["power"] is not None else k == "fisher-vector",
         "l2": given["l2"] if given["l2"] is not None else k == "fisher-vector"}
    kind = k.replace("-", "_")
    options = {"fisher_scores": {"dim": o["dim"], "projection": o["projection"],
                                 "normalize": o["normalize"], "center": o["center"],
                                 "power": 0.5 if o["power"] else None, "l2": o["l2"],
                                 "seed": seed},
               "fisher_vector": {"normalization": o["normalization"],
                                 "power": 0.5 if o["power"] else None, "l2": o["l2"]},
               "activations": {"pool": o["pool"]}, "pixels": {}}[kind]
    if kind == "fisher_scores" and o["projection"] == "none":
        raise CliError("--projection none: not with --chunk-rows (exact scores have one column "
                       "per parameter); choose sparse, gaussian or kron.")
    defaults = {"normalize": "fim_diag", "whiten": 0, "fim_from": "data", "fim_samples": 256,
                "generator_samples": 1024, "components": 0, "patch": 0, "stride": 0, "pca": 0,
                "descriptors": "dense"}
    label = _default_name(k, dataset, model, {**defaults, **o})
    name = sess.new_name("embeddings", name or label, overwrite)
    with sess.ui.progress(f"{k} of {dataset}, {given['chunk_rows']:,} images a chunk") as bar:
        try:
            emb = chunked_embedding(ws, name, rows, kind, model=net, model_name=model,
                                    options=options, chunk_rows=given["chunk_rows"],
                                    dataset_key=key, progress=bar)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    sess.ui.result(
        {"saved": [{"kind": "embeddings", "name": name}], "embedding": name,
         **emb.metadata()},
        f"Saved embedding {name}: {emb.label()}, {emb.n:,} × {emb.dim:,} (dataset {key}).",
        table(None, ["embedding", "kind", "model", "rows", "dims"],
              [[name, emb.kind, emb.model, emb.n, emb.dim]]))


def register(app: typer.Typer) -> None:
    """Add ``embed`` to ``app``."""
    app.command("embed")(embed)
