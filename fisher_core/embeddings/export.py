"""Embedding → files another tool can open: ``.npz``, CSV and the TensorBoard Embedding Projector.

Every function returns bytes (or a dict of file name → bytes), so the app can offer them as
downloads and a script can write them with :func:`fisher_core.utils.atomic_write_bytes`. Nothing
here pickles: the ``.npz`` holds only numeric, boolean and fixed-width unicode arrays and loads
with ``np.load(..., allow_pickle=False)``.

Floats are written as text with ``"%.9g"``: nine significant digits, enough for every float32 to
read back to the identical float32.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import ImageDataset
from .embedding import Embedding

__all__ = [
    "MAX_SPRITE_SIZE",
    "MIN_THUMB",
    "PROJECTOR_FILES",
    "export_csv",
    "export_npz",
    "export_projector",
    "export_projector_zip",
    "projector_selection",
]

MAX_SPRITE_SIZE = 8192
"""Largest sprite width and height (pixels) the Embedding Projector accepts."""

MIN_THUMB = 16
"""Default lower bound (pixels) on the longer side of a sprite thumbnail."""

PROJECTOR_FILES = ("vectors.tsv", "metadata.tsv", "sprite.png", "projector_config.pbtxt")
"""The files :func:`export_projector` writes, in that order."""

_FLOAT = "%.9g"
_TSV_BREAKS = re.compile("[\t\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")


# ---------------------------------------------------------------------------- helpers
def _check_dataset(emb: Embedding, ds: ImageDataset | None) -> None:
    if ds is None:
        return
    if not isinstance(ds, ImageDataset):
        raise TypeError(f"ds must be an ImageDataset or None; got {type(ds).__name__}.")
    if emb.n != len(ds):
        raise ValueError(
            f"the embedding has {emb.n} rows but dataset {ds.name!r} has {len(ds)} images; "
            f"pass the dataset the embedding was computed on ({emb.dataset!r})."
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _meta_json(emb: Embedding) -> str:
    return json.dumps(emb.metadata(), default=_json_default, ensure_ascii=False)


def _float_rows(vectors: np.ndarray, sep: str) -> list[str]:
    """Each row of ``vectors`` as ``"%.9g"`` numbers joined by ``sep`` (float32-exact)."""
    fmt = sep.join([_FLOAT] * vectors.shape[1])
    return [fmt % tuple(row) for row in vectors.tolist()]


def _csv_field(text: str) -> str:
    """Quote ``text`` the way :data:`csv.QUOTE_MINIMAL` does for a comma-separated file."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _tsv_field(text: str) -> str:
    """``text`` with tabs and line breaks replaced by spaces (they would break a TSV row)."""
    return _TSV_BREAKS.sub(" ", str(text))


def _columns(ds: ImageDataset | None, index: np.ndarray) -> tuple[list[str], list[list[str]]]:
    """Metadata column names and, per row, the raw (unescaped) values: index, label, attrs."""
    names = ["index"]
    cols: list[list[str]] = [[str(int(i)) for i in index]]
    if ds is not None and ds.labels is not None:
        class_names = ds.class_names or []
        names.append("label")
        cols.append([class_names[int(y)] for y in ds.labels[index]])
    if ds is not None and ds.attributes is not None:
        names.extend(ds.attribute_names)
        a = ds.attributes[index].astype(np.uint8)
        cols.extend([[str(int(v)) for v in a[:, j]] for j in range(a.shape[1])])
    rows = [list(r) for r in zip(*cols, strict=True)]
    return names, rows


def _check_positive_int(value: Any, name: str, upper: int | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None; got {value!r}.")
    if upper is not None and value > upper:
        raise ValueError(f"{name} must be at most {upper}; got {value!r}.")


# ---------------------------------------------------------------------------- npz / csv
def export_npz(emb: Embedding, ds: ImageDataset | None = None) -> bytes:
    """The embedding (and the dataset's labels and attributes) as a compressed ``.npz``.

    Parameters
    ----------
    emb : Embedding
        N rows of dimension k.
    ds : ImageDataset or None, default=None
        The dataset the embedding was computed on (N images); adds its labels and attributes.

    Returns
    -------
    bytes
        A ``np.savez_compressed`` archive with arrays

        - ``vectors`` : float32 (N, k);
        - ``meta`` : unicode (1,), ``json.loads(meta[0])`` is ``emb.metadata()``;
        - ``labels`` : int64 (N,) and ``class_names`` : unicode (C,), when ``ds`` has labels;
        - ``attributes`` : bool (N, A) and ``attribute_names`` : unicode (A,), when ``ds`` has
          attributes.

        No object arrays: it loads with ``np.load(io.BytesIO(data), allow_pickle=False)``.

    Raises
    ------
    ValueError
        When ``ds`` has a different number of images than the embedding has rows.
    """
    _check_dataset(emb, ds)
    arrays: dict[str, np.ndarray] = {
        "vectors": np.ascontiguousarray(emb.vectors, dtype=np.float32),
        "meta": np.array([_meta_json(emb)], dtype=np.str_),
    }
    if ds is not None and ds.labels is not None:
        arrays["labels"] = ds.labels.astype(np.int64)
        arrays["class_names"] = np.array(ds.class_names or [], dtype=np.str_)
    if ds is not None and ds.attributes is not None:
        arrays["attributes"] = ds.attributes.astype(bool)
        arrays["attribute_names"] = np.array(ds.attribute_names, dtype=np.str_)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def export_csv(emb: Embedding, ds: ImageDataset | None = None) -> bytes:
    """The embedding as a UTF-8 CSV table, one row per example.

    Parameters
    ----------
    emb : Embedding
        N rows of dimension k.
    ds : ImageDataset or None, default=None
        The dataset the embedding was computed on (N images); adds label and attribute columns.

    Returns
    -------
    bytes
        UTF-8 text, ``\\n`` line ends. Header ``index,label,<attr 1>,...,<attr A>,v0,...,v{k-1}``
        then N rows: ``index`` is the row number 0..N-1; ``label`` is the class *name* (only
        when ``ds`` has labels); one 0/1 column per attribute (only when ``ds`` has
        attributes); ``v0...`` the vector written with ``"%.9g"``, so parsing a value and
        casting it to float32 gives back the stored float32 exactly. Fields holding a comma, a
        quote or a line break are quoted as :mod:`csv` does.

    Raises
    ------
    ValueError
        When ``ds`` has a different number of images than the embedding has rows.
    """
    _check_dataset(emb, ds)
    names, rows = _columns(ds, np.arange(emb.n))
    header = ",".join(_csv_field(s) for s in [*names, *(f"v{j}" for j in range(emb.dim))])
    lines = [header]
    for prefix, values in zip(rows, _float_rows(emb.vectors, ","), strict=True):
        lines.append(",".join([*(_csv_field(s) for s in prefix), values]) if values
                     else ",".join(_csv_field(s) for s in prefix))
    return ("\n".join(lines) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------- projector
def _tile_shape(image_hw: tuple[int, int], thumb: int) -> tuple[int, int]:
    """(height, width) of a thumbnail whose longer side is ``thumb``, keeping the aspect."""
    h, w = image_hw
    side = max(h, w)
    return max(1, round(h * thumb / side)), max(1, round(w * thumb / side))


def _default_thumb(image_hw: tuple[int, int], n: int) -> int:
    side = max(image_hw)
    upscaled = side * math.ceil(MIN_THUMB / side)  # integer upscale to at least MIN_THUMB
    grid = math.ceil(math.sqrt(n))
    return max(MIN_THUMB, min(upscaled, MAX_SPRITE_SIZE // grid))


def _thumbnails(images: np.ndarray, tile_hw: tuple[int, int]) -> np.ndarray:
    """(n, C, H, W) floats in [0, 1] → (n, th, tw, C) uint8 thumbnails.

    Values become ``round(255·x)``. A whole-number upscale (same factor on both axes) repeats
    each pixel (nearest neighbour, exact); any other size uses Pillow's BOX filter (the area
    average when shrinking).
    """
    u8 = np.round(images * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)  # (n, H, W, C)
    n, h, w, c = u8.shape
    th, tw = tile_hw
    if (th, tw) == (h, w):
        return u8
    if th % h == 0 and tw % w == 0 and th // h == tw // w:
        s = th // h
        return np.repeat(np.repeat(u8, s, axis=1), s, axis=2)
    from PIL import Image

    out = np.empty((n, th, tw, c), dtype=np.uint8)
    for i in range(n):
        img = Image.fromarray(u8[i, :, :, 0] if c == 1 else u8[i], "L" if c == 1 else "RGB")
        small = np.asarray(img.resize((tw, th), Image.Resampling.BOX))
        out[i] = small.reshape(th, tw, c)
    return out


def _sprite(tiles: np.ndarray) -> np.ndarray:
    """(n, th, tw, C) tiles → one (g·th, g·tw, C) image, g = ceil(√n), row-major, black pad."""
    n, th, tw, c = tiles.shape
    g = math.ceil(math.sqrt(n))
    padded = np.zeros((g * g, th, tw, c), dtype=np.uint8)
    padded[:n] = tiles
    return padded.reshape(g, g, th, tw, c).transpose(0, 2, 1, 3, 4).reshape(g * th, g * tw, c)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    c = image.shape[2]
    pil = Image.fromarray(image[:, :, 0] if c == 1 else image, "L" if c == 1 else "RGB")
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def _pbtxt_string(text: str) -> str:
    """``text`` as a double-quoted protobuf text-format string."""
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{out}"'


def projector_selection(
    n: int,
    image_hw: tuple[int, int],
    *,
    max_points: int | None = None,
    thumb: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Which rows :func:`export_projector` keeps, and the thumbnail size it uses.

    Parameters
    ----------
    n : int
        Number of examples N.
    image_hw : (int, int)
        Height and width of one image.
    max_points, thumb, seed
        As in :func:`export_projector`.

    Returns
    -------
    index : ndarray of shape (M,)
        Sorted int64 row indices, M ≤ N (``arange(N)`` when nothing is dropped).
    thumb : int
        Longer side of a thumbnail in pixels.
    """
    _check_positive_int(max_points, "max_points")
    _check_positive_int(thumb, "thumb", MAX_SPRITE_SIZE)
    keep = n if max_points is None else min(n, int(max_points))
    t = _default_thumb(image_hw, keep) if thumb is None else int(thumb)
    keep = min(keep, (MAX_SPRITE_SIZE // t) ** 2)
    if keep == n:
        return np.arange(n, dtype=np.int64), t
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=keep, replace=False)).astype(np.int64), t


def export_projector(
    emb: Embedding,
    ds: ImageDataset,
    *,
    max_points: int | None = None,
    thumb: int | None = None,
    seed: int = 0,
) -> dict[str, bytes]:
    """The files of a TensorBoard Embedding Projector log folder, with image thumbnails.

    Put the files in one folder and run ``tensorboard --logdir <folder>``; the Projector tab
    shows the points with their labels, attributes and images.

    Parameters
    ----------
    emb : Embedding
        N rows of dimension k.
    ds : ImageDataset
        The dataset the embedding was computed on: N images (C, H, W), C = 1 or 3.
    max_points : int or None, default=None
        Keep at most this many points (a seeded random choice, in dataset order).
    thumb : int or None, default=None
        Longer side of each thumbnail in pixels, 1 to 8192 (the shorter side keeps the image's
        aspect ratio). Default: the image size times the smallest whole number that makes it at
        least 16 px, reduced (never below 16 px) if the sprite would exceed 8192 × 8192 px.
    seed : int, default=0
        Seed of the random choice of points when some must be dropped.

    Returns
    -------
    dict of str to bytes
        The :data:`PROJECTOR_FILES`, computed on the same M ≤ N points: ``max_points`` caps M,
        and so does the sprite limit, ``(8192 // thumb)²`` points.

        - ``"vectors.tsv"``: M lines of k tab-separated ``"%.9g"`` numbers, no header;
        - ``"metadata.tsv"``: columns ``index`` (row in ``ds``), ``label`` (class name, when
          ``ds`` has labels), one 0/1 column per attribute; a header line of column names when
          there are two or more columns and none when ``index`` is the only one (the
          Projector's rule). Tabs and line breaks in names become spaces;
        - ``"sprite.png"``: the thumbnails on a g × g grid, g = ceil(√M), row-major (point i at
          grid row ``i // g``, column ``i % g``), unused cells black; mode ``L`` for grey
          images, ``RGB`` for colour. Thumbnails are ``round(255·x)``, enlarged by repeating
          pixels when the size is a whole multiple of the image's, else resized with Pillow's
          BOX filter;
        - ``"projector_config.pbtxt"``: the ``ProjectorConfig`` naming the three files and the
          thumbnail size (``single_image_dim``: width then height).

    Raises
    ------
    ValueError
        When ``ds`` has a different number of images than the embedding has rows, or
        ``max_points`` / ``thumb`` is not a positive integer (``thumb`` ≤ 8192).
    """
    if ds is None:
        raise ValueError("export_projector needs the dataset the embedding was computed on "
                         "(ds), for the thumbnails.")
    _check_dataset(emb, ds)
    _, h, w = ds.shape
    index, t = projector_selection(len(ds), (h, w), max_points=max_points, thumb=thumb,
                                   seed=seed)
    tile_hw = _tile_shape((h, w), t)

    vectors = "".join(line + "\n" for line in _float_rows(emb.vectors[index], "\t"))
    names, rows = _columns(ds, index)
    lines = ["\t".join(_tsv_field(s) for s in names)] if len(names) > 1 else []
    lines += ["\t".join(_tsv_field(s) for s in row) for row in rows]
    metadata = "".join(line + "\n" for line in lines)

    sprite = _png(_sprite(_thumbnails(ds.images[index], tile_hw)))
    th, tw = tile_hw
    config = (
        "embeddings {\n"
        f"  tensor_name: {_pbtxt_string(emb.label())}\n"
        f'  tensor_path: "{PROJECTOR_FILES[0]}"\n'
        f'  metadata_path: "{PROJECTOR_FILES[1]}"\n'
        "  sprite {\n"
        f'    image_path: "{PROJECTOR_FILES[2]}"\n'
        f"    single_image_dim: {tw}\n"
        f"    single_image_dim: {th}\n"
        "  }\n"
        "}\n"
    )
    return {
        PROJECTOR_FILES[0]: vectors.encode("utf-8"),
        PROJECTOR_FILES[1]: metadata.encode("utf-8"),
        PROJECTOR_FILES[2]: sprite,
        PROJECTOR_FILES[3]: config.encode("utf-8"),
    }


def export_projector_zip(
    emb: Embedding,
    ds: ImageDataset,
    *,
    max_points: int | None = None,
    thumb: int | None = None,
    seed: int = 0,
) -> bytes:
    """:func:`export_projector`'s files in one zip archive (at its top level).

    Parameters
    ----------
    emb, ds, max_points, thumb, seed
        As in :func:`export_projector`.

    Returns
    -------
    bytes
        A zip holding the four :data:`PROJECTOR_FILES`; unzip it into a folder and run
        ``tensorboard --logdir <folder>``.

    Raises
    ------
    ValueError
        As :func:`export_projector`.
    """
    files = export_projector(emb, ds, max_points=max_points, thumb=thumb, seed=seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            # PNG is already compressed: store it as is
            kind = zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
            zf.writestr(name, data, compress_type=kind)
    return buf.getvalue()
