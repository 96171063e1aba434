"""Workspace names derived from longer keys: unique, bounded, and readable.

A derived name is the key itself when that is already a valid name that fits; otherwise a
readable prefix of the cleaned-up key plus the first 10 hex digits of the SHA-256 of the
*whole* key, so two keys never share a name because they only differ past the cut or in
characters a name cannot hold (``builtin:faces`` and ``builtin-faces``).
"""

from __future__ import annotations

import hashlib
import re

from .store import _NAME, NAME_MAX, check_name

__all__ = ["DIGEST_LEN", "derived_name", "legacy_clean"]

DIGEST_LEN = 10  # hex digits: 40 bits, no collision in any workspace's lifetime


def legacy_clean(key: str) -> str:
    """``key`` with every run of characters a name cannot hold turned into ``-``."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", key)


def derived_name(key: str, *, suffix: str = "", limit: int = NAME_MAX,
                 fallback: str = "entry") -> str:
    """A valid workspace name of at most ``limit`` characters for ``key`` + ``suffix``.

    Parameters
    ----------
    key : str
        Anything: a dataset key (``"upload:faces.zip:32:0123…"``), a model name.
    suffix : str, default=""
        Appended as is (``"-best"``); made of name characters.
    limit : int, default=80
        Longest name returned; leave room when other names are built from this one.
    fallback : str, default="entry"
        Readable part used when ``key`` has no name characters at all.

    Returns
    -------
    str
        ``key + suffix`` when that is a valid name within ``limit``; else
        ``<readable prefix>-<10 hex of sha256(key)><suffix>``.
    """
    plain = key + suffix
    if len(plain) <= limit and _NAME.fullmatch(plain):
        return plain
    room = limit - len(suffix) - DIGEST_LEN - 1
    if room < 1:
        raise ValueError(f"limit {limit} leaves no room for a name with suffix {suffix!r}.")
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_LEN]
    head = legacy_clean(key).lstrip("-._")[:room].rstrip("-._") or fallback[:room]
    return check_name(f"{head}-{digest}{suffix}")
