"""``fisherlab data``: save a built-in dataset or a file to the workspace, list datasets."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ..data import ImageDataset, load_builtin
from ..workspace import import_dataset, list_models
from .common import CliError, Session, session, slug
from .ui import table

__all__ = ["register"]

data_app = typer.Typer(no_args_is_help=True, help="Datasets in the workspace: add and list.")


class Builtin(StrEnum):
    """The built-in datasets."""

    faces = "faces"
    digits = "digits"


NameOpt = Annotated[str | None, typer.Option(
    "--name", help="Workspace name (default: the dataset's own name).", show_default=False)]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Replace a saved dataset of that name.")]


def _describe(ds: ImageDataset) -> dict:
    s = ds.summary()
    return {"n": s["n"], "shape": s["shape"], "levels": s["levels"],
            "classes": len(s["class_names"] or []), "attributes": s["attribute_names"]}


def _save(sess: Session, ds: ImageDataset, name: str, source: str) -> None:
    sess.workspace(create=True).save_dataset(ds, name)
    _report(sess, name, source, _describe(ds))


def _report(sess: Session, name: str, source: str, info: dict) -> None:
    ws = sess.workspace()
    sess.ui.result(
        {"saved": [{"kind": "datasets", "name": name}], "dataset": name,
         "key": f"workspace:{name}", "source": source, "workspace": str(ws.root), **info},
        f"Saved dataset {name} ({info['n']:,} images, {'×'.join(map(str, info['shape']))}, "
        f"{info['classes']} classes) to {ws.root}.")


@data_app.command("builtin")
def builtin(
    ctx: typer.Context,
    dataset: Annotated[Builtin, typer.Argument(help="faces (procedural, with attributes) or "
                                                  "digits (scikit-learn's 8×8).")],
    n: Annotated[int | None, typer.Option(help="Images to generate (faces only).",
                                          show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help="Generator seed (faces only).",
                                             show_default=False)] = None,
    size: Annotated[int | None, typer.Option(help="Image side, 16-128 (faces only).",
                                             show_default=False)] = None,
    name: NameOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Save a built-in dataset to the workspace."""
    sess = session(ctx)
    options = {k: v for k, v in (("n", n), ("seed", seed), ("size", size)) if v is not None}
    if options and dataset is Builtin.digits:
        raise CliError("digits is a fixed dataset (1,797 8×8 images): --n, --seed and --size "
                       "apply to faces only.")
    name = sess.new_name("datasets", name or dataset.value, overwrite)
    with sess.ui.progress(f"generating {dataset.value}", indeterminate=True):
        ds = load_builtin(dataset.value, **options)
    _save(sess, ds, name, f"builtin:{dataset.value}")


@data_app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help=".npz, .npy, .zip of PNG/JPEG images, or MNIST "
                                              "IDX (optionally gzipped).")],
    name: NameOpt = None,
    size: Annotated[int | None, typer.Option(
        help="Resize every image to SIZE×SIZE (without it, mixed sizes are an error).",
        show_default=False)] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Read a dataset file (never unpickled) and save it to the workspace."""
    sess = session(ctx)
    if not file.is_file():
        raise CliError(f"no file {file}; give the path of a dataset file.")
    name = sess.new_name("datasets", name or slug(file.name.split(".")[0], "dataset"),
                         overwrite)
    ws = sess.workspace(create=True)
    with sess.ui.progress(f"importing {file.name}") as bar:  # a zip of images is streamed
        entry = import_dataset(ws, file, name, size=size, progress=bar)
    s = entry.meta["summary"]
    _report(sess, name, str(file), {"n": s["n"], "shape": s["shape"], "levels": s["levels"],
                                    "classes": len(s["class_names"] or []),
                                    "attributes": s["attribute_names"]})


@data_app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the workspace's datasets with their models and embeddings."""
    sess = session(ctx)
    ws = sess.workspace()
    embeddings = [(e.name, e.meta.get("embedding", {}).get("dataset"))
                  for e in ws.list("embeddings")]
    rows = []
    for e in ws.list("datasets"):
        key = f"workspace:{e.name}"
        s = e.meta.get("summary", {})
        rows.append({"name": e.name, "key": key, "n": s.get("n"), "shape": s.get("shape"),
                     "classes": len(s.get("class_names") or []),
                     "attributes": s.get("attribute_names") or [],
                     "models": [m.name for m in list_models(ws, key)],
                     "embeddings": [n for n, d in embeddings if d == key]})
    problems = [{"name": n, "problem": p} for n, p in ws.problems("datasets")]
    t = table(None, ["dataset", "images", "shape", "classes", "attributes", "models",
                     "embeddings"],
              [[r["name"], r["n"], r["shape"], r["classes"], ", ".join(r["attributes"]) or "–",
                ", ".join(r["models"]) or "–", len(r["embeddings"])] for r in rows])
    summary = [f"{len(rows)} dataset(s) in {ws.root}."]
    summary += [f"Skipped a damaged entry datasets/{p['name']}: {p['problem']}" for p in problems]
    sess.ui.result({"workspace": str(ws.root), "datasets": rows, "problems": problems},
                   summary, t if rows else None)


def register(app: typer.Typer) -> None:
    """Add ``data`` to ``app``."""
    app.add_typer(data_app, name="data")
