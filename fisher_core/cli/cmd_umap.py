"""``fisherlab umap``: a UMAP figure of a saved embedding, as self-contained HTML or PNG."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from ..explore import umap_embed
from .common import CliError, session
from .ui import table

__all__ = ["register", "write_figure"]

PNG_HELP = ("PNG export needs the kaleido package and Chrome/Chromium (pip install "
            "'fisherlab[cli]'; BROWSER_PATH names the browser); or write an .html file instead.")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary file (mkstemp makes it private)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _kaleido():
    try:
        import kaleido
    except ImportError:
        raise CliError(PNG_HELP) from None
    return kaleido


def png_bytes(fig: Any, *, width: int = 900, scale: float = 2.0) -> bytes:
    """``fig`` rendered to PNG by kaleido, offline: plotly.js comes from the plotly package
    and MathJax (a CDN script by default) is turned off, so nothing is fetched.

    Parameters
    ----------
    fig : plotly.graph_objects.Figure
    width : int, default=900
        Pixels, unless the figure's layout sets its own; the height is the layout's.
    scale : float, default=2.0
        Resolution multiplier.

    Returns
    -------
    bytes
        The PNG file.

    Raises
    ------
    CliError
        kaleido is missing, or it found no browser or failed.
    """
    kaleido = _kaleido()
    layout = fig.layout
    opts = {"format": "png", "width": layout.width or width, "height": layout.height or 560,
            "scale": scale}
    try:
        return kaleido.calc_fig_sync(fig.to_dict(), opts=opts,
                                     kopts={"mathjax": False, "timeout": 120})
    except Exception as exc:  # ChromeNotFoundError, a browser that died, a timeout
        raise CliError(f"PNG export failed ({type(exc).__name__}: {exc}). {PNG_HELP}") from None


def write_figure(fig: Any, out: Path) -> str:
    """Write ``fig`` to ``out`` atomically (a temporary file, then a rename).

    Parameters
    ----------
    fig : plotly.graph_objects.Figure
    out : Path
        ``.html``: self-contained, plotly.js inlined, opens offline; ``.png``: through
        :func:`png_bytes`.

    Returns
    -------
    str
        ``"html"`` or ``"png"``.
    """
    fmt = out.suffix.lower().lstrip(".")
    if fmt == "html":
        data = fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")
    elif fmt == "png":
        data = png_bytes(fig)
    else:
        raise CliError(f"--out {out}: write an .html or a .png file.")
    _atomic_write(out, data)
    return fmt


def umap(
    ctx: typer.Context,
    embedding: Annotated[str, typer.Argument(help="Saved embedding name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="FILE.html (self-contained) or "
                                      "FILE.png.")],
    colour_by: Annotated[str, typer.Option(
        "--colour-by", "--color-by", help="label, or an attribute of the dataset.")
    ] = "label",
    dims: Annotated[int, typer.Option(min=2, max=3, help="2-D or 3-D layout.")] = 2,
    neighbors: Annotated[int, typer.Option(min=2, help="UMAP n_neighbors.")] = 15,
    min_dist: Annotated[float, typer.Option(min=0.0, max=0.99, help="UMAP min_dist.")] = 0.1,
    metric: Annotated[str, typer.Option(help="euclidean or cosine.")] = "euclidean",
    pca_dims: Annotated[int, typer.Option(min=0, help="PCA dimensions before UMAP (0: none).")
                        ] = 50,
    seed: Annotated[int, typer.Option(help="UMAP seed.")] = 0,
) -> None:
    """Lay out a saved embedding with UMAP and write the scatter plot."""
    from ..plots import embedding_scatter

    sess = session(ctx)
    if metric not in ("euclidean", "cosine"):
        raise CliError(f"--metric {metric}: choose euclidean or cosine.")
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("html", "png"):
        raise CliError(f"--out {out}: write an .html or a .png file.")
    if not out.parent.is_dir():
        raise CliError(f"--out {out}: folder {out.parent} does not exist.")
    if fmt == "png":
        _kaleido()  # before the layout is computed
    name = sess.embedding_names([embedding])[0]
    emb = sess.workspace().load_embedding(name)
    ds = sess.dataset_for_key(emb.dataset)
    if emb.n != len(ds):
        raise CliError(f"embedding {name!r} has {emb.n} rows but its dataset {emb.dataset!r} "
                       f"has {len(ds)} images; recompute the embedding.")
    choices = (["label"] if ds.labels is not None else []) + list(ds.attribute_names) + [
        "none"]
    if colour_by not in choices:
        raise CliError(f"--colour-by {colour_by}: choose one of {', '.join(choices) or 'none'}"
                       f" (dataset {emb.dataset}).")
    with sess.ui.progress(f"UMAP of {name} ({emb.n:,} × {emb.dim:,})", indeterminate=True):
        xy = umap_embed(emb.vectors, n_components=dims, n_neighbors=neighbors,
                        min_dist=min_dist, metric=metric, pca_dims=pca_dims or None,
                        random_state=seed)
    fig = embedding_scatter(xy, ds, colour_by=colour_by,
                            title=f"UMAP of {name} ({emb.kind}, {emb.dim} dims)")
    with sess.ui.progress(f"writing {out.name}", indeterminate=True):
        write_figure(fig, out)
    sess.ui.result(
        {"saved": [], "embedding": name, "dataset": emb.dataset, "out": str(out),
         "format": fmt, "points": emb.n, "dims": dims, "colour_by": colour_by,
         "umap": {"n_neighbors": neighbors, "min_dist": min_dist, "metric": metric,
                  "pca_dims": pca_dims or None}},
        f"Wrote {out} ({fmt}, {emb.n:,} points, coloured by {colour_by}).",
        table(None, ["embedding", "kind", "points", "dims", "file"],
              [[name, emb.kind, emb.n, dims, str(out)]]))


def register(app: typer.Typer) -> None:
    """Add ``umap`` to ``app``."""
    app.command("umap")(umap)
