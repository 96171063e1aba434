"""File locks that let several processes and threads share one workspace.

Two kinds of lock, both :class:`filelock.FileLock` (``flock`` on POSIX: the operating system
drops it when its holder dies, so a killed process never leaves a lock behind):

- the **entry lock** ``<kind>/.<name>.lock``, beside the entry's folder so that a delete can
  move the folder away while holding it. Held for milliseconds: by a writer while it creates
  its temporary folder and while it commits (rename, ``CURRENT``, clean-up), by a delete, and
  by the clean-up at open. Its file is never removed: a process waiting on a removed lock file
  would hold a lock nobody else sees.
- the **writer claim** ``<kind>/<name>/.tmp-v-<id>.lock``, taken before the temporary folder
  ``.tmp-v-<id>`` is made and kept until it is renamed or removed. Whoever can take the claim
  of a temporary folder knows its writer is gone; that is how stale folders are told from
  folders being filled, whatever their age.

Temporary folders without a claim file come from FisherLab versions before these locks; they
are judged by age, as those versions did.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["Timeout", "claim_path", "entry_lock", "hold", "is_claimed", "is_live", "needs_reaping",
           "reap", "tidy", "try_hold", "unborn"]

TMP_PREFIX = ".tmp-"
CLAIM_SUFFIX = ".lock"
UNCLAIMED_TMP_AGE = 600.0  # seconds: how long an older FisherLab could take to write a version
POLL = 0.002  # seconds between attempts on a busy lock: holders keep it for milliseconds


def entry_lock(folder: Path) -> Path:
    """The lock file of the entry stored in ``folder``."""
    return folder.with_name(f".{folder.name}.lock")


def claim_path(tmp: Path) -> Path:
    """The claim file of the writer filling temporary folder ``tmp``."""
    return tmp.with_name(tmp.name + CLAIM_SUFFIX)


@contextlib.contextmanager
def hold(path: Path, timeout: float) -> Iterator[None]:
    """Hold the lock ``path`` (waiting up to ``timeout`` seconds; :class:`Timeout` after)."""
    lock = FileLock(str(path))
    lock.acquire(timeout=timeout, poll_interval=POLL)
    try:
        yield
    finally:
        lock.release()


def try_hold(path: Path) -> FileLock | None:
    """The lock ``path`` held by the caller, or None when someone else holds it."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def is_claimed(tmp: Path) -> bool:
    """Whether a live writer holds the claim of temporary folder ``tmp``."""
    claim = claim_path(tmp)
    if not claim.exists():
        return False
    lock = try_hold(claim)
    if lock is None:
        return True
    try:
        if not tmp.exists():  # its writer finished: the claim was (re)made by try_hold itself
            with contextlib.suppress(OSError):
                claim.unlink()
    finally:
        lock.release()
    return False


def is_live(tmp: Path) -> bool:
    """Whether a writer is (or may be) still filling temporary folder ``tmp``."""
    if claim_path(tmp).exists():
        return is_claimed(tmp)
    try:  # no claim: an older FisherLab's writer, alive while its folder is young
        return time.time() - tmp.stat().st_mtime <= UNCLAIMED_TMP_AGE
    except FileNotFoundError:
        return False


def reap(folder: Path, keep: str | None) -> None:
    """Remove what is left in entry ``folder`` by writers that are gone.

    The caller holds the entry lock, so nobody commits, deletes or starts a save meanwhile.
    Removes versions other than ``keep`` (what ``CURRENT`` names; None: keep every version),
    temporary folders whose writer is gone, orphan claims and ``CURRENT`` temp files.
    """
    try:
        children = list(folder.iterdir())
    except FileNotFoundError:
        return
    for p in children:
        name = p.name
        if name.startswith("v-") and keep is not None and name != keep and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif name.startswith(TMP_PREFIX) and p.is_dir():
            if not is_live(p):
                shutil.rmtree(p, ignore_errors=True)
                with contextlib.suppress(OSError):
                    claim_path(p).unlink()
        elif name.startswith(TMP_PREFIX) and name.endswith(CLAIM_SUFFIX):
            if (folder / name[: -len(CLAIM_SUFFIX)]).exists():
                continue  # its folder's turn decides (above)
            lock = try_hold(p)  # an orphan claim: its writer finished or died after renaming
            if lock is not None:
                with contextlib.suppress(OSError):
                    p.unlink()
                lock.release()
        elif name.startswith(".CURRENT.") and name.endswith(".tmp"):
            with contextlib.suppress(OSError):  # a commit killed while writing CURRENT
                p.unlink()
    with contextlib.suppress(OSError):  # an aborted first save leaves an empty folder
        os.rmdir(folder)


def tidy(folder: Path) -> None:
    """:func:`reap` entry ``folder`` if it holds leftovers and nobody holds its lock."""
    keep = _current(folder)
    if not needs_reaping(folder, keep):
        return
    lock = try_hold(entry_lock(folder))
    if lock is None:
        return  # being saved or deleted: its holder cleans up
    try:
        reap(folder, keep=_current(folder))  # again under the lock: a commit may have landed
    finally:
        lock.release()


def unborn(folder: Path) -> bool | None:
    """For an entry folder without ``CURRENT``: True when a save or delete of it is under
    way, False when it is broken, None when its first save committed meanwhile."""
    lock = try_hold(entry_lock(folder))
    if lock is None:
        return True  # a save is committing or a delete is running
    try:
        if (folder / "CURRENT").exists():
            return None
        if not folder.exists():
            return True
        return any(p.name.startswith(TMP_PREFIX) and p.is_dir() and is_live(p)
                   for p in folder.iterdir())
    finally:
        lock.release()


def _current(folder: Path) -> str | None:
    """The version ``CURRENT`` names, or None (none, or not a version name)."""
    try:
        keep = (folder / "CURRENT").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None  # no live version known: remove no version, only what writers left
    return keep if keep.startswith("v-") and "/" not in keep else None


def needs_reaping(folder: Path, keep: str | None) -> bool:
    """Whether :func:`reap` would find anything to look at in ``folder`` (no lock taken)."""
    try:
        names = [p.name for p in folder.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return False
    if not names:
        return True
    return any(n.startswith((TMP_PREFIX, ".CURRENT.")) or
               (n.startswith("v-") and keep is not None and n != keep) for n in names)
