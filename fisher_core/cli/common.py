"""What every command shares: the session (workspace, output mode), errors as one line, and
finding datasets, models and embeddings in the workspace by name."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import typer

from ..data import ImageDataset, load_builtin
from ..workspace import Workspace, check_name, default_root
from .ui import UI, one_line

__all__ = ["CliError", "Session", "describe_error", "parse_list", "session", "slug"]

_BUILTIN_KEY = re.compile(r"builtin:(\w+)(?:\(((?:\w+=\d+,?)*)\))?")


class CliError(Exception):
    """A problem with what the user asked for: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def describe_error(exc: BaseException) -> tuple[str, int]:
    """What to print for an exception that ended a command.

    Parameters
    ----------
    exc : BaseException
        A :class:`CliError`, a library error (``ValueError``/``TypeError`` subclasses such as
        ``DatasetError``, ``EntryError``, ``ConfigError``: their messages say what to do), an
        ``OSError``, ``KeyboardInterrupt``, or anything else.

    Returns
    -------
    line : str
        One line, without the ``"Error: "`` prefix.
    code : int
        Exit status: 130 for Ctrl-C, the :class:`CliError`'s own, else 1.
    """
    if isinstance(exc, CliError):
        return one_line(exc), exc.code
    if isinstance(exc, KeyboardInterrupt):
        return ("interrupted; every workspace entry is as it was before this command (saves "
                "are atomic).", 130)
    if isinstance(exc, (ValueError, TypeError)):  # the library's errors say what to do
        return one_line(exc), 1
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return one_line(f"{exc.strerror or exc}{where}"), 1
    return (one_line(f"unexpected {type(exc).__name__}: {exc} (set FISHERLAB_DEBUG=1 to see "
                     "the traceback)"), 1)


@dataclass
class Session:
    """Options given before the command: the workspace folder and the output mode."""

    root: Path = field(default_factory=default_root)
    json_mode: bool = False
    explicit: bool = False  # --workspace was given: repeated in the commands a message suggests
    _ws: Workspace | None = field(default=None, repr=False)

    @property
    def prog(self) -> str:
        """``fisherlab`` with the global options a suggested command needs."""
        return f"fisherlab --workspace {self.root}" if self.explicit else "fisherlab"

    @property
    def ui(self) -> UI:
        """The command's output."""
        return UI(self.json_mode)

    def workspace(self, *, create: bool = False) -> Workspace:
        """The workspace; made when ``create`` (commands that save a dataset), else it must
        exist already.

        Raises
        ------
        CliError
            The folder does not exist (and ``create`` is false), or is not a folder.
        """
        if self._ws is None:
            if self.root.exists() and not self.root.is_dir():
                raise CliError(f"workspace {self.root} is a file, not a folder; pass "
                               "--workspace PATH of a folder.")
            if not create and not self.root.is_dir():
                raise CliError(f"no workspace at {self.root}; add a dataset first (fisherlab "
                               f"--workspace {self.root} data builtin digits) or check the "
                               "path.")
            self._ws = Workspace(self.root)
        return self._ws

    def dataset(self, name: str) -> tuple[ImageDataset, str]:
        """Workspace dataset ``name`` and its key (``workspace:<name>``, as the app names it)."""
        ws = self.workspace()
        check_name(name)
        if not (ws.root / "datasets" / name).is_dir():  # one that exists but is corrupt: below
            saved = ", ".join(ws.names("datasets")) or "none"
            raise CliError(f"no dataset named {name!r} in workspace {ws.root} (saved: {saved}); "
                           f"add one with '{self.prog} data builtin NAME' or '{self.prog} data "
                           "import FILE'.")
        return ws.load_dataset(name), f"workspace:{name}"

    def dataset_for_key(self, key: str) -> ImageDataset:
        """The dataset an embedding was computed on, from its key (``workspace:<name>`` or
        the app's ``builtin:<name>(options)``)."""
        m = _BUILTIN_KEY.fullmatch(key)
        if m:
            opts = dict(kv.split("=") for kv in (m.group(2) or "").split(",") if kv)
            return load_builtin(m.group(1), **{k: int(v) for k, v in opts.items()})
        if key.startswith("workspace:"):
            return self.dataset(key.removeprefix("workspace:"))[0]
        raise CliError(f"dataset {key!r} is not in the workspace (an upload that was never "
                       "saved); save it on the app's Data page or recompute the embedding.")

    def new_name(self, kind: str, name: str, overwrite: bool) -> str:
        """``name`` if valid and free in ``kind`` (or ``overwrite``); checked before any work."""
        check_name(name)
        if kind == "datasets" and not self.root.exists():
            return name  # a new workspace: the save makes it
        if not overwrite and self.workspace().exists(kind, name):
            raise CliError(f"{kind}/{name} already exists in the workspace; pass --overwrite "
                           "to replace it or choose another --name.")
        return name

    def embedding_names(self, names: list[str]) -> list[str]:
        """``names`` after checking that each is a saved embedding."""
        ws = self.workspace()
        for name in names:
            check_name(name)
            if not (ws.root / "embeddings" / name).is_dir():
                raise CliError(f"no embedding named {name!r} in the workspace; compute it with "
                               f"'{self.prog} embed KIND --dataset NAME' (saved: "
                               f"{', '.join(ws.names('embeddings')) or 'none'}).")
        return names


def session(ctx: typer.Context) -> Session:
    """The :class:`Session` the root command stored on the context."""
    obj = ctx.find_object(Session)
    if obj is None:  # not under the root command: its defaults
        obj = ctx.ensure_object(Session)
    return obj


def slug(text: str, fallback: str = "entry") -> str:
    """A workspace name from free text, as the app makes one."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", text).strip("-.")[:80] or fallback


def parse_list(text: str, what: str) -> list[str]:
    """Split a comma-separated option value.

    Parameters
    ----------
    text : str
        ``"a,b, c"``.
    what : str
        The option's name, for the error message.

    Returns
    -------
    list of str
        ``["a", "b", "c"]``, duplicates removed, in order.

    Raises
    ------
    CliError
        No item at all.
    """
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise CliError(f"{what} is empty; give one or more names separated by commas.")
    return list(dict.fromkeys(items))


def debug() -> bool:
    """Whether ``FISHERLAB_DEBUG`` asks for tracebacks instead of one-line errors."""
    return os.environ.get("FISHERLAB_DEBUG", "") not in ("", "0")
