"""``fisherlab train``: train a model family on a workspace dataset and save it."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..models import MODEL_FAMILIES, build_model
from ..utils.devices import resolve_device
from ..workspace import data_config, interrupted_runs, resume_run, train_and_save
from .common import CliError, session, slug
from .ui import table

__all__ = ["DEFAULT_EPOCHS", "check_device", "parse_config", "register"]

# The app's "balanced" preset: recognisable samples on the built-in data in ~2 CPU minutes.
DEFAULT_EPOCHS = {"pixelcnn": 4, "vae": 9, "ebgan": 10, "fvvae": 30, "gmm": 1}  # gmm: EM
FROM_DATA = {"channels", "height", "width"}
Family = StrEnum("Family", {k: k for k in MODEL_FAMILIES})  # type: ignore[misc]


def check_device(device: str, *, cpu_only: str | None = None) -> str:
    """``device`` if torch can use it here; ``cpu_only`` says why only the CPU is possible.

    Raises
    ------
    CliError
        Unknown or unavailable device, or a GPU where only the CPU is possible.
    """
    try:
        dev = resolve_device(device)
    except ValueError:
        why = ("CUDA is not available on this machine" if device.startswith("cuda") else
               "not a device torch knows")
        raise CliError(f"--device {device}: {why}; use --device cpu (or cuda / cuda:N where "
                       "CUDA is available).") from None
    if cpu_only and dev.type != "cpu":
        raise CliError(f"--device {device}: {cpu_only}; leave --device out to use the CPU.")
    return str(dev)


def _value(text: str, default: Any, key: str) -> Any:
    """``text`` parsed as the type of the config field's default."""
    low = text.strip().lower()
    try:
        if isinstance(default, bool):
            if low not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            return low in ("true", "1", "yes", "on")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, str):
            return text
        if low in ("none", ""):
            return None
        return tuple(int(v) for v in text.split(","))  # tuple fields (dilations) or None
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a number"}.get(
            type(default), "comma-separated integers or none")
        raise CliError(f"--set {key}={text}: expected {kind}.") from None


def parse_config(family: str, pairs: list[str]) -> dict[str, Any]:
    """``["hidden=8", "n_blocks=2"]`` → config values of ``family``, typed like its fields.

    Raises
    ------
    CliError
        A pair without ``=``, an unknown field, or a value of the wrong type.
    """
    fields = {f.name: f for f in dataclasses.fields(MODEL_FAMILIES[family][1])}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq:
            raise CliError(f"--set {pair}: write KEY=VALUE, e.g. --set hidden=32.")
        if key in FROM_DATA:
            raise CliError(f"--set {key}: channels, height and width come from the dataset.")
        if key not in fields:
            raise CliError(f"--set {key}: {family} has no such setting; valid keys are "
                           f"{', '.join(sorted(set(fields) - FROM_DATA))}.")
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else None
        out[key] = _value(text, default, key)
    return out


def train(
    ctx: typer.Context,
    family: Annotated[Family, typer.Argument(help="Model family.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Workspace dataset name.")],
    epochs: Annotated[int | None, typer.Option(
        min=1, help="Epochs (default: the app's balanced preset for the family).",
        show_default=False)] = None,
    name: Annotated[str | None, typer.Option(
        help="Model name (default: DATASET-FAMILY).", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="Torch device.")] = "cpu",
    settings: Annotated[list[str] | None, typer.Option(
        "--set", help="A config field, KEY=VALUE (repeat), e.g. --set hidden=8.",
        show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, show_default=False)] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Initial weights, shuffling, held-out split.")] = 0,
    max_minutes: Annotated[float | None, typer.Option(
        min=0.0, help="Stop after this long (the best epoch so far is kept).",
        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a saved model of that name.")
                         ] = False,
    resume: Annotated[bool, typer.Option(
        help="Continue interrupted run NAME (Ctrl-C, a killed process) from its last epoch, "
        "with the settings it was started with.")
    ] = False,
) -> None:
    """Train a model on a workspace dataset and save it (checkpoints kept each epoch)."""
    sess = session(ctx)
    fam = family.value
    check_device(device, cpu_only="train_and_save trains on the CPU only")
    config = parse_config(fam, settings or [])
    if MODEL_FAMILIES[fam][0].fitted_by_em:
        given = [f"--{o}" for o, v in (("epochs", epochs), ("batch-size", batch_size),
                                       ("lr", lr)) if v is not None] + (
            ["--resume"] if resume else [])
        if given:
            raise CliError(f"{', '.join(given)}: a {fam} model is fitted by EM in one go, "
                           "without epochs, batches or a learning rate; set its iterations "
                           "with --set max_iter=N.")
    ds, key = sess.dataset(dataset)
    build_model(fam, **{**data_config(fam, ds), **config})  # bad values: before any work
    name = name or slug(f"{dataset}-{fam}")
    if resume:
        runs = {r["name"]: r for r in interrupted_runs(sess.workspace())}
        if name not in runs:
            raise CliError(f"no interrupted run named {name!r} to resume (interrupted: "
                           f"{', '.join(runs) or 'none'}); train it again without --resume.")
        if runs[name].get("dataset_key") != key:
            raise CliError(f"run {name!r} was started on {runs[name].get('dataset_key')!r}, "
                           f"not {key!r}; pass that dataset to --dataset.")
    else:
        sess.new_name("models", name, overwrite)
    try:
        with sess.ui.progress(f"training {fam} on {dataset}") as bar:
            if resume:
                run = resume_run(sess.workspace(), name, ds, callback=bar.event)
            else:
                run = train_and_save(
                    ds, fam, config=config, epochs=epochs or DEFAULT_EPOCHS.get(fam, 5),
                    batch_size=batch_size, lr=lr, seed=seed, workspace=sess.workspace(),
                    name=name, dataset_key=key, callback=bar.event,
                    max_seconds=None if max_minutes is None else 60.0 * max_minutes)
    except KeyboardInterrupt:
        raise CliError(f"interrupted; nothing was saved as model {name!r}, and its last "
                       f"completed epoch is kept: continue with '{sess.prog} train {fam} "
                       f"--dataset {dataset} --name {name} --resume'.", 130) from None
    r = run.result
    if r.stopped_reason == "nan":
        raise CliError(f"training diverged (NaN loss) and nothing was saved: {r.message} Try "
                       "a lower --lr.")
    saved = [e.name for e in sess.workspace().list("models")
             if e.name == name or e.meta.get("best_of") == name]
    m = run.metrics
    h = r.history
    epochs_rows = [[k + 1, loss, nll, bpd, sec] for k, (loss, nll, bpd, sec) in enumerate(zip(
        h.get("epoch_train_loss", []), h.get("epoch_val_nll", []),
        h.get("epoch_bits_per_dim", []), h.get("epoch_elapsed", []), strict=False))]
    bpd = m.get("val_bits_per_dim")
    sess.ui.result(
        {"saved": [{"kind": "models", "name": n} for n in sorted(saved)], "model": name,
         "family": fam, "dataset": key, "config": config, "metrics": m, "stopped": r.stopped_reason,
         "message": r.message},
        f"Saved model {name} ({fam}, {m['parameters']:,} parameters, dataset {key}) after "
        f"{m['epochs']} {'EM iteration' if fam == 'gmm' else 'epoch'}(s) in "
        f"{m['seconds']:.0f} s"
        + (f"; held-out {bpd:.4g} bits/dim." if bpd is not None else ".") + f" {r.message}",
        table(None, ["epoch", "train loss", "held-out NLL", "bits/dim", "seconds"], epochs_rows))


def gmm_sweep(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Workspace dataset name.")],
    components: Annotated[str, typer.Option(
        "--k", help="Comma-separated numbers of components to try.")] = "4,8,16,32,64",
    settings: Annotated[list[str] | None, typer.Option(
        "--set", help="A descriptor setting of the gmm family, KEY=VALUE (patch, stride, pca, "
        "spatial, max_descriptors).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Held-out split, subsample, k-means.")] = 0,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Also write the figure: FILE.html or FILE.png.",
        show_default=False)] = None,
) -> None:
    """Choose K for a patch GMM: held-out log-likelihood and BIC over a range of K."""
    from ..plots import gmm_selection_figure
    from ..training import sweep_components
    from .cmd_umap import write_figure

    sess = session(ctx)
    try:
        ks = sorted({int(k) for k in components.split(",") if k.strip()})
    except ValueError:
        raise CliError(f"--k {components}: write comma-separated integers, e.g. --k 8,16,32.")\
            from None
    if not ks or ks[0] < 1:
        raise CliError(f"--k {components}: every K must be an integer >= 1.")
    config = parse_config("gmm", settings or [])
    allowed = {"patch", "stride", "pca", "spatial", "max_descriptors"}
    if set(config) - allowed:
        raise CliError(f"--set {', '.join(sorted(set(config) - allowed))}: only "
                       f"{', '.join(sorted(allowed))} apply to a sweep.")
    if out is not None and out.suffix.lower() not in (".html", ".png"):
        raise CliError(f"--out {out}: write an .html or a .png file.")
    ds, key = sess.dataset(dataset)
    build_model("gmm", **{**data_config("gmm", ds), **config})  # bad values: before any work
    with sess.ui.progress(f"fitting {len(ks)} GMMs on {dataset}") as bar:
        try:
            rows = sweep_components(ds.images, ks, seed=seed, progress=bar, **config)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if out is not None:
        write_figure(gmm_selection_figure(rows, f"Patch GMM on {dataset}: choosing K"), out)
    best_val = max(rows, key=lambda r: r["val_ll"])["n_components"]
    best_bic = min(rows, key=lambda r: r["bic"])["n_components"]
    sess.ui.result(
        {"saved": [], "dataset": key, "rows": rows, "best_val_ll": best_val,
         "best_bic": best_bic, "out": None if out is None else str(out)},
        f"Best K: {best_val} by held-out log-likelihood, {best_bic} by BIC"
        + (f"; figure in {out}." if out is not None else "."),
        table(None, ["K", "train LL / desc.", "held-out LL / desc.", "BIC", "EM iterations",
                     "seconds"],
              [[r["n_components"], r["train_ll"], r["val_ll"], r["bic"], r["n_iter"],
                r["seconds"]] for r in rows]))


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``gmm-sweep`` to ``app``."""
    app.command("train")(train)
    app.command("gmm-sweep")(gmm_sweep)
