"""``fisherlab eval``: linear probes, FID of interpolations vs α, attribute edits.

What an evaluation needs and is missing (a space's decoder, the dataset's feature extractor)
is trained first, with progress, and saved in the workspace as the app saves it.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import typer

from ..explore.decode import decoder_warning
from ..metrics import edit_operating_points, interpolation_ratios, probe_embeddings
from ..workspace import (
    decoded_embeddings,
    edit_scores,
    extractor_entry,
    extractor_name,
    fid_curves,
    save_rows,
    train_embedding_decoder,
    train_extractor,
)
from .common import CliError, Session, parse_list, session
from .ui import table

__all__ = ["register"]

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate embeddings: probes, FID, edits.")

SpacesOpt = Annotated[str, typer.Option("--spaces", "-s", help="Embeddings, comma-separated.")]
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Workspace dataset name.")]
DecEpochsOpt = Annotated[int, typer.Option("--decoder-epochs", min=1,
                                           help="Epochs of a missing decoder.")]
DecBudgetOpt = Annotated[str, typer.Option(
    "--decoder-seconds", help="Time budget of a missing decoder: seconds, or 'auto' (the "
    "app's: about 12 epochs measured here, 1-15 min).")]
DecArchOpt = Annotated[str, typer.Option(
    "--decoder-architecture", help="Architecture of a missing decoder: direct, or pixelcnn (a "
    "PixelCNN conditioned on the embedding: sharper, ~20× slower to decode).")]
ExtEpochsOpt = Annotated[int, typer.Option("--extractor-epochs", min=1,
                                           help="Epochs of a missing feature extractor.")]


@eval_app.command("probe")
def probe(
    ctx: typer.Context,
    embeddings: Annotated[list[str], typer.Argument(help="Saved embeddings of one dataset.")],
    target: Annotated[str, typer.Option(help="label, or an attribute of the dataset.")
                      ] = "label",
    folds: Annotated[int, typer.Option(min=2, help="Stratified cross-validation folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Fold shuffling seed.")] = 0,
) -> None:
    """Linear probes (logistic regression, k-fold) on embeddings against raw pixels."""
    sess = session(ctx)
    ws = sess.workspace()
    names = sess.embedding_names(list(dict.fromkeys(embeddings)))
    embs = {n: ws.load_embedding(n) for n in names}
    keys = sorted({e.dataset for e in embs.values()})
    if len(keys) != 1:
        raise CliError(f"the embeddings belong to different datasets ({', '.join(keys)}); probe "
                       "the embeddings of one dataset at a time.")
    key = keys[0]
    ds = sess.dataset_for_key(key)
    targets = (["label"] if ds.labels is not None else []) + list(ds.attribute_names)
    if target not in targets:
        raise CliError(f"--target {target}: choose one of {', '.join(targets) or 'none'} "
                       f"(dataset {key}).")
    for n, e in embs.items():
        if e.n != len(ds):
            raise CliError(f"embedding {n!r} has {e.n} rows but {key} has {len(ds)} images; "
                           "recompute it.")
    y = ds.labels if target == "label" else ds.attributes[:, ds.attribute_names.index(target)]
    with sess.ui.progress(f"probing {len(names) + 1} spaces ({folds} folds)") as bar:
        rows = probe_embeddings(ds.images.reshape(len(ds), -1),
                                embs, y, cv=folds,
                                seed=seed, progress=bar)
    # the app's Classify page shows the table saved under the same settings
    result = save_rows(ws, "probe", {"dataset": key, "target": target, "folds": folds}, rows)
    sess.ui.result(
        {"saved": [{"kind": "results", "name": result}], "dataset": key, "target": target,
         "folds": folds, "seed": seed, "probes": rows},
        f"Linear and cosine 10-NN probes on {key}, predicting {target} ({folds}-fold, seed "
        f"{seed}); saved as results/{result}.",
        table(None, ["space", "accuracy", "std", "10-NN", "10-NN std", "n", "dims"],
              [[r["embedding"], r["accuracy"], r["std"], r.get("knn_accuracy"),
                r.get("knn_std"), r["n"], r["dim"]] for r in rows]))


def _budget(text: str) -> float | str:
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise CliError(f"--decoder-seconds {text}: give a number of seconds or 'auto'.")
    return value


def _prepare(sess: Session, ds: Any, key: str, spaces: str, dec_epochs: int,
             dec_budget: str, ext_epochs: int, dec_arch: str = "direct"
             ) -> tuple[list[str], list[dict[str, Any]], dict[str, str]]:
    """Space names; what was trained (the missing decoders and feature extractor); and the
    decoders that learned too little to be trusted (as the app flags them)."""
    ws = sess.workspace()
    names = sess.embedding_names(parse_list(spaces, "--spaces"))
    for n in names:
        made_on = ws.entry("embeddings", n).meta.get("embedding", {}).get("dataset")
        if made_on != key:
            raise CliError(f"embedding {n!r} was computed on {made_on!r}, not {key!r}; give "
                           "spaces of this dataset.")
    budget = _budget(dec_budget)
    if dec_arch not in ("direct", "pixelcnn"):
        raise CliError(f"--decoder-architecture {dec_arch}: choose direct or pixelcnn.")
    trained: list[dict[str, Any]] = []
    have = decoded_embeddings(ws, key)
    for n in (n for n in names if n not in have):
        with sess.ui.progress(f"decoder for {n}") as bar:
            _, m = train_embedding_decoder(ws, n, ds, callback=bar.event, epochs=dec_epochs,
                                           max_seconds=budget, architecture=dec_arch)
        trained.append({"kind": "decoders", "name": n, "metrics": m})
    if extractor_entry(ws, key) is None:
        with sess.ui.progress(f"feature extractor for {key}") as bar:
            _, m = train_extractor(ws, ds, key, callback=bar.event, epochs=ext_epochs)
        trained.append({"kind": "extractors", "name": extractor_name(key), "metrics": m})
    decoders = decoded_embeddings(ws, key)
    weak = {n: w for n in names if (w := decoder_warning(decoders.get(n, {})))}
    for n, why in weak.items():
        sess.ui.log(f"Warning: the decoder of {n} {why}")
    return names, trained, weak


@eval_app.command("interpolation")
def interpolation(
    ctx: typer.Context,
    dataset: DatasetOpt,
    spaces: SpacesOpt,
    pairs: Annotated[int, typer.Option(min=2, help="Random pairs (images per FID).")] = 200,
    steps: Annotated[int, typer.Option(min=2, help="α values from 0 to 1.")] = 11,
    method: Annotated[str, typer.Option(help="linear or slerp.")] = "linear",
    seed: Annotated[int, typer.Option(help="Pair sampling seed.")] = 0,
    repeats: Annotated[int, typer.Option(
        min=1, help="Independent draws of pairs (mean and spread of each FID).")] = 3,
    decoder_epochs: DecEpochsOpt = 40,
    decoder_seconds: DecBudgetOpt = "auto",
    decoder_architecture: DecArchOpt = "direct",
    extractor_epochs: ExtEpochsOpt = 40,
) -> None:
    """FID of decoded interpolations vs α, one curve per space, and each space's peak over
    end-point ratio."""
    sess = session(ctx)
    if method not in ("linear", "slerp"):
        raise CliError(f"--method {method}: choose linear or slerp.")
    ds, key = sess.dataset(dataset)
    names, trained, weak = _prepare(sess, ds, key, spaces, decoder_epochs, decoder_seconds,
                                    extractor_epochs, decoder_architecture)
    alphas = np.linspace(0.0, 1.0, steps)
    with sess.ui.progress(f"FID vs α ({len(names)} spaces, {pairs} pairs)") as bar:
        rows = fid_curves(sess.workspace(), ds, key, names, n_pairs=pairs, alphas=alphas,
                          method=method, seed=seed, repeats=repeats, progress=bar)
    fid = {n: [r["fid"] for r in rows if r["space"] == n] for n in names}
    fid_std = {n: [r["fid_std"] for r in rows if r["space"] == n] for n in names}
    ratios = interpolation_ratios(rows)
    result = f"fid-alpha-{extractor_name(key)}"
    extractor = rows[0]["extractor"] if rows else None  # the feature space every FID is in
    sess.ui.result(
        {"saved": [{"kind": k["kind"], "name": k["name"]} for k in trained]
         + [{"kind": "results", "name": result}], "dataset": key,
         "alphas": [float(a) for a in alphas], "fid": fid, "fid_std": fid_std,
         "repeats": repeats, "ratios": ratios, "extractor": extractor,
         "extractor_entry": extractor_name(key),
         "n_pairs": pairs, "method": method, "trained": trained, "weak_decoders": weak},
        [f"FID of {method} interpolations vs α on {key} ({pairs} pairs × {repeats} draws; "
         f"features: {extractor}); saved as results/{result}."]
        + [f"{r['space']}: peak / end-point FID {r['ratio']:.2f}"
           + ("" if r["ratio_vs_reference"] is None else
              f" ({r['ratio_vs_reference']:.2f}× the pixel space's)") for r in ratios]
        + [f"Trained and saved {t['kind'][:-1]} {t['name']}." for t in trained],
        table(None, ["α", *names], [[float(a), *(fid[n][i] for n in names)]
                                    for i, a in enumerate(alphas)]))


@eval_app.command("edits")
def edits(
    ctx: typer.Context,
    dataset: DatasetOpt,
    spaces: SpacesOpt,
    attributes: Annotated[str | None, typer.Option(
        "--attributes", "-a", help="Attributes to edit, comma-separated [all].",
        show_default=False)] = None,
    strengths: Annotated[str, typer.Option(help="Edit strengths, comma-separated.")
                         ] = "1,3,5",
    sources: Annotated[int, typer.Option(min=1, help="Source images per direction.")] = 200,
    seed: Annotated[int, typer.Option(help="Source sampling seed.")] = 0,
    decoder_epochs: DecEpochsOpt = 40,
    decoder_seconds: DecBudgetOpt = "auto",
    decoder_architecture: DecArchOpt = "direct",
    extractor_epochs: ExtEpochsOpt = 40,
) -> None:
    """Attribute-edit success and preservation per space, attribute and strength."""
    sess = session(ctx)
    try:
        power = tuple(float(s) for s in parse_list(strengths, "--strengths"))
    except ValueError:
        raise CliError(f"--strengths {strengths}: give numbers separated by commas.") from None
    ds, key = sess.dataset(dataset)
    if not ds.attribute_names:
        raise CliError(f"dataset {dataset!r} has no attributes to edit; use one that has "
                       f"(e.g. '{sess.prog} data builtin faces').")
    attrs = parse_list(attributes, "--attributes") if attributes else list(ds.attribute_names)
    unknown = [a for a in attrs if a not in ds.attribute_names]
    if unknown:
        raise CliError(f"--attributes: {', '.join(unknown)} not in {dataset!r}; choose from "
                       f"{', '.join(ds.attribute_names)}.")
    names, trained, weak = _prepare(sess, ds, key, spaces, decoder_epochs, decoder_seconds,
                                    extractor_epochs, decoder_architecture)
    rows: list[dict[str, Any]] = []
    for attr in attrs:
        with sess.ui.progress(f"edits: {attr} ({len(names)} spaces)") as bar:
            rows += edit_scores(sess.workspace(), ds, key, names, attribute=attr,
                                strengths=power, n_sources=sources, seed=seed, progress=bar)
    result = f"edits-{extractor_name(key)}"
    points = edit_operating_points(rows)

    def _point(p: dict[str, Any]) -> str:
        at = ("never reaches 95 % success" if p["strength"] is None else
              f"95 % success first at strength {p['strength']:g}: preservation "
              f"{p['preservation']:.0%}")
        fixed = ("" if p["fixed_success"] is None else
                 f"; at {p['fixed_strength']:g}: {p['fixed_success']:.0%} / "
                 f"{p['fixed_preservation']:.0%}")
        return f"{p['space']}: {at}{fixed}"

    sess.ui.result(
        {"saved": [{"kind": k["kind"], "name": k["name"]} for k in trained]
         + [{"kind": "results", "name": result}], "dataset": key, "rows": rows,
         "operating_points": points, "trained": trained, "weak_decoders": weak},
        [f"Attribute edits on {key} ({sources} sources per direction); saved in "
         f"results/{result}."] + [_point(p) for p in points]
        + [f"Trained and saved {t['kind'][:-1]} {t['name']}." for t in trained],
        table(None, ["space", "attribute", "direction", "strength", "success", "preservation"],
              [[r["space"], r["attribute"], r["direction"], r["strength"], r["success"],
                r["preservation"]] for r in rows]))


@eval_app.command("size-sweep")
def size_sweep(
    ctx: typer.Context,
    dataset: DatasetOpt,
    family: Annotated[str, typer.Option("--family", "-f", help="Model family to train.")],
    sizes: Annotated[str, typer.Option(help="Training-set sizes, comma-separated.")
                     ] = "50,100,200,400",
    steps: Annotated[int, typer.Option(min=1, help="Optimisation steps per run (EM: to "
                                                   "convergence).")] = 300,
    settings: Annotated[list[str] | None, typer.Option(
        "--set", help="A config field, KEY=VALUE (repeat), as for 'fisherlab train'.",
        show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Split, subsets, weights and monitor seed.")] = 0,
) -> None:
    """Train a family on growing subsets; the Fisher monitor at the end of each run."""
    from ..models import MODEL_FAMILIES
    from ..workspace import SWEEP_CONFIGS, sweep_key, training_size_sweep
    from .cmd_train import parse_config

    sess = session(ctx)
    if family not in MODEL_FAMILIES:
        raise CliError(f"--family {family}: choose one of {', '.join(MODEL_FAMILIES)}.")
    try:
        wanted = [int(n) for n in parse_list(sizes, "--sizes")]
    except ValueError:
        raise CliError(f"--sizes {sizes}: give whole numbers, e.g. 50,100,200.") from None
    config = parse_config(family, settings) if settings else SWEEP_CONFIGS.get(family, {})
    ds, key = sess.dataset(dataset)
    with sess.ui.progress(f"size sweep of {family} on {dataset}") as bar:
        try:
            rows = training_size_sweep(ds, family, wanted, config=config, steps=steps,
                                       seed=seed, progress=bar)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    # the app's Metrics page shows the sweep saved under the same settings
    result = save_rows(sess.workspace(), "size-sweep",
                       sweep_key(key, family, wanted, steps, config), rows)
    sess.ui.result(
        {"saved": [{"kind": "results", "name": result}], "dataset": key, "family": family,
         "steps": steps, "config": config, "rows": rows},
        f"Size sweep of {family} on {key} ({steps} steps per run); saved as "
        f"results/{result}. Fisher distance of real images to the model's samples:",
        table(None, ["training images", "train FD", "held-out FD", "train FSim",
                     "held-out FSim", "val NLL", "seconds"],
              [[r["n_train"], r["train_fd"], r["heldout_fd"], r["train_fsim"],
                r["heldout_fsim"], r["val_nll"], r["seconds"]] for r in rows]))


def register(app: typer.Typer) -> None:
    """Add ``eval`` to ``app``."""
    app.add_typer(eval_app, name="eval")
