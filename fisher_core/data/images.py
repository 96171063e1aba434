"""PNG/JPEG images from a zip, probed from their headers, then decoded one at a time.

:func:`probe_images` reads only each image's header (size and mode, through PIL without
decoding pixels) and checks the whole dataset against the limits: the per-image pixel guard,
equal sizes unless a resize is asked for, and the total of the output (at the requested size
when there is one). :func:`decode_images` then decodes the images one by one into the
preallocated float32 output, resizing each (or each small group) as it goes, so memory is
the output plus about one decoded image. Images small enough to be read whole while probing
are decoded right away into a uint8 stack (a quarter of the output at most), which spares
reading and opening each of many tiny images twice.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from .convert import block_bytes, check_image_stack, resize_nchw
from .errors import DatasetError
from .limits import Limits
from .streams import member_errors
from .zipmembers import MemberTable

__all__ = ["ImagesPlan", "decode_blocks", "decode_images", "probe_images"]

_PROBE_FIRST = 1 << 16  # bytes read to find a header; grown ×8 while PIL needs more ...
_PROBE_MAX = 1 << 23  # ... up to this (metadata before the pixels: ICC profiles, EXIF)
_RGB_MODES = ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA")
# An encoded image holds at most its raw pixels (8 bytes each at most: 16-bit RGBA) plus
# metadata; a member far larger is padding that only costs memory.
_BYTES_PER_PIXEL = 8


@dataclass
class ImagesPlan:
    """The checked shape of a zip's images: (N, C, H, W) out, and how to get there.

    Attributes
    ----------
    hw : ndarray of shape (N, 2), int64
        Each source image's (H, W).
    channels : int
        C of the output: 3 if any image is in colour, else 1.
    out_hw : (int, int)
    how : {"copy", "torch", "pil"}
        All one size, no resize; all one size, resized like :meth:`ImageDataset.resize`;
        mixed sizes, each image resized by PIL.
    pixels : ndarray of shape (N, H, W, C), uint8, or None
        Every image, when all were decoded while probing.
    """

    hw: np.ndarray
    channels: int
    out_hw: tuple[int, int]
    how: str
    pixels: np.ndarray | None = None


def probe_images(members: MemberTable, what: str, limits: Limits,
                 resize_to: tuple[int, int] | None, *, eager: bool = True,
                 release: Callable[[], None] | None = None) -> ImagesPlan:
    """Read every image's header and check the dataset they make against ``limits``.

    ``eager``: keep the pixels of images read whole while probing (small ones), decoded
    into ``plan.pixels``; a streamed import (:func:`decode_blocks`) passes False.
    ``release``: called every few thousand images (a streamed import hands the archive's
    pages it has read back to the system).
    """
    n = len(members)
    hw = np.empty((n, 2), dtype=np.int64)  # not a list of tuples: 16 bytes an image
    channels = 1
    eager = eager and resize_to is None  # decode images read whole, while at hand
    pixels = None
    for k in range(n):
        if release is not None and k % 4096 == 4095:
            release()
        h, w, c, arr = _probe(members, k, what, limits, n if eager else 0)
        hw[k] = h, w
        channels = max(channels, c)
        if not eager:
            continue
        if arr is None or (pixels is not None and arr.shape != pixels.shape[1:]):
            eager, pixels = False, None  # the second pass decodes them all
        elif pixels is None:  # a stack of N such images passes the limits: see _probe
            pixels = np.empty((n, *arr.shape), np.uint8)
        if pixels is not None:
            pixels[k] = arr
    odd = np.flatnonzero((hw != hw[0]).any(axis=1))
    if odd.size:
        if resize_to is None:
            raise DatasetError(
                f"{what}: images have different sizes (e.g. {members.names[0]!r} is "
                f"{tuple(int(v) for v in hw[0])}, {members.names[odd[0]]!r} differs); choose "
                "a common size to resize them to."
            )
        # every image is resized on its own by PIL: only the output's size matters
        check_image_stack(n, channels, *resize_to, limits, resize_to)
        return ImagesPlan(hw, channels, resize_to, "pil")
    h, w = int(hw[0, 0]), int(hw[0, 1])
    check_image_stack(n, channels, h, w, limits, resize_to)
    out_hw = tuple(resize_to) if resize_to else (h, w)
    how = "copy" if out_hw == (h, w) else "torch"
    return ImagesPlan(hw, channels, out_hw, how, pixels)  # type: ignore[arg-type]


def _within(n: int, shape: tuple[int, ...], limits: Limits) -> bool:
    h, w, c = shape
    try:
        check_image_stack(n, c, h, w, limits, None)
    except DatasetError:
        return False
    return True


def _probe(members: MemberTable, k: int, what: str, limits: Limits, stack: int
           ) -> tuple[int, int, int, np.ndarray | None]:
    """(H, W, channels) of image ``k`` from its header; and its pixels, (H, W, C) uint8, if
    the image was read whole to find its header (small images are) and a ``stack`` of such
    images (0: none) would pass the limits."""
    from PIL import Image

    name, want = members.names[k], _PROBE_FIRST
    while True:
        with member_errors(what, name):
            head = members.read(k, want)
        try:
            with Image.open(io.BytesIO(head)) as im:
                (w, h), mode = im.size, im.mode
                c = 3 if mode in _RGB_MODES else 1
                _check_header(members, k, w, h, limits)
                whole = len(head) == members.usize[k]
                keep = whole and stack and _within(stack, (h, w, c), limits)
                arr = _pixels(im, name) if keep else None
            break
        except DatasetError:
            raise
        except Image.DecompressionBombError as exc:
            raise DatasetError(f"image {name!r} is too large ({exc}).") from None
        except Exception as exc:  # PIL raises many types for a short or bad header
            if len(head) < want or want >= _PROBE_MAX:  # the whole image, or enough of it
                raise DatasetError(
                    f"image {name!r} could not be decoded ({exc}); re-save it."
                ) from None
            want *= 8
    return h, w, c, arr


def _check_header(members: MemberTable, k: int, w: int, h: int, limits: Limits) -> None:
    name = members.names[k]
    if w * h > limits.max_image_pixels:
        raise DatasetError(
            f"image {name!r} is {w}×{h} = {w * h} pixels, more than the limit of "
            f"{limits.max_image_pixels} (decompression-bomb guard); shrink it."
        )
    if members.usize[k] > _PROBE_MAX + _BYTES_PER_PIXEL * w * h:
        raise DatasetError(
            f"image {name!r} takes {members.usize[k]} bytes, far more than a {w}×{h} image "
            "needs; it may be a decompression bomb. Re-save it."
        )


def decode_images(members: MemberTable, plan: ImagesPlan, what: str) -> np.ndarray:
    """Decode the images of ``plan`` one by one into float32 (N, C, H, W) in [0, 1]."""
    n, c, (oh, ow) = len(members), plan.channels, plan.out_hw
    out = np.empty((n, c, oh, ow), np.float32)
    if plan.how == "torch":
        _decode_resized(members, plan, what, out)
        return out
    if plan.pixels is not None:  # decoded while probing
        out[...] = plan.pixels.transpose(0, 3, 1, 2)
        plan.pixels = None
    else:
        for k in range(n):
            arr = _decode(members, k, plan, what)  # (H, W, 1 or 3)
            if plan.how == "pil":
                arr = _pil_resize(arr, c, oh, ow)
            out[k] = arr.transpose(2, 0, 1)  # a grey image broadcasts to 3 equal channels
    np.divide(out, 255.0, out=out)
    return out


def decode_blocks(members: MemberTable, plan: ImagesPlan, what: str, block: int = 4096
                  ) -> Iterator[np.ndarray]:
    """The images of ``plan``, ``block`` at a time, in order: uint8 (k, C, H, W) when they
    keep their pixel values (no resize, or each resized by PIL), else float32 in [0, 1]
    (resized as :func:`decode_images` does). Memory is one block."""
    n, c, (oh, ow) = len(members), plan.channels, plan.out_hw
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        if plan.how == "torch":
            out = np.empty((i1 - i0, c, oh, ow), np.float32)
            _decode_resized(members.subset(list(range(i0, i1))),
                            replace(plan, hw=plan.hw[i0:i1], pixels=None), what, out)
            yield out
            continue
        out = np.empty((i1 - i0, c, oh, ow), np.uint8)
        for k in range(i0, i1):
            arr = _decode(members, k, plan, what)  # (H, W, 1 or 3)
            if plan.how == "pil":
                arr = _pil_resize(arr, c, oh, ow)
            out[k - i0] = arr.transpose(2, 0, 1)  # a grey image broadcasts to 3 channels
        yield out


def _decode_resized(members: MemberTable, plan: ImagesPlan, what: str, out: np.ndarray
                    ) -> None:
    """All images of one size, resized as a uint8 stack was (÷255, antialiased bilinear
    resize, clamp), by groups of images that fit in a block, or channel by channel when one
    image does not (channels are resized independently: the result is the same)."""
    n, c, (h, w) = len(members), plan.channels, (int(v) for v in plan.hw[0])
    block = block_bytes(out.nbytes)
    if c > 1 and c * h * w * 4 > block:
        plane = np.empty((1, 1, h, w), np.float32)
        for k in range(n):
            arr = _decode(members, k, plan, what)
            for ch in range(c):
                plane[0, 0] = arr[:, :, min(ch, arr.shape[2] - 1)]
                np.divide(plane, 255.0, out=plane)
                out[k, ch] = resize_nchw(plane, plan.out_hw)[0, 0]
    else:
        step = max(1, block // (c * h * w * 4))
        staging = np.empty((min(step, n), c, h, w), np.float32)
        for i0 in range(0, n, step):
            i1 = min(n, i0 + step)
            for k in range(i0, i1):
                staging[k - i0] = _decode(members, k, plan, what).transpose(2, 0, 1)
            part = staging[: i1 - i0]
            np.divide(part, 255.0, out=part)
            out[i0:i1] = resize_nchw(part, plan.out_hw)
    np.clip(out, 0.0, 1.0, out=out)


def _decode(members: MemberTable, k: int, plan: ImagesPlan, what: str) -> np.ndarray:
    """Decode image ``k`` to uint8 (H, W, C), C = 3 for colour modes, else 1."""
    from PIL import Image

    name = members.names[k]
    with member_errors(what, name):
        data = members.read(k)
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = _pixels(im, name)
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises many types for a corrupt file
        raise DatasetError(f"image {name!r} could not be decoded ({exc}); re-save it.") \
            from None
    if arr.shape[:2] != tuple(plan.hw[k]):
        raise DatasetError(f"image {name!r} could not be decoded (it decodes to "
                           f"{arr.shape[:2]}, its header says {tuple(plan.hw[k])}); re-save it.")
    return arr


def _pixels(im, name: str) -> np.ndarray:
    """The pixels of open image ``im`` as uint8 (H, W, C): RGB for colour modes, else grey."""
    try:
        im.load()
        mode = "RGB" if im.mode in _RGB_MODES else "L"
        arr = np.asarray(im if im.mode == mode else im.convert(mode))
    except Exception as exc:  # PIL raises many types for corrupt pixel data
        raise DatasetError(f"image {name!r} could not be decoded ({exc}); re-save it.") \
            from None
    return arr if arr.ndim == 3 else arr[:, :, None]


def _pil_resize(arr: np.ndarray, c: int, h: int, w: int) -> np.ndarray:
    """PIL's bilinear resize of one uint8 (H, W, C) image, grey made RGB first if c = 3."""
    from PIL import Image

    if c == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    return np.asarray(im.resize((w, h), Image.BILINEAR)).reshape(h, w, -1)
