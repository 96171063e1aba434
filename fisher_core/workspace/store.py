"""The workspace: datasets, models, embeddings and results kept on disk, crash-safe.

Layout under the root (``FISHERLAB_HOME``, default ``~/.fisherlab``)::

    <kind>/<name>/CURRENT            text file naming the live version folder
    <kind>/<name>/v-<uuid>/meta.json JSON metadata (written last)
    <kind>/<name>/v-<uuid>/...       payload: safetensors, .npy (no pickle), JSON
    <kind>/.<name>.lock              the entry's lock (see :mod:`.locks`)

A save fills a temporary folder ``.tmp-v-<uuid>``, then, holding the entry's lock, renames it
to a version and replaces ``CURRENT`` atomically (temp file + ``os.replace``), and removes the
versions ``CURRENT`` no longer names. A writer killed at any point leaves the previous version
live; what it leaves behind is removed by the next save of that entry or the next open of the
workspace. Several processes and threads may save, read and delete at once: readers take no
lock, and read again when a save or delete replaced the version under them. A corrupt entry is
reported by :meth:`Workspace.problems` and skipped by :meth:`Workspace.list`, never fatal.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..data.convert import as_8bit, block_bytes, distance_to_8bit
from ..data.dataset import ImageDataset
from ..embeddings.embedding import Embedding
from ..utils.io import (
    NpyWriter,
    atomic_write_bytes,
    atomic_write_json,
    load_arrays,
    read_json,
    save_arrays,
)
from . import locks
from .rows import DatasetRows, dataset_arrays, dataset_meta

__all__ = ["KINDS", "NAME_MAX", "Entry", "EntryError", "Workspace", "check_name", "default_root"]

KINDS = ("datasets", "models", "embeddings", "decoders", "extractors", "results")
NAME_MAX = 80
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}")  # always with fullmatch: no "name\n"
READ_TRIES = 20  # a reader gives up after this many versions replaced under it in a row
T = TypeVar("T")
_JITTER = random.Random()  # its own generator: pauses never disturb a caller's seeded `random`


class EntryError(ValueError):
    """A workspace entry is missing, corrupt, busy, or a name/kind is invalid."""


def check_name(name: str) -> str:
    """``name`` if it is a valid entry name (1-80 letters, digits, ``_ - .``, not first).

    Raises
    ------
    EntryError
        Saying what a valid name looks like.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise EntryError(
            f"invalid name {name!r}: use 1-80 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit."
        )
    return name


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
    """Crash-safe store of FisherLab objects, shared safely by processes and threads.

    Parameters
    ----------
    root : path-like, optional
        Folder of the workspace; defaults to :func:`default_root`. Created if missing; what
        killed writers left in it is removed.

    Attributes
    ----------
    lock_timeout : float
        Seconds a save or delete waits for an entry's lock (held for milliseconds by each
        commit, so only a stuck process makes it run out).
    """

    lock_timeout = 60.0

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.clean_up()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # ------------------------------------------------------------------ generic entries
    @contextlib.contextmanager
    def writer(self, kind: str, name: str, meta: dict[str, Any]) -> Iterator[Path]:
        """Context manager yielding an empty folder to fill; committed atomically on exit.

        If the body raises, nothing changes and the partial folder is removed. Writers of the
        same entry may run at once (the last to commit wins); while one runs, :meth:`delete`
        of the entry is refused.
        """
        folder = self._folder(kind, name)
        folder.parent.mkdir(parents=True, exist_ok=True)
        version = f"v-{uuid.uuid4().hex[:12]}"
        tmp = folder / f".tmp-{version}"
        # The claim is taken under the entry lock, so that a delete either ran before (the
        # folder is made anew) or sees this writer and refuses.
        with self._locked(kind, name, "saved"):
            folder.mkdir(exist_ok=True)
            claim = locks.try_hold(locks.claim_path(tmp))
            if claim is None:  # a fresh uuid: nobody else can hold it
                raise EntryError(f"{kind}/{name}: could not claim {tmp.name}; try again.")
            try:
                tmp.mkdir()
            except BaseException:
                locks.claim_path(tmp).unlink()
                claim.release()
                raise
        try:
            yield tmp
            full = {"kind": kind, "name": name, "created": time.time(), **meta}
            atomic_write_json(tmp / "meta.json", full)
            with self._locked(kind, name, "saved"):
                if not tmp.is_dir():  # only a process ignoring the locks can do this
                    raise EntryError(f"{kind}/{name} was deleted while being saved; save again.")
                os.replace(tmp, folder / version)
                atomic_write_bytes(folder / "CURRENT", version.encode())
                locks.reap(folder, keep=version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            with contextlib.suppress(OSError):
                locks.claim_path(tmp).unlink()
            claim.release()

    def entry(self, kind: str, name: str) -> Entry:
        """The live version of ``kind/name``.

        Read again (a few times, with short pauses) when a concurrent save replaces the version
        while its metadata is read.

        Raises
        ------
        EntryError
            If it does not exist or is corrupt.
        """
        folder = self._folder(kind, name)
        for attempt in range(READ_TRIES):
            found = self._entry_once(kind, name, folder)
            if found is not None:
                return found
            _pause(attempt)
        raise self._busy(kind, name)

    def read(self, kind: str, name: str, loader: Callable[[Entry], T]) -> T:
        """``loader(entry)`` on the live version of ``kind/name``, consistent under writers.

        When ``loader`` raises because a concurrent save or delete replaced the version it was
        reading, it is called again on the new live version; any other exception (the version
        is still live: its files are what they are) propagates unchanged.

        Raises
        ------
        EntryError
            If the entry does not exist, or kept being replaced while being read.
        """
        for attempt in range(READ_TRIES):
            e = self.entry(kind, name)
            try:
                return loader(e)
            except Exception:
                if self.is_live(e):
                    raise
            _pause(attempt)
        raise self._busy(kind, name)

    def is_live(self, entry: Entry) -> bool:
        """Whether ``entry`` is still the live version (``CURRENT`` names it)."""
        try:
            return (entry.path.parent / "CURRENT").read_text().strip() == entry.path.name
        except (OSError, UnicodeDecodeError):
            return False

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
        """Remove ``kind/name`` (no error if it does not exist).

        Raises
        ------
        EntryError
            If a save of the entry is in progress (in this or another process).
        """
        folder = self._folder(kind, name)
        if not folder.exists():
            return
        with self._locked(kind, name, "deleted"):
            try:
                # writers of older FisherLab versions (no claim) cannot be seen: not waited for
                busy = any(p.name.startswith(locks.TMP_PREFIX) and p.is_dir() and
                           locks.is_claimed(p) for p in folder.iterdir())
            except FileNotFoundError:
                return
            if busy:
                raise EntryError(f"{kind}/{name} is being written by another process or thread; "
                                 "try again when that save has finished.")
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

    def clean_up(self) -> None:
        """Remove what killed writers and deletes left behind (done at every open).

        Temporary folders whose writer is gone, versions ``CURRENT`` does not name, trash of
        interrupted deletes. Entries being saved right now are skipped, never waited for.
        """
        for kind in KINDS:
            base = self.root / kind
            try:
                folders = sorted(base.iterdir())
            except (FileNotFoundError, NotADirectoryError):
                continue
            for folder in folders:
                if folder.name.startswith(".trash-") and folder.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                elif not folder.name.startswith(".") and folder.is_dir():
                    with contextlib.suppress(OSError):
                        locks.tidy(folder)

    # ------------------------------------------------------------------ datasets
    def save_dataset(self, ds: ImageDataset, name: str) -> Entry:
        """Save an :class:`ImageDataset` (images stored as uint8 when lossless).

        Arrays are ``.npy`` files (``images``, ``labels``, ``attributes``), so that
        :meth:`dataset_rows` reads them a chunk at a time.
        """
        images = ds.images
        step = max(1, block_bytes(images.nbytes) // max(1, images[0].nbytes))
        blocks = range(0, len(images), step)
        lossless = max((distance_to_8bit(images[i:i + step]) for i in blocks),
                       default=0.0) < 1e-6
        arrays: dict[str, np.ndarray] = {}
        if ds.labels is not None:
            arrays["labels"] = ds.labels
        if ds.attributes is not None:
            arrays["attributes"] = ds.attributes.astype(np.uint8)
        meta = {**dataset_meta(ds), "arrays": sorted(["images", *arrays])}
        with self.writer("datasets", name, meta) as d:
            if lossless:  # the uint8 copy is made a block at a time, never whole
                with NpyWriter(d / "images.npy", images.shape, np.uint8) as out:
                    for i in blocks:
                        out.write(as_8bit(images[i:i + step]))
            else:
                np.save(d / "images.npy", images, allow_pickle=False)
            for key, value in arrays.items():
                np.save(d / f"{key}.npy", value, allow_pickle=False)
        return self.entry("datasets", name)

    def load_dataset(self, name: str) -> ImageDataset:
        """Load a dataset saved with :meth:`save_dataset` into memory (float32 images).

        Float32 images are memory-mapped copy-on-write (no copy); uint8 ones are converted.
        """
        def load(e: Entry) -> ImageDataset:
            arrays = dataset_arrays(e)
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
        return self._read_payload("datasets", name, load)

    def dataset_rows(self, name: str) -> DatasetRows:
        """Dataset ``name`` opened for reading in chunks (:class:`DatasetRows`): nothing but
        its labels is read until rows are asked for."""
        def load(e: Entry) -> DatasetRows:
            return DatasetRows(e, dataset_arrays(e, images=False))
        return self._read_payload("datasets", name, load)

    # ------------------------------------------------------------------ embeddings
    def save_embedding(self, emb: Embedding, name: str) -> Entry:
        """Save an :class:`Embedding` (``vectors.npy``, and ``base.npy`` when it has one)."""
        with self.writer("embeddings", name, {"embedding": emb.metadata()}) as d:
            np.save(d / "vectors.npy", emb.vectors, allow_pickle=False)
            if emb.base is not None:  # the vectors before their data-fitted steps (probes)
                np.save(d / "base.npy", emb.base, allow_pickle=False)
        return self.entry("embeddings", name)

    def save_embedding_file(self, emb: Embedding, name: str, vectors_file: Path) -> Entry:
        """Commit an embedding whose vectors already lie in ``vectors_file`` (a ``.npy`` on
        this workspace's file system, e.g. streamed there chunk by chunk): the file is moved
        into the new version, not copied. ``emb`` gives the record (its ``base`` must be
        None)."""
        if emb.base is not None:
            raise ValueError("save_embedding_file takes embeddings without a base; use "
                             "save_embedding.")
        with self.writer("embeddings", name, {"embedding": emb.metadata()}) as d:
            os.replace(vectors_file, d / "vectors.npy")
        return self.entry("embeddings", name)

    def load_embedding(self, name: str) -> Embedding:
        """Load an embedding saved with :meth:`save_embedding`.

        The vectors are memory-mapped copy-on-write: opening a 100k-row embedding reads
        nothing until rows are used, and writing to the array never changes the file.
        Embeddings saved before (``vectors.safetensors``) load as they were.
        """
        def load(e: Entry) -> Embedding:
            m = e.meta["embedding"]
            if (e.path / "vectors.npy").exists():
                arrays = {f.stem: np.load(f, mmap_mode="c", allow_pickle=False)
                          for f in (e.path / "vectors.npy", e.path / "base.npy") if f.exists()}
            else:
                arrays = load_arrays(e.path / "vectors.safetensors")
            post = m.get("post") if "base" in arrays else None
            return Embedding(arrays["vectors"], m["dataset"], m["kind"], m.get("model"),
                             m.get("normalization"), m.get("projection"), m.get("params") or {},
                             arrays["base"] if post is not None else None, post)
        return self._read_payload("embeddings", name, load)

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
        def load(e: Entry) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
            f = e.path / "arrays.safetensors"
            if f.exists():
                return e.meta["data"], load_arrays(f)
            if not self.is_live(e):  # removed under us, not saved without arrays: read again
                raise FileNotFoundError(f)
            return e.meta["data"], {}
        return self._read_payload("results", name, load)

    # ------------------------------------------------------------------ internals
    def _read_payload(self, kind: str, name: str, loader: Callable[[Entry], T]) -> T:
        """:meth:`read`, with a payload that fails to load reported as a corrupt entry."""
        try:
            return self.read(kind, name, loader)
        except EntryError:
            raise
        except Exception as exc:  # corrupt payload: report, never crash the caller
            raise EntryError(f"{kind}/{name} is corrupt ({type(exc).__name__}: {exc}).") \
                from None

    def _entry_once(self, kind: str, name: str, folder: Path) -> Entry | None:
        """The live version, or None when a concurrent save replaced it while being read."""
        try:
            version = (folder / "CURRENT").read_text().strip()
        except FileNotFoundError:
            raise EntryError(f"no {kind[:-1]} named {name!r} in the workspace.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise EntryError(f"{kind}/{name} is corrupt (CURRENT unreadable: {exc}).") from None
        path = folder / version
        if not version.startswith("v-") or "/" in version:
            raise EntryError(f"{kind}/{name} is corrupt: version {version!r} is missing.")
        try:
            meta = read_json(path / "meta.json")
        except (OSError, ValueError) as exc:
            e = Entry(kind, name, path, {})
            if not self.is_live(e):
                return None  # CURRENT moved on (or the entry was deleted): read again
            if not path.is_dir():
                raise EntryError(f"{kind}/{name} is corrupt: version {version!r} is missing.") \
                    from None
            raise EntryError(f"{kind}/{name} is corrupt (meta.json: {exc}).") from None
        if not isinstance(meta, dict):
            raise EntryError(f"{kind}/{name} is corrupt (meta.json is not an object).")
        return Entry(kind, name, path, meta)

    @staticmethod
    def _busy(kind: str, name: str) -> EntryError:
        return EntryError(f"{kind}/{name} was replaced {READ_TRIES} times while being read "
                          "(other processes keep saving it); try again.")

    @contextlib.contextmanager
    def _locked(self, kind: str, name: str, what: str) -> Iterator[None]:
        """Hold the lock of ``kind/name`` (its folder's parent must exist)."""
        path = locks.entry_lock(self.root / kind / name)
        try:
            with locks.hold(path, self.lock_timeout):
                yield
        except locks.Timeout:
            raise EntryError(
                f"{kind}/{name} could not be {what}: another process held its lock for "
                f"{self.lock_timeout:g} s; try again (if it persists, look for a stuck "
                "FisherLab process).") from None

    def _folder(self, kind: str, name: str) -> Path:
        if kind not in KINDS:
            raise EntryError(f"kind must be one of {KINDS}; got {kind!r}.")
        return self.root / kind / check_name(name)

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
            found = self._scan_one(kind, folder)
            if isinstance(found, Entry):
                good.append(found)
            elif found is not None:
                bad.append((folder.name, found))
        return good, bad

    def _scan_one(self, kind: str, folder: Path) -> Entry | str | None:
        """The entry in ``folder``, why it is unreadable, or None when it is being deleted or
        saved for the first time (nothing to report)."""
        msg = ""
        for _ in range(3):
            try:
                return self.entry(kind, folder.name)
            except EntryError as exc:
                msg = str(exc)
            if not _NAME.fullmatch(folder.name):
                return msg
            if (folder / "CURRENT").exists():
                continue  # broken for good (asking again is harmless), or just committed
            unborn = locks.unborn(folder)
            if unborn is not None:
                return None if unborn else msg
        return msg


def _pause(attempt: int) -> None:
    """A short, jittered pause before reading again (writers commit in milliseconds)."""
    time.sleep(min(0.05, 0.002 * 2 ** attempt) * (0.5 + _JITTER.random()))
