"""Reusable widgets: image grids and small charts."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import streamlit as st

from fisher_core.plots import montage, to_display
from fisher_core.workspace import Workspace

__all__ = ["confirm_replace", "device_picker", "image_grid", "md", "montage", "to_display"]

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#!<>|~$:])")


def device_picker(key: str, container=st) -> str:
    """Where to run: ``"cpu"`` on a machine without CUDA (and nothing is shown), else a
    select box over the CPU and every CUDA device found (the first GPU preselected)."""
    from fisher_core.utils.devices import available_devices

    devices = available_devices()
    if len(devices) == 1:
        return "cpu"
    return container.selectbox("Device", devices, index=1, key=key,
                               help="Where the work runs; results are the CPU's (full "
                                    "float32, no TF32).")


def md(text: object) -> str:
    """``text`` as literal characters inside Streamlit markdown (errors, captions, labels).

    File, class and attribute names and error messages come from users' files: unescaped, a
    name like ``[x](http://…)`` or ``![](…)`` would render as a link or an image, ``$…$`` as
    LaTeX and ``:red[…]`` as a Streamlit directive. Backslash escapes of ASCII punctuation
    render as the punctuation itself (CommonMark).
    """
    return _MARKDOWN.sub(r"\\\1", str(text))


def confirm_replace(ws: Workspace, kind: str, name: str, *, request: str) -> bool:
    """Whether a save of ``kind``/``name`` may go ahead: at once when the name is free,
    otherwise after the user confirms replacing what is there.

    ``request`` is the session-state key holding the pending save; "Keep it" drops it.
    """
    if not ws.exists(kind, name):
        return True
    what = kind.removesuffix("s")
    st.warning(f"A {what} named **{md(name)}** is already saved. Replace it? The old one is "
               "lost; choose another name to keep both.", icon=":material/warning:")
    c = st.columns([1, 1, 4])
    if c[0].button(f"Replace {what}", key=f"{request}_yes", type="primary"):
        return True
    if c[1].button("Keep it", key=f"{request}_no"):
        st.session_state.pop(request, None)
        st.rerun()
    return False


def image_grid(
    images: np.ndarray,
    captions: Sequence[str] | None = None,
    *,
    columns: int = 10,
    width: int = 72,
) -> None:
    """Show images in rows of ``columns`` with optional captions."""
    shown = to_display(images, min_side=width)
    captions = list(captions) if captions is not None else [""] * len(shown)
    for start in range(0, len(shown), columns):
        cols = st.columns(columns)
        for col, im, cap in zip(cols, shown[start:start + columns],
                                captions[start:start + columns], strict=False):
            col.image(im, caption=md(cap) if cap else None, width=width)
