"""The one exception type for bad datasets, and a helper that keeps its messages short."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DatasetError", "some_names"]


class DatasetError(ValueError):
    """A dataset could not be read or is not valid.

    The message always says what was wrong and what to do about it; it is meant to be shown
    to the person who supplied the data, as is.
    """


def some_names(names: Sequence[str], total: int | None = None, *, k: int = 5) -> str:
    """``'a', 'b', 'c' and 7 more``: at most ``k`` quoted names, then how many were left out.

    Parameters
    ----------
    names : sequence of str
        The names, in the order to show them (may hold only the first few of them).
    total : int, optional
        How many names there are in all; defaults to ``len(names)``.
    k : int, default=5
        How many names to show.

    Returns
    -------
    str
    """
    total = len(names) if total is None else total
    shown = [repr(str(n)) for n in names[:k]]
    text = ", ".join(shown)
    return f"{text} and {total - len(shown)} more" if total > len(shown) else text
