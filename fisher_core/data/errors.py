"""The one exception type for bad datasets."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A dataset could not be read or is not valid.

    The message always says what was wrong and what to do about it; it is meant to be shown
    to the person who supplied the data, as is.
    """
