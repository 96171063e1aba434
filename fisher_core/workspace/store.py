"""The workspace: datasets, models, embeddings and results kept on disk, crash-safe.

Layout under the root (``FISHERLAB_HOME``, default ``~/.fisherlab``)::

    <kind>/<name>/CURRENT            text file naming the live version folder
    <kind>/<name>/v-<uuid>/meta.json JSON metadata (written last)
    <kind>/<name>/v-<uuid>/...       payload: safetensors, .npy (no pickle), JSON

A save writes a complete new version folder, then replaces ``CURRENT`` atomically
(temp file + ``os.replace``). A writer killed at any point leaves the previous version live;
stale version folders are removed by the next save. A corrupt entry is reported by
:meth:`Workspace.problems` and skipped by :meth:`Workspace.list`, never fatal.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import ImageDataset
from ..embeddings.embedding import Embedding
from ..utils.io import atomic_write_bytes, atomic_write_json, load_arrays, read_json, save_arrays

__all__ = ["KINDS", "Entry", "EntryError", "Workspace", "default_root"]

KINDS = ("datasets", "models", "embeddings", "decoders", "extractors", "results")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")


class EntryError(ValueError):
    """A workspace entry is missing, corrupt, or a name/kind is invalid."""


@dataclass(frozen=True)
class Entry:
    """One saved item: its kind, name, folder and metadata."""

    kind: str
    name: str
    path: Path
    meta: dict[str, Any]

    @property
    def created(self) -> float:
        """Unix time of the save."""
        return float(self.meta.get("created", 0.0))


def default_root() -> Path:
    """``$FISHERLAB_HOME`` if set, else ``~/.fisherlab``."""
    return Path(os.environ.get("FISHERLAB_HOME") or Path.home() / ".fisherlab").expanduser()


class Workspace:
    """Crash-safe store of FisherLab objects.

    Parameters
    ----------
    root : path-like, optional
        Folder of the workspace; defaults to :func:`default_root`. Created if missing.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # ------------------------------------------------------------------ generic entries
    @contextlib.contextmanager
    def writer(self, kind: str, name: str, meta: dict[str, Any]) -> Iterator[Path]:
        """Context manager yielding an empty folder to fill; committed atomically on exit.

        If the body raises, nothing changes and the partial folder is removed.
        """
        folder = self._folder(kind, name)
        folder.mkdir(parents=True, exist_ok=True)
        version = f"v-{uuid.uuid4().hex[:12]}"
        tmp = folder / f".tmp-{version}"
        tmp.mkdir()
        try:
            yield tmp
            full = {"kind": kind, "name": name, "created": time.time(), **meta}
            atomic_write_json(tmp / "meta.json", full)
            os.replace(tmp, folder / version)
            atomic_write_bytes(folder / "CURRENT", version.encode())
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._collect(folder, keep=version)

    def entry(self, kind: str, name: str) -> Entry:
        """The live version of ``kind/name``.

        Raises
        ------
        EntryError
            If it does not exist or is corrupt.
        """
        folder = self._folder(kind, name)
        try:
            version = (folder / "CURRENT").read_text().strip()
        except FileNotFoundError:
            raise EntryError(f"no {kind[:-1]} named {name!r} in the workspace.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise EntryError(f"{kind}/{name} is corrupt (CURRENT unreadable: {exc}).") from None
        path = folder / version
        if not version.startswith("v-") or "/" in version or not path.is_dir():
            raise EntryError(f"{kind}/{name} is corrupt: version {version!r} is missing.")
        try:
            meta = read_json(path / "meta.json")
        except (OSError, ValueError) as exc:
            raise EntryError(f"{kind}/{name} is corrupt (meta.json: {exc}).") from None
        if not isinstance(meta, dict):
            raise EntryError(f"{kind}/{name} is corrupt (meta.json is not an object).")
        return Entry(kind, name, path, meta)

    def list(self, kind: str) -> list[Entry]:
        """Readable entries of ``kind``, newest first; corrupt ones are skipped."""
        return sorted(self._scan(kind)[0], key=lambda e: e.created, reverse=True)

    def names(self, kind: str) -> list[str]:
        """Names of the readable entries of ``kind``, newest first."""
        return [e.name for e in self.list(kind)]

    def problems(self, kind: str) -> list[tuple[str, str]]:
        """(name, message) for every entry of ``kind`` that could not be read."""
        return self._scan(kind)[1]

    def delete(self, kind: str, name: str) -> None:
        """Remove ``kind/name`` (no error if it does not exist)."""
        folder = self._folder(kind, name)
        if folder.exists():
            trash = folder.with_name(f".trash-{name}-{uuid.uuid4().hex[:8]}")
            os.replace(folder, trash)  # atomic: the entry vanishes at once
            shutil.rmtree(trash, ignore_errors=True)

    def exists(self, kind: str, name: str) -> bool:
        """Whether a readable ``kind/name`` exists."""
        try:
            self.entry(kind, name)
        except EntryError:
            return False
        return True

    # ------------------------------------------------------------------ datasets
    def save_dataset(self, ds: ImageDataset, name: str) -> Entry:
        """Save an :class:`ImageDataset` (images stored as uint8 when lossless)."""
        q = np.round(ds.images * 255.0)
        lossless = bool(np.abs(q / 255.0 - ds.images).max() < 1e-6)
        arrays = {"images": q.astype(np.uint8) if lossless else ds.images}
        if ds.labels is not None:
            arrays["labels"] = ds.labels
        if ds.attributes is not None:
            arrays["attributes"] = ds.attributes.astype(np.uint8)
        meta = {"summary": ds.summary(), "class_names": ds.class_names,
                "attribute_names": ds.attribute_names, "levels": ds.levels,
                "title": ds.name}
        with self.writer("datasets", name, meta) as d:
            save_arrays(d / "arrays.safetensors", arrays)
        return self.entry("datasets", name)

    def load_dataset(self, name: str) -> ImageDataset:
        """Load a dataset saved with :meth:`save_dataset`."""
        e = self.entry("datasets", name)
        try:
            arrays = load_arrays(e.path / "arrays.safetensors")
            images = arrays["images"]
            images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images
            attrs = arrays.get("attributes")
            return ImageDataset(
                images=images, labels=arrays.get("labels"),
                class_names=e.meta.get("class_names"),
                attributes=None if attrs is None else attrs.astype(bool),
                attribute_names=e.meta.get("attribute_names") or [],
                name=name, levels=e.meta.get("levels"),
            )
        except EntryError:
            raise
        except Exception as exc:  # corrupt payload: report, never crash the caller
            raise EntryError(f"datasets/{name} is corrupt ({type(exc).__name__}: {exc}).") \
                from None

    # ------------------------------------------------------------------ embeddings
    def save_embedding(self, emb: Embedding, name: str) -> Entry:
        """Save an :class:`Embedding`."""
        with self.writer("embeddings", name, {"embedding": emb.metadata()}) as d:
            save_arrays(d / "vectors.safetensors", {"vectors": emb.vectors})
        return self.entry("embeddings", name)

    def load_embedding(self, name: str) -> Embedding:
        """Load an embedding saved with :meth:`save_embedding`."""
        e = self.entry("embeddings", name)
        try:
            m = e.meta["embedding"]
            v = load_arrays(e.path / "vectors.safetensors")["vectors"]
            return Embedding(v, m["dataset"], m["kind"], m.get("model"),
                             m.get("normalization"), m.get("projection"), m.get("params") or {})
        except Exception as exc:
            raise EntryError(f"embeddings/{name} is corrupt ({type(exc).__name__}: {exc}).") \
                from None

    # ------------------------------------------------------------------ results
    def save_result(self, name: str, data: dict[str, Any],
                    arrays: dict[str, np.ndarray] | None = None) -> Entry:
        """Save a JSON result (tables, curves) with optional arrays."""
        with self.writer("results", name, {"data": data}) as d:
            if arrays:
                save_arrays(d / "arrays.safetensors", arrays)
        return self.entry("results", name)

    def load_result(self, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(data, arrays) of a result saved with :meth:`save_result`."""
        e = self.entry("results", name)
        f = e.path / "arrays.safetensors"
        try:
            return e.meta["data"], (load_arrays(f) if f.exists() else {})
        except Exception as exc:
            raise EntryError(f"results/{name} is corrupt ({type(exc).__name__}: {exc}).") \
                from None

    # ------------------------------------------------------------------ internals
    def _folder(self, kind: str, name: str) -> Path:
        if kind not in KINDS:
            raise EntryError(f"kind must be one of {KINDS}; got {kind!r}.")
        if not isinstance(name, str) or not _NAME.match(name):
            raise EntryError(
                f"invalid name {name!r}: use 1-80 letters, digits, '_', '-' or '.', "
                "starting with a letter or digit."
            )
        return self.root / kind / name

    def _scan(self, kind: str) -> tuple[list[Entry], list[tuple[str, str]]]:
        base = self.root / kind
        if kind not in KINDS:
            raise EntryError(f"kind must be one of {KINDS}; got {kind!r}.")
        good, bad = [], []
        if not base.is_dir():
            return good, bad
        for folder in sorted(base.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                good.append(self.entry(kind, folder.name))
            except EntryError as exc:
                bad.append((folder.name, str(exc)))
        return good, bad

    @staticmethod
    def _collect(folder: Path, keep: str) -> None:
        """Remove versions other than ``keep`` and leftovers of killed writers."""
        for p in folder.iterdir():
            stale = p.name.startswith("v-") or (
                # a temp folder may belong to a concurrent writer: only reap old ones
                p.name.startswith(".tmp-") and time.time() - p.stat().st_mtime > 600
            )
            if p.is_dir() and p.name != keep and stale:
                shutil.rmtree(p, ignore_errors=True)
